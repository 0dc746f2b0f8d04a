//! The deploy runner: a checked [`DeployRequest`] run against the real fleet.
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
use std::sync::Arc;

use mwdeploy_core::ports::{PoolControl, Transfer};
use mwdeploy_core::{Event, Layout, ReleaseId, Server};
use mwdeploy_exec::Hosts;
use mwdeploy_rsync::{
    DeployInfo, RsyncConfig, RsyncTransfer, Scope as TransferScope, TreePath, WarmAhead,
};
use mwdeploy_runtime::driver::Ports;

use crate::adapters::{canary, hooks, notifier, reachable_haproxy, rsync_config, NoPool};
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::prepare::{self, Stopped};
use crate::request::{DeployRequest, SyncScope};
use crate::session::Prep;
use crate::session::{new_id, take_lock, Session};
use mwdeploy_mediawiki::Steps;

/// Runs the deploy `req` asks for; returns the exit code (0, 1, 3 or 130).
pub(crate) fn run<W: Write>(req: &DeployRequest, out: &mut Output<W>) -> Result<i32, CliError> {
    let config = &req.config;
    let message = req.message.clone().unwrap_or_default();
    let _lock = match take_lock(&config.state_dir, &message) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let release = new_id("");
    let runtime = crate::ops::runtime()?;
    runtime.block_on(deploy(req, release, out))
}

async fn deploy<W: Write>(
    req: &DeployRequest,
    release: ReleaseId,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let config = &req.config;
    let refused = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("mwdeploy: refused: {what}: {e}");
        Ok(exit::REFUSED)
    };
    let hosts = match Hosts::new(config.ssh_defaults()) {
        Ok(h) => Arc::new(h),
        Err(e) => return refused("cannot prepare ssh", &e),
    };
    let rsync = rsync_config(config, req.work.provision).map_err(CliError::Usage)?;
    let hooks = Arc::new(hooks(req, hosts.clone(), &rsync).map_err(CliError::Usage)?);
    let canary = canary(config, hosts.clone()).map_err(CliError::Usage)?;
    let pool: Arc<dyn PoolControl> = if req.rollout {
        match reachable_haproxy(config, &hosts).await {
            Ok(pool) => Arc::new(pool),
            Err(_) => {
                hosts.close().await;
                return refused(
                    "a proxy is unreachable",
                    &"nothing was touched; every proxy must confirm each pool change",
                );
            }
        }
    } else {
        eprintln!(
            "mwdeploy: without --rollout the servers stay pooled: they serve while their \
             tree is updated"
        );
        Arc::new(NoPool)
    };

    let mut session = match Session::open(config, release.as_str(), req.output, req.no_log) {
        Ok(s) => s.exit_when_done(req.exit_when_done),
        Err(e) => return refused("cannot start", &e),
    };
    let deploy_id = release.as_str();
    let mut plan = req.plan(deploy_id, release.clone());
    if !req.rollout || req.work.provision {
        // New servers are not UP yet; without --rollout the pool is not read.
        plan.preflight = false;
    }
    for s in &mut plan.servers {
        s.hooks = hooks.points(&s.id);
    }
    let staging = plan.staging.as_mut().map(|s| {
        s.hooks = hooks.points(&s.id);
        s.clone()
    });

    let scope = {
        let (printer, prep) = session.parts();
        let mut show = (printer, &mut *out);
        let mut prep = prep.with(&mut show);
        prep.record(Event::started(&plan));
        prepare_staging(
            &mut prep,
            req,
            &rsync,
            &hosts,
            &hooks,
            staging.as_ref(),
            &plan,
            &release,
        )
        .await
    };
    let scope = match scope {
        Ok(scope) => scope,
        Err(stopped) => {
            session.abandon();
            hosts.close().await;
            return Ok(match stopped {
                Stopped::Interrupted => {
                    eprintln!("mwdeploy: interrupted before any production server was touched");
                    exit::INTERRUPTED
                }
                e @ Stopped::Failed { .. } => {
                    eprintln!("mwdeploy: refused: staging: {e}; no production server was touched");
                    exit::REFUSED
                }
            });
        }
    };
    let mut transfer: Arc<dyn Transfer> = Arc::new(
        RsyncTransfer::new(rsync.clone(), hosts.clone(), scope.info)
            .and_then(|t| t.with_scope(scope.fleet))
            .map(|t| match &scope.staging {
                Some(staging) => t.sharing_count_of(staging),
                None => t,
            })
            .map_err(|e| CliError::Usage(format!("rsync: {e}")))?,
    );
    if plan.layout == Layout::Inplace {
        // Its first command follows the depool: the handshake is better paid before.
        transfer = Arc::new(WarmAhead::new(transfer, hosts.clone(), &plan));
    }

    let notifier = notifier(
        config,
        deploy_id,
        plan.servers.iter().map(|s| s.id.to_string()).collect(),
        req.message.clone(),
        req.no_log,
    );
    let ports = Ports {
        pool,
        transfer,
        health: Arc::new(canary),
        hooks: hooks.clone(),
        notifier,
    };
    let code = session.drive(plan, ports, out).await;
    hosts.close().await;
    code
}

/// What the servers' transfer copies, and what their manifests record.
struct Scope {
    fleet: TransferScope,
    info: DeployInfo,
    /// Staging's transfer, when staging was synced: it counted the tree already.
    staging: Option<RsyncTransfer>,
}

/// Staging's work before production: pulls and patches on the checkout, the sync to
/// staging's live tree with its hooks and l10n. Returns the servers' transfer scope
/// (the whole tree, or the subtrees pulled on top of the fleet's latest release).
#[allow(clippy::too_many_arguments)]
async fn prepare_staging(
    prep: &mut Prep<'_>,
    req: &DeployRequest,
    rsync: &RsyncConfig,
    hosts: &Arc<Hosts>,
    hooks: &Arc<mwdeploy_rsync::Hooks>,
    staging: Option<&Server>,
    plan: &mwdeploy_core::Plan,
    release: &ReleaseId,
) -> Result<Scope, Stopped> {
    let config = &req.config;
    let mut info = DeployInfo::new(plan.deploy_id.clone());
    let versions = if req.work.uses_versions() {
        match prepare::versions(&config.staging_path, &req.versions) {
            Ok(v) => v,
            Err(e) => return Err(prep.fail_step("versions", e)),
        }
    } else {
        Vec::new()
    };
    if !req.work.rsync && !req.work.provision {
        let patch_dir = config.staging.prod_path.join(prepare::PATCH_DIR);
        let at = prepare::Checkout {
            staging_path: &config.staging_path,
            git_user: config.git_user.as_deref(),
            patch_dir: &patch_dir,
            work: &req.work,
        };
        let pulled = prepare::checkout(prep, at, &versions).await?;
        for (repo, commit) in pulled.commits {
            info = info.commit(repo, commit);
        }
    }
    let subtrees = match req.work.sync_scope(&versions) {
        SyncScope::Whole => None,
        SyncScope::Paths(paths) => Some(
            paths
                .iter()
                .map(|p| TreePath::new(&p.to_string_lossy()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Stopped::failed("sync scope", e.to_string()))?,
        ),
    };
    // A targeted copy builds on the live release: staging's own, and the fleet's latest.
    let scope_for = |base: Option<ReleaseId>| match &subtrees {
        None => TransferScope::Full,
        Some(paths) => TransferScope::subtrees(paths.clone(), base),
    };
    let probe = RsyncTransfer::new(rsync.clone(), hosts.clone(), info.clone())
        .map_err(|e| Stopped::failed("rsync", e.to_string()))?;
    let releases = config.layout == Layout::Releases && subtrees.is_some();
    let mut staged = None;
    if let Some(staging) = staging {
        let base = if releases {
            probe
                .latest_release(std::slice::from_ref(staging))
                .await
                .map_err(|e| {
                    prep.fail_step(
                        "staging_sync",
                        format!("cannot read staging's releases: {e}"),
                    )
                })?
        } else {
            None
        };
        let transfer = RsyncTransfer::new(rsync.clone(), hosts.clone(), info.clone())
            .and_then(|t| t.with_scope(scope_for(base)))
            .map_err(|e| prep.fail_step("staging_sync", format!("rsync: {e}")))?;
        let l10n = match (&config.l10n_command, req.work.l10n) {
            (Some(cmd), true) => {
                let point = prepare::l10n_point(config.layout);
                Some(
                    mwdeploy_rsync::Hooks::new(hosts.clone(), rsync)
                        .and_then(|h| h.global(point, vec![prepare::l10n_argv(cmd, config.layout)]))
                        .map_err(|e| prep.fail_step("l10n", format!("l10n_command: {e}")))?,
                )
            }
            _ => None,
        };
        prepare::sync_staging(
            prep,
            &transfer,
            &**hooks,
            l10n.as_ref().map(|h| h as &dyn mwdeploy_core::ports::Hook),
            staging,
            release,
            config.layout,
        )
        .await?;
        staged = Some(transfer);
    }
    let fleet_base = if releases {
        probe.latest_release(&plan.servers).await.map_err(|e| {
            prep.fail_step(
                "fleet_releases",
                format!("cannot read the servers' releases: {e}"),
            )
        })?
    } else {
        None
    };
    Ok(Scope {
        fleet: scope_for(fleet_base),
        info,
        staging: staged,
    })
}
