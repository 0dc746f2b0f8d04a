//! A manual pool change (`mwdeploy pool depool|repool SERVER`, the viewer's pool menu):
//! on every proxy and backend, confirmed, journaled like a deploy (so `mwdeploy log`
//! shows it and `mwdeploy recover` never undoes it). The caller holds the deploy lock
//! ([`take_lock`](crate::session::take_lock)).
//!
//! ```text
//!  journal: deploy_started, [canary attempts], pool intent, pool result, deploy_finished
//!  depool: drain, sessions end, maintenance, on every proxy (HAProxy adapter)
//!  repool: the server's canary first (unless forced), then ready, confirmed serving
//! ```

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use mwdeploy_core::event::{PoolAction, PoolPhase, Record};
use mwdeploy_core::ports::{HealthCheck, PoolControl, Progress};
use mwdeploy_core::{Event, Health, Plan, Server, ServerStatus, Summary, Verdict};
use mwdeploy_exec::Hosts;
use mwdeploy_runtime::journal::Journal;

use crate::config::Config;
use crate::ports::{canary, reachable_haproxy};
use crate::request::operator;
use crate::session::{new_id, Warn};

/// `name` as a server behind the proxies, or why it cannot be depooled or repooled.
pub fn pooled_server(config: &Config, name: &str) -> Result<Server, String> {
    let Some(sc) = config.server(name) else {
        return Err(format!(
            "{name:?} is not a server of {} (mw_servers)",
            config.file.display()
        ));
    };
    if !sc.pooled {
        return Err(format!(
            "server {name} is not behind the proxies (pooled: false in {})",
            config.file.display()
        ));
    }
    if config.proxies.is_empty() {
        return Err(format!("{} lists no proxy_servers", config.file.display()));
    }
    Ok(sc.to_server())
}

/// What a pool change came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Changed and confirmed on every proxy; the line that says so.
    Done(String),
    /// Nothing was changed (ssh cannot be prepared, a proxy is unreachable).
    Refused(String),
    /// The canary failed (not repooled), or the change failed.
    Failed(String),
    /// The config cannot do it (the canary, the journal).
    Unusable(String),
}

/// Depools (`depool`) or repools `server` on every proxy and backend, confirmed, the
/// canary first for a repool (unless `force`); journaled as its own run (`argv` its
/// flags), each record also given to `seen`. The caller holds the deploy lock.
pub async fn change(
    config: &Config,
    server: &Server,
    depool: bool,
    force: bool,
    argv: Vec<String>,
    // Generic, not `dyn`: the viewer's is `Send` (its task's future must be), the
    // command's borrows stdout (which is not).
    seen: &mut impl FnMut(&Record),
    warn: &Warn,
) -> Outcome {
    let name = server.id.as_str();
    let what = if depool { "depool" } else { "repool" };
    let hosts = match Hosts::new(config.ssh_defaults()) {
        Ok(h) => Arc::new(h),
        Err(e) => return Outcome::Refused(format!("cannot prepare ssh: {e}")),
    };
    let pool = match reachable_haproxy(config, &hosts).await {
        Ok(p) => p,
        Err(unreachable) => {
            for e in &unreachable {
                warn(e);
            }
            hosts.close().await;
            return Outcome::Refused("a proxy is unreachable; nothing was changed".into());
        }
    };
    let id = new_id("pool");
    let mut journal = match Journal::create(&config.state_dir, id.as_str()) {
        Ok(j) => j,
        Err(e) => {
            hosts.close().await;
            return Outcome::Unusable(format!("cannot open the journal: {e}"));
        }
    };
    let started = SystemTime::now();
    let mut record = |event: Event| {
        let r = Record {
            ts: SystemTime::now(),
            deploy: id.as_str().to_string(),
            event,
        };
        if let Err(e) = journal.append(&r) {
            warn(&format!("journal: {e}"));
        }
        seen(&r);
    };
    let mut plan = Plan::new(id.as_str(), id.clone(), config.layout, vec![server.clone()]);
    plan.meta.flags = argv;
    plan.meta.user = operator();
    record(Event::started(&plan));
    let progress = Progress::discard(server.id.clone());

    let mut failure = None;
    if !depool && !force {
        match canary_passes(config, &hosts, server, &progress, &mut record).await {
            Ok(true) => {}
            Ok(false) => {
                failure = Some(format!(
                    "{name} failed its canary: not repooled, it stays out of the pool \
                     (--force repools it without the canary)"
                ))
            }
            Err(e) => {
                hosts.close().await;
                return Outcome::Unusable(e.to_string());
            }
        }
    }
    if failure.is_none() {
        failure = send(&pool, server, depool, &progress, &mut record)
            .await
            .map(|e| format!("{name}: {what} failed: {e}"));
    }
    let mut summary = Summary::default();
    summary.count(if failure.is_none() {
        ServerStatus::Done
    } else {
        ServerStatus::Failed
    });
    record(Event::DeployFinished {
        summary,
        duration_s: started.elapsed().map_or(0.0, |d| d.as_secs_f64()),
        verdict: if failure.is_none() {
            Verdict::Done
        } else {
            Verdict::Failed
        },
    });
    hosts.close().await;
    if let Some(why) = failure {
        return Outcome::Failed(why);
    }
    let proxies: Vec<&str> = config.proxies.iter().map(|p| p.name.as_str()).collect();
    Outcome::Done(format!(
        "{name}: {} on {} (backend {}), confirmed",
        if depool { "depooled" } else { "repooled" },
        proxies.join(", "),
        config.haproxy_backends.join(", ")
    ))
}

/// Runs `server`'s canary as a deploy would (its attempts and pauses), each attempt
/// recorded: whether one passed.
async fn canary_passes(
    config: &Config,
    hosts: &Arc<Hosts>,
    server: &Server,
    progress: &Progress,
    record: &mut impl FnMut(Event),
) -> Result<bool, crate::BuildError> {
    let canary = canary(config, hosts.clone())?;
    for attempt in 1..=config.canary.attempts.max(1) {
        let health = canary.check(server, progress).await;
        let (ok, status, detail) = match &health {
            Health::Healthy => (true, None, "ok".to_string()),
            Health::Unhealthy { reason, status } => (false, *status, reason.clone()),
            Health::Unknown { reason } => (false, None, reason.clone()),
            other => (false, None, format!("{other:?}")),
        };
        record(Event::Canary {
            server: server.id.clone(),
            attempt,
            ok,
            status,
            detail,
        });
        if ok {
            return Ok(true);
        }
        if attempt < config.canary.attempts {
            tokio::time::sleep(config.canary.retry_pause).await;
        }
    }
    Ok(false)
}

/// Sends the change to every proxy, its intent recorded before and its result after
/// (write-ahead, as a deploy's); the error, if it failed.
async fn send(
    pool: &impl PoolControl,
    server: &Server,
    depool: bool,
    progress: &Progress,
    record: &mut impl FnMut(Event),
) -> Option<String> {
    let action = if depool {
        PoolAction::Depool
    } else {
        PoolAction::Repool
    };
    let event = |phase, ok, detail| Event::Pool {
        server: server.id.clone(),
        proxy: None,
        backend: None,
        action,
        phase,
        ok,
        detail,
    };
    record(event(PoolPhase::Intent, None, None));
    // Each proxy's answer is journaled too, before the server's result.
    let answers = Arc::new(Mutex::new(Vec::new()));
    let collect = {
        let (answers, outer) = (answers.clone(), progress.clone());
        Progress::new(server.id.clone(), "pool", move |_, _, mut update| {
            if let Some(a) = update.pool.take() {
                answers.lock().unwrap_or_else(|e| e.into_inner()).push(a);
            }
            outer.report(update);
        })
    };
    let result = if depool {
        pool.depool(server, &collect).await
    } else {
        pool.repool(server, &collect).await
    };
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
    for a in answers {
        record(Event::Pool {
            server: server.id.clone(),
            proxy: Some(a.proxy),
            backend: Some(a.backend),
            action: a.action,
            phase: PoolPhase::Result,
            ok: Some(a.ok),
            detail: a.answer,
        });
    }
    let error = result.err().map(|e| e.to_string());
    record(event(
        PoolPhase::Result,
        Some(error.is_none()),
        error.clone(),
    ));
    error
}
