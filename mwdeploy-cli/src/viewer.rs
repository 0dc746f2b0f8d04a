//! `mwdeploy` without a deploy flag: the running (or latest) deploy of this state dir,
//! from its journal. On a terminal, the dashboard follows it as it is written (from
//! another terminal, or after the deploy's own terminal went away); without one, a
//! summary of it is printed. Its Ctrl+R menu depools or repools a server as `mwdeploy
//! pool` does, while no deploy holds the lock ([`crate::pool_menu`]).
//!
//! ```text
//!  state_dir/deploys/<latest>.jsonl ──> follower (whole lines, every 200 ms) ──> dashboard
//!                                        ends at deploy_finished, or when the deploy
//!                                        died (lock free, nothing new for 3 s)
//! ```

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mwdeploy_core::event::Record;
use mwdeploy_core::{Decision, Event};
use mwdeploy_runtime::journal;
use mwdeploy_runtime::lock::{DeployLock, LockStatus};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::Clean;
use crate::request::load_config;
use crate::session::summary_line;

/// How often the journal is read for new lines.
const POLL: Duration = Duration::from_millis(200);
/// Quiet time after which a journal whose lock is free is taken as a dead deploy's.
const QUIET: Duration = Duration::from_secs(3);

/// Runs the viewer; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let config = load_config(config_file)?;
    let ids = journal::list(&config.state_dir).map_err(|e| CliError::Usage(e.to_string()))?;
    let Some(id) = ids.last() else {
        out.fmt(format_args!(
            "no deploy in {} yet; `mwdeploy --help` shows deploys and commands\n",
            journal::dir(&config.state_dir).display()
        ));
        return Ok(exit::OK);
    };
    let path = journal::path(&config.state_dir, id);
    if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        let (tx, rx) = mpsc::unbounded_channel();
        let state_dir = config.state_dir.clone();
        crate::ops::runtime()?.block_on(async move {
            let follower = tokio::spawn(follow(path, state_dir, tx));
            let opts = crate::tui::TuiOptions {
                viewer: true,
                ..crate::tui::TuiOptions::from_env(false)
            };
            let watching = Watching(Arc::new(config));
            let shown = crate::tui::run(rx, &watching, opts).await;
            follower.abort();
            shown.map_err(CliError::Output)
        })?;
        return Ok(exit::OK);
    }
    summary(&path, id, &config.state_dir, out)
}

/// Nothing is sent from a viewer to the deploy, which runs in another process; its pool
/// menu is its own change, as `mwdeploy pool` ([`crate::pool_menu`]).
struct Watching(Arc<Config>);

impl crate::tui::Control for Watching {
    fn decide(&self, _: Decision) {}
    fn pool(&self, server: &str, depool: bool, notes: &mpsc::UnboundedSender<Record>) {
        crate::pool_menu::start(self.0.clone(), server, depool, notes.clone());
    }
    fn interrupt(&self) {}
}

/// Sends every whole record of the journal at `path`, as it is written, until the deploy
/// finished or died, or nobody listens.
async fn follow(path: PathBuf, state_dir: PathBuf, tx: mpsc::UnboundedSender<Record>) {
    let Ok(file) = std::fs::File::open(&path) else {
        return;
    };
    let mut reader = BufReader::new(file);
    let mut pending = String::new();
    let mut quiet = Duration::ZERO;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                // A torn last line waits for its end; the reader stays where it was.
                tokio::time::sleep(POLL).await;
                quiet += POLL;
                if quiet >= QUIET && lock_free(&state_dir) {
                    return;
                }
                continue;
            }
            Ok(_) => {}
        }
        quiet = Duration::ZERO;
        pending.push_str(&line);
        if !pending.ends_with('\n') {
            continue;
        }
        let whole = std::mem::take(&mut pending);
        if let Ok(record) = serde_json::from_str::<Record>(whole.trim_end()) {
            let last = matches!(record.event, Event::DeployFinished { .. });
            if tx.send(record).is_err() || last {
                return;
            }
        }
    }
}

/// Whether no process holds the deploy lock.
fn lock_free(state_dir: &Path) -> bool {
    !matches!(DeployLock::status(state_dir), Ok(LockStatus::Held { .. }))
}

/// A few lines on the journal at `path`: who, when, what, and how it ended.
fn summary<W: Write>(
    path: &Path,
    id: &str,
    state_dir: &Path,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let read = match journal::read(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mwdeploy: {e}");
            return Ok(exit::FAILED);
        }
    };
    out.fmt(format_args!("latest deploy: {id}\n"));
    for r in &read.records {
        match &r.event {
            Event::DeployStarted {
                servers,
                layout,
                message,
                user,
                ..
            } => {
                out.fmt(format_args!(
                    "  started {} by {}: {} servers, {layout} layout{}\n",
                    humantime::format_rfc3339_seconds(r.ts),
                    user.as_deref().unwrap_or("?"),
                    servers.len(),
                    message
                        .as_deref()
                        .map_or(String::new(), |m| format!(", \"{}\"", Clean(m)))
                ));
            }
            Event::DeployFinished {
                summary, verdict, ..
            } => {
                out.fmt(format_args!(
                    "  finished {} with exit code {}\n  ",
                    humantime::format_rfc3339_seconds(r.ts),
                    exit::of(*verdict)
                ));
                summary_line(out, summary);
                return Ok(exit::OK);
            }
            _ => {}
        }
    }
    // Not finished: running, or killed.
    if lock_free(state_dir) {
        out.bytes(
            b"  it did not finish and nothing holds the lock: the deploy was killed; \
              `mwdeploy recover` puts back what it left\n",
        );
    } else {
        out.bytes(b"  running: `mwdeploy log --latest --follow` follows it\n");
    }
    Ok(exit::OK)
}
