//! A rollback: the previous (or a named) release made live again on the servers,
//! through the same engine as a deploy: depool, switch, `post_activate`, canary, repool,
//! `parallel` servers at once. `fast` switches without depooling (the switch is atomic):
//! for incidents.
//!
//! ```text
//!  RollbackTransfer (mwdeploy-rsync, the engine's Transfer port):
//!    copy      checks the target release is on the server, notes the live one
//!    activate  switches to the target (one `mv -T` of a symlink)
//!    rollback  switches back to the release that was live before (its canary failed)
//! ```

use std::sync::Arc;

use mwdeploy_core::plan::{FailureBudget, OnFailure, StageSize};
use mwdeploy_core::ports::PoolControl;
use mwdeploy_core::{Event, Layout, Plan, ReleaseId};
use mwdeploy_rsync::RollbackTransfer;
use mwdeploy_runtime::driver::Ports;

use crate::config::Config;
use crate::deploy::Deployment;
use crate::error::{BuildError, DeployError};
use crate::ports::{notifier, NoPool, Setup};
use crate::request::{operator, select_servers, RequestError};
use crate::session::{take_lock, Controls, Observer, Session, Warn};

/// What a rollback is asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RollbackSpec {
    /// The servers (`None`: every server of the config).
    pub servers: Option<Vec<String>>,
    /// The release to go back to (`None`: each server's previous release).
    pub to: Option<ReleaseId>,
    /// Servers at once, out of the pool together (`None`: `max_unavailable`'s worth).
    pub parallel: Option<u32>,
    /// Switch without depooling.
    pub fast: bool,
    /// Nobody answers prompts: a failure aborts.
    pub unattended: bool,
    /// Why (one line).
    pub message: Option<String>,
    /// The request as given, for the journal.
    pub argv: Vec<String>,
}

/// Why a rollback cannot even be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackRefused {
    /// The in-place layout keeps no earlier release on the servers.
    #[error(
        "nothing to roll back to: {config} uses the in-place layout (release_layout: inplace), \
         which keeps no earlier release on the servers. To go back, return staging to the older \
         commit (e.g. `git -C {staging} revert <commit>`, or check out the older commit) and \
         redeploy it with `mwdeploy --rsync --servers all --rollout`. With release_layout: \
         releases, a rollback is one atomic switch."
    )]
    InPlace {
        /// The config file.
        config: String,
        /// `staging_path`.
        staging: String,
    },
    /// The servers or message are refused.
    #[error(transparent)]
    Request(#[from] RequestError),
}

/// Checks `spec` against `config` before anything runs.
pub fn check(config: &Config, spec: &RollbackSpec) -> Result<(), RollbackRefused> {
    if config.layout == Layout::Inplace {
        return Err(RollbackRefused::InPlace {
            config: config.file.display().to_string(),
            staging: config.staging_path.display().to_string(),
        });
    }
    select_servers(config, spec.servers.as_deref())?;
    Ok(())
}

/// Takes the lock, builds the ports (the pool only without `fast`, every proxy
/// reachable), opens the journal of run `id` (a [`new_id`](crate::session::new_id)`("rollback")`)
/// and records its start. Call [`check`] first.
pub async fn prepare(
    config: &Config,
    spec: &RollbackSpec,
    id: ReleaseId,
    controls: &Controls,
    observer: &mut dyn Observer,
    warn: Warn,
) -> Result<Deployment, DeployError> {
    let selected =
        select_servers(config, spec.servers.as_deref()).map_err(|e| BuildError::Request(e.0))?;
    let servers: Vec<_> = selected.iter().map(|&i| &config.servers[i]).collect();
    let mut policy = config.policy();
    // parallel N: N servers at once, out of the pool together (an incident tool);
    // else max_unavailable's worth.
    let n = spec.parallel.unwrap_or(policy.max_unavailable.max(1));
    policy.parallel = n;
    policy.max_unavailable = n;
    policy.stages = vec![StageSize::Percent(100)];
    policy.failure_budget = FailureBudget::Count(0);
    if spec.unattended {
        policy.on_failure = OnFailure::Abort;
    }
    let lock = take_lock(
        &config.state_dir,
        spec.message.as_deref().unwrap_or_default(),
    )?;
    let (setup, transfer) = Setup::existing(config, &servers, !spec.fast, &id).await?;
    let Setup {
        hosts,
        hooks,
        canary,
        pool,
        ..
    } = setup;
    let pool: Arc<dyn PoolControl> = match pool {
        Some(p) => Arc::new(p),
        None => Arc::new(NoPool),
    };
    let mut plan = Plan::new(
        id.as_str(),
        spec.to.clone().unwrap_or_else(|| id.clone()),
        Layout::Releases,
        servers
            .iter()
            .map(|s| {
                let mut server = s.to_server();
                server.pooled = s.pooled && !spec.fast;
                server.hooks = hooks.points(&server.id);
                server
            })
            .collect(),
    );
    plan.policy = policy;
    plan.preflight = false;
    plan.meta.flags = spec.argv.clone();
    plan.meta.message = spec.message.clone();
    plan.meta.user = operator();
    let notifier = notifier(
        config,
        id.as_str(),
        plan.servers.iter().map(|s| s.id.to_string()).collect(),
        spec.message.clone(),
        false,
    );
    let mut session = match Session::open(config, id.as_str(), false, controls, warn.clone()) {
        Ok(s) => s,
        Err(e) => {
            hosts.close().await;
            return Err(e.into());
        }
    };
    if spec.fast {
        warn("--fast: the servers stay in the pool while their release is switched back (the switch is atomic)");
    }
    session.record(Event::started(&plan), observer);
    let ports = Ports {
        pool,
        transfer: Arc::new(RollbackTransfer::new(transfer, spec.to.clone())),
        health: Arc::new(canary),
        hooks,
        notifier,
    };
    Ok(Deployment::ready(
        Some(lock),
        id,
        session,
        plan,
        ports,
        hosts,
    ))
}
