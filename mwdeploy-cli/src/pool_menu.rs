//! The viewer's pool menu (Ctrl+R in `mwdeploy` without a deploy flag): what
//! `mwdeploy pool depool|repool SERVER` does, on a task of the dashboard, and only while
//! no deploy holds the lock: a running deploy changes its pool itself (its own
//! dashboard's Ctrl+R), so that its `max_unavailable` and canary hold.
//!
//! ```text
//!  Ctrl+R, D|R ──> lock free? ──no──> notice: refused, who holds it
//!                    │ yes (taken, held by the task)
//!                    ▼
//!  task: pool::change ──> its own journal; its canary and pool records ──> dashboard
//!        (row log, notice); a refusal or failure ──> notice
//! ```

use std::sync::Arc;
use std::time::SystemTime;

use mwdeploy_core::event::Record;
use mwdeploy_core::{Event, ServerId};
use mwdeploy_runtime::lock::{DeployLock, Holder, LockError};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Config;
use mwdeploy::pool::{change, pooled_server, Outcome};

/// A note for the dashboard's notice line and `server`'s log (`pool: ...`).
fn note(server: &str, text: &str) -> Record {
    Record {
        ts: SystemTime::now(),
        deploy: String::new(),
        event: Event::Warning {
            server: ServerId::new(server).ok(),
            detail: format!("pool: {text}"),
        },
    }
}

/// Why the menu is refused while `e` keeps the lock from being taken: the way to change
/// the pool first, who holds the lock after (the notice line may cut it; the row's log,
/// Ctrl+O, has it whole).
fn refusal(e: &LockError) -> String {
    match e {
        LockError::Held { holder, .. } => {
            let who = holder
                .as_ref()
                .map_or_else(|| "another process".to_string(), |h| h.to_string());
            format!(
                "refused while a deploy runs: use Ctrl+R on its own dashboard; lock held by {who}"
            )
        }
        e => format!("refused: cannot take the deploy lock: {e}"),
    }
}

/// Depools (`depool`) or repools `server` as `mwdeploy pool` does, on a task; what it
/// comes to is sent to `notes`. Refused at once (a note) when a deploy holds the lock.
pub(crate) fn start(
    config: Arc<Config>,
    server: &str,
    depool: bool,
    notes: UnboundedSender<Record>,
) {
    let target = match pooled_server(&config, server) {
        Ok(s) => s,
        Err(e) => {
            let _ = notes.send(note(server, &e));
            return;
        }
    };
    let what = if depool { "depool" } else { "repool" };
    let message = format!("pool {what} {server} (viewer)");
    let lock = match DeployLock::acquire(&config.state_dir, Holder::current(message)) {
        Ok(l) => l,
        Err(e) => {
            let _ = notes.send(note(server, &refusal(&e)));
            return;
        }
    };
    let name = server.to_string();
    tokio::spawn(async move {
        let _lock = lock;
        let argv = vec!["pool".to_string(), what.to_string(), name.clone()];
        // The canary's attempts and the pool change show on the server's row; the run's
        // own start and end would be taken for the followed deploy's.
        let mut seen = |r: &Record| {
            if matches!(r.event, Event::Pool { .. } | Event::Canary { .. }) {
                let _ = notes.send(r.clone());
            }
        };
        match change(
            &config,
            &target,
            depool,
            false,
            argv,
            &mut seen,
            &crate::session::warn_on_stderr(),
        )
        .await
        {
            // The pool result record says it.
            Outcome::Done(_) => {}
            Outcome::Refused(why) => {
                let _ = notes.send(note(&name, &format!("refused: {why}")));
            }
            Outcome::Failed(why) | Outcome::Unusable(why) => {
                let _ = notes.send(note(&name, &why));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_names_its_holder_and_the_way_to_change_the_pool() {
        let mut holder = Holder::current("1.45 train");
        holder.user = "ops".into();
        holder.host = "deploy1".into();
        holder.pid = 4242;
        let e = LockError::Held {
            path: "/var/lib/mwdeploy/lock".into(),
            holder: Some(Box::new(holder)),
        };
        let text = refusal(&e);
        assert!(text.starts_with("refused while a deploy runs"), "{text}");
        assert!(text.contains("ops@deploy1 (pid 4242)"), "{text}");
        assert!(text.contains("\"1.45 train\""), "{text}");
        assert!(text.contains("Ctrl+R on its own dashboard"), "{text}");
        let unknown = LockError::Held {
            path: "/var/lib/mwdeploy/lock".into(),
            holder: None,
        };
        assert!(refusal(&unknown).ends_with("lock held by another process"));
    }

    #[test]
    fn a_note_is_a_pool_warning_on_the_server() {
        let r = note("mw1", "refused: why");
        match r.event {
            Event::Warning { server, detail } => {
                assert_eq!(server.as_ref().map(|s| s.as_str()), Some("mw1"));
                assert_eq!(detail, "pool: refused: why");
            }
            other => panic!("{other:?}"),
        }
    }
}
