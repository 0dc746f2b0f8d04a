//! A deploy to the real fleet: a checked [`DeployRequest`] run through HAProxy, rsync,
//! the canary, the hooks and the webhooks.
//!
//! ```text
//!  prepare:  lock (state_dir) ──> ssh, ports from the config, every proxy reachable
//!            (rollout) ──> journal, log file ──> deploy_started, then staging: pulls,
//!            patches, sync to staging's live tree, l10n, staging hooks (prep_step records)
//!  start:    Rollout(plan) on the driver: staging's canary, then the servers
//!  finish:   records to an Observer, prompts to a Prompter ──> Report (its Verdict)
//! ```
//!
//! Anything refused before production is a [`DeployError`]; once the machine runs,
//! failures are events and the [`Report`]'s verdict, not errors.

use std::sync::Arc;

use mwdeploy_core::ports::{PoolControl, Transfer};
use mwdeploy_core::{Event, Layout, Plan, ReleaseId, Report, Server};
use mwdeploy_exec::Hosts;
use mwdeploy_mediawiki::steps::{self as prepare, Checkout};
use mwdeploy_mediawiki::{Steps, Stopped, SyncScope};
use mwdeploy_rsync::{
    DeployInfo, RsyncConfig, RsyncTransfer, Scope as TransferScope, TreePath, WarmAhead,
};
use mwdeploy_runtime::driver::Ports;
use mwdeploy_runtime::lock::DeployLock;

use crate::error::{BuildError, DeployError};
use crate::ports::{hooks, notifier, NoPool, Setup};
use crate::request::DeployRequest;
use crate::session::{new_id, take_lock, Controls, Observer, Prompter, Running, Session, Warn};

/// A run whose steps before production are done (a deploy's: the lock held, staging
/// pulled, synced and hooked; a rollback's or a recovery's: the lock held, the journal
/// open); the machine not started yet.
pub struct Deployment {
    /// The deploy lock, held until the report (a recovery holds its own).
    _lock: Option<DeployLock>,
    release: ReleaseId,
    session: Session,
    plan: Plan,
    ports: Ports,
    hosts: Arc<Hosts>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("release", &self.release)
            .finish_non_exhaustive()
    }
}

/// Runs the whole deploy `req` asks for: [`prepare()`], then the machine to its end, its
/// records to `observer` and its prompts to `prompter`.
pub async fn deploy(
    req: &DeployRequest,
    controls: &Controls,
    observer: &mut dyn Observer,
    prompter: &mut dyn Prompter,
    warn: Warn,
) -> Result<Report, DeployError> {
    let deployment = prepare(req, new_id(""), controls, observer, warn).await?;
    Ok(deployment.start()?.finish(observer, prompter).await)
}

/// Takes the lock, builds the ports, checks every proxy (with `rollout`), opens the
/// journal of deploy `release` (a [`new_id`]`("")`: the deploy's id is its release's)
/// and runs staging's steps, each recorded and shown to `observer`. Refused before
/// production: a [`DeployError`], and nothing was touched.
pub async fn prepare(
    req: &DeployRequest,
    release: ReleaseId,
    controls: &Controls,
    observer: &mut dyn Observer,
    warn: Warn,
) -> Result<Deployment, DeployError> {
    let config = &req.config;
    let lock = take_lock(
        &config.state_dir,
        req.message.as_deref().unwrap_or_default(),
    )?;
    let setup = Setup::build(
        config,
        req.work.provision,
        |hosts, rsync| hooks(req, hosts, rsync),
        req.rollout,
    )
    .await?;
    let mut session =
        match Session::open(config, release.as_str(), req.no_log, controls, warn.clone()) {
            Ok(s) => s,
            Err(e) => return setup.refuse(e.into()).await,
        };
    let Setup {
        hosts,
        rsync,
        hooks,
        canary,
        pool,
    } = setup;
    let pool: Arc<dyn PoolControl> = match pool {
        Some(p) => Arc::new(p),
        None => {
            warn(
                "without --rollout the servers stay pooled: they serve while their tree is updated",
            );
            Arc::new(NoPool)
        }
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
        let mut steps = session.steps(observer);
        steps.record(Event::started(&plan));
        prepare_staging(
            &mut steps,
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
            hosts.close().await;
            return Err(match stopped {
                Stopped::Interrupted => DeployError::Interrupted,
                e @ Stopped::Failed { .. } => DeployError::Staging(e),
            });
        }
    };
    let transfer = RsyncTransfer::new(rsync.clone(), hosts.clone(), scope.info)
        .and_then(|t| t.with_scope(scope.fleet))
        .map(|t| match &scope.staging {
            Some(staging) => t.sharing_count_of(staging),
            None => t,
        });
    let mut transfer: Arc<dyn Transfer> = match transfer {
        Ok(t) => Arc::new(t),
        Err(e) => {
            hosts.close().await;
            return Err(BuildError::Rsync(e).into());
        }
    };
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
        hooks,
        notifier,
    };
    Ok(Deployment::ready(
        Some(lock),
        release,
        session,
        plan,
        ports,
        hosts,
    ))
}

impl Deployment {
    /// A run ready to start: what [`prepare()`] (or a rollback's, a recovery's) made.
    pub(crate) fn ready(
        lock: Option<DeployLock>,
        release: ReleaseId,
        session: Session,
        plan: Plan,
        ports: Ports,
        hosts: Arc<Hosts>,
    ) -> Self {
        Deployment {
            _lock: lock,
            release,
            session,
            plan,
            ports,
            hosts,
        }
    }

    /// The release (and deploy) id.
    pub fn release(&self) -> &ReleaseId {
        &self.release
    }

    /// Starts the machine: staging's canary, then the servers. Read
    /// [`Running::records`] while polling [`Running::report`], or call
    /// [`Running::finish`]. The lock is held until the report is ready.
    pub fn start(self) -> Result<Running, DeployError> {
        let Deployment {
            _lock,
            session,
            plan,
            ports,
            hosts,
            ..
        } = self;
        let mut running = session.start(plan, ports)?;
        let run = running.report;
        running.report = Box::pin(async move {
            let report = run.await;
            hosts.close().await;
            drop(_lock);
            report
        });
        Ok(running)
    }
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
    prep: &mut dyn Steps,
    req: &DeployRequest,
    rsync: &RsyncConfig,
    hosts: &Arc<Hosts>,
    hooks: &Arc<mwdeploy_rsync::Hooks>,
    staging: Option<&Server>,
    plan: &Plan,
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
        let at = Checkout {
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
