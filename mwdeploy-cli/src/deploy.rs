//! `mwdeploy --rollout ...`: the library's deploy ([`mwdeploy::deploy`]) of a checked
//! [`DeployRequest`], shown as the command shows every run ([`crate::session`]).
//!
//! ```text
//!  proxies reachable (--rollout) ──> lock (state_dir) ──> deploy id = release id
//!        │                             journal (critical subscriber), log file
//!        ▼
//!  deploy_started, then staging (prepare): pulls, patches, sync to staging's live
//!  tree, l10n, staging hooks                                    (prep_step records)
//!        │
//!        ▼
//!  Driver(Rollout(plan)) on a current-thread tokio runtime: staging's canary, then
//!  the servers
//!     ports: HaproxyPool (--rollout) | no pool changes, RsyncTransfer (whole tree or
//!            the pulled subtrees), Canary, Hooks (with --l10n), webhooks (Discord,
//!            Slack; none with --no-log)
//!     records ──> journal, log_file (not with --no-log), and a channel ──> plain
//!                 lines | JSON lines on stdout
//!     prompts  <── the operator on a terminal, else "no"
//!     SIGINT / SIGTERM ──> staging stops between steps; the engine stops gracefully
//!                          (servers put back, exit 130); SIGHUP: the
//!                          terminal went away, the deploy runs on without it
//! ```

use std::io::Write;

use mwdeploy::{BuildError, DeployError};

use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::request::DeployRequest;
use crate::session::{warn_on_stderr, Run};

/// Runs the deploy `req` asks for; returns the exit code (0, 1, 3 or 130).
pub(crate) fn run<W: Write>(req: &DeployRequest, out: &mut Output<W>) -> Result<i32, CliError> {
    let runtime = crate::ops::runtime()?;
    runtime.block_on(deploy(req, out))
}

async fn deploy<W: Write>(req: &DeployRequest, out: &mut Output<W>) -> Result<i32, CliError> {
    let release = mwdeploy::session::new_id("");
    let id = release.as_str().to_string();
    let mut run = Run::new(req.output, release.as_str());
    let controls = run.controls();
    let prepared = mwdeploy::deploy::prepare(
        req,
        release,
        &controls,
        &mut run.shown(out),
        warn_on_stderr(),
    )
    .await;
    let unreachable = "nothing was touched; every proxy must confirm each pool change";
    let code = run
        .show(prepared, req.exit_when_done, unreachable, out)
        .await;
    if let Some(path) = &req.metrics_file {
        write_metrics(path, &req.config.state_dir, &id);
    }
    code
}

/// The deploy's metrics, from its journal, to `path` (a deploy refused before it started
/// has none: the file is left as it is). A failure is a warning: the deploy is done.
fn write_metrics(path: &std::path::Path, state_dir: &std::path::Path, id: &str) {
    let metrics = match mwdeploy::metrics::Metrics::of_journal(state_dir, id) {
        Ok(m) if m.is_finished() => m,
        Ok(_) | Err(_) => return,
    };
    if let Err(e) = metrics.write(path) {
        eprintln!(
            "mwdeploy: warning: cannot write the metrics to {}: {e}",
            path.display()
        );
    }
}

/// What the command says of a deploy refused before production, and its exit code.
pub(crate) fn refusal(e: DeployError) -> Result<i32, CliError> {
    match e {
        DeployError::Invalid(BuildError::Ssh(e)) => {
            eprintln!("mwdeploy: refused: cannot prepare ssh: {e}");
            Ok(exit::REFUSED)
        }
        DeployError::Invalid(e) => Err(CliError::Usage(e.to_string())),
        DeployError::Lock(e) => {
            eprintln!("mwdeploy: {e}");
            Ok(exit::REFUSED)
        }
        DeployError::Unreachable(proxies) => {
            for p in &proxies {
                eprintln!("mwdeploy: {p}");
            }
            eprintln!("mwdeploy: refused: {}", DeployError::Unreachable(proxies));
            Ok(exit::REFUSED)
        }
        DeployError::Interrupted => {
            eprintln!("mwdeploy: {}", DeployError::Interrupted);
            Ok(exit::INTERRUPTED)
        }
        e => {
            eprintln!("mwdeploy: refused: {e}");
            Ok(exit::REFUSED)
        }
    }
}
