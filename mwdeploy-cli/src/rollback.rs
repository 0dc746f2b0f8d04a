//! `mwdeploy rollback`: the previous (or a named) release made live again on the
//! servers, through the same engine as a deploy: depool, switch, `post_activate`,
//! canary, repool, `--parallel` servers at once. `--fast` switches without depooling
//! (the switch is atomic): for incidents.
//!
//! ```text
//!  RollbackTransfer (the engine's Transfer port):
//!    copy      checks the target release is on the server, notes the live one
//!    activate  switches to the target (rsync's rollback_to: one `mv -T` of a symlink)
//!    rollback  switches back to the release that was live before (its canary failed)
//! ```
//!
//! In the in-place layout no earlier release exists on the servers: the command says so
//! and how to redeploy an older staging commit.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use mwdeploy_core::plan::{FailureBudget, StageSize};
use mwdeploy_core::ports::PoolControl;
use mwdeploy_core::{Event, Layout, Plan, ReleaseId};
use mwdeploy_exec::Hosts;
use mwdeploy_rsync::RollbackTransfer;
use mwdeploy_rsync::{DeployInfo, RsyncTransfer};
use mwdeploy_runtime::driver::Ports;

use crate::adapters::{canary, hooks_for, notifier, reachable_haproxy, rsync_config, NoPool};
use crate::cli::RollbackArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::request::{load_config, operator, select_servers, server_names, OutputMode};
use crate::session::{new_id, take_lock, Session};

/// Runs `mwdeploy rollback`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &RollbackArgs,
    argv: Vec<String>,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let names = server_names(args.servers.as_deref())?;
    let to = match &args.to {
        Some(t) => Some(ReleaseId::parse(t).map_err(|e| {
            CliError::Usage(format!(
                "--to: {t:?} is not a release id ({e}); `mwdeploy releases` lists them"
            ))
        })?),
        None => None,
    };
    if let Some(m) = &args.message {
        validate_message(m)?;
    }
    let config = load_config(config_file)?;
    if config.layout == Layout::Inplace {
        eprintln!(
            "mwdeploy: nothing to roll back to: {} uses the in-place layout \
             (release_layout: inplace), which keeps no earlier release on the servers. \
             To go back, return staging to the older commit (e.g. `git -C {} revert <commit>`, \
             or check out the older commit) and redeploy it with \
             `mwdeploy --rsync --servers all --rollout`. With release_layout: releases, a \
             rollback is one atomic switch.",
            config.file.display(),
            config.staging_path.display()
        );
        return Ok(exit::USAGE);
    }
    let selected = select_servers(&config, names.as_deref())?;
    let servers: Vec<_> = selected.iter().map(|&i| &config.servers[i]).collect();
    let mut policy = config.policy();
    // --parallel N: N servers at once, out of the pool together (an incident tool);
    // else max_unavailable's worth.
    let n = args.parallel.unwrap_or(policy.max_unavailable.max(1));
    policy.parallel = n;
    policy.max_unavailable = n;
    policy.stages = vec![StageSize::Percent(100)];
    policy.failure_budget = FailureBudget::Count(0);
    if args.json {
        policy.on_failure = mwdeploy_core::plan::OnFailure::Abort;
    }

    let message = args.message.clone().unwrap_or_default();
    let _lock = match take_lock(&config.state_dir, &message) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let id = new_id("rollback");
    let output = if args.json {
        OutputMode::Json
    } else if args.no_tui {
        OutputMode::Plain
    } else {
        // The dashboard on a terminal, plain lines otherwise (as a deploy).
        OutputMode::Dashboard
    };
    let runtime = crate::ops::runtime()?;
    runtime.block_on(async {
        let refused = |what: &str, e: &dyn std::fmt::Display| {
            eprintln!("mwdeploy: refused: {what}: {e}");
            Ok(exit::REFUSED)
        };
        let hosts = match Hosts::new(config.ssh_defaults()) {
            Ok(h) => Arc::new(h),
            Err(e) => return refused("cannot prepare ssh", &e),
        };
        let rsync = rsync_config(&config, false)?;
        let hooks = Arc::new(hooks_for(
            &config,
            servers.iter().copied(),
            None,
            hosts.clone(),
            &rsync,
        )?);
        let transfer = RsyncTransfer::new(rsync, hosts.clone(), DeployInfo::new(id.as_str()))
            .map_err(|e| CliError::Usage(format!("rsync: {e}")))?;
        let canary = canary(&config, hosts.clone())?;
        let pool: Arc<dyn PoolControl> = if args.fast {
            Arc::new(NoPool)
        } else {
            match reachable_haproxy(&config, &hosts).await {
                Ok(pool) => Arc::new(pool),
                Err(_) => {
                    hosts.close().await;
                    return refused(
                        "a proxy is unreachable",
                        &"nothing was touched (--fast switches without the balancer)",
                    );
                }
            }
        };
        let mut plan = Plan::new(
            id.as_str(),
            to.clone().unwrap_or_else(|| id.clone()),
            Layout::Releases,
            servers
                .iter()
                .map(|s| {
                    let mut server = s.to_server();
                    server.pooled = s.pooled && !args.fast;
                    server.hooks = hooks.points(&server.id);
                    server
                })
                .collect(),
        );
        plan.policy = policy;
        plan.preflight = false;
        plan.meta.flags = argv;
        plan.meta.message = args.message.clone();
        plan.meta.user = operator();

        let notifier = notifier(
            &config,
            id.as_str(),
            plan.servers.iter().map(|s| s.id.to_string()).collect(),
            args.message.clone(),
            false,
        );
        let mut session = match Session::open(&config, id.as_str(), output, false) {
            Ok(s) => s,
            Err(e) => return refused("cannot start", &e),
        };
        if args.fast {
            eprintln!(
                "mwdeploy: --fast: the servers stay in the pool while their release is \
                 switched back (the switch is atomic)"
            );
        }
        session.record(Event::started(&plan), out);
        let ports = Ports {
            pool,
            transfer: Arc::new(RollbackTransfer::new(transfer, to)),
            health: Arc::new(canary),
            hooks,
            notifier,
        };
        let code = session.drive(plan, ports, out).await;
        hosts.close().await;
        code
    })
}

/// A message on one line, not empty.
fn validate_message(m: &str) -> Result<(), CliError> {
    if m.trim().is_empty() || m.chars().any(char::is_control) {
        return Err(CliError::Usage(
            "--message: write the reason on one line, without control characters".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_one_line() {
        assert!(validate_message("T123 revert").is_ok());
        assert!(validate_message(" ").is_err());
        assert!(validate_message("a\nb").is_err());
    }
}
