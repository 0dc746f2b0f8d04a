//! Recovery (`mwdeploy recover`): finish what a killed deploy left. Every server the journals of
//! unfinished deploys show out of the pool is made whole, canaried and repooled, through
//! the same engine as a deploy; then the old journals are closed and the lock released.
//!
//! ```text
//!  lock ──> journals without deploy_finished ──> left_out (depooled, not repooled)
//!    │
//!    ▼
//!  engine run "<time>-recover<hex>" on those servers:
//!    RecoverPool:     a server already out of the pool is not depooled again
//!    RecoverTransfer: in place, a cut copy is copied again from staging; otherwise the
//!                     live tree is left as it is (release layout: the switch is atomic)
//!    post_activate hooks, canary, repool (release layout: a failing canary rolls back)
//!    │
//!    ▼
//!  each old journal: a warning naming the recovery, then deploy_finished
//! ```
//!
//! Safe to run twice: a second run finds every journal finished and does nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use mwdeploy_core::event::{Record, ServerStatus};
use mwdeploy_core::plan::{FailureBudget, OnFailure, StageSize};
use mwdeploy_core::ports::{PoolControl, Progress};
use mwdeploy_core::{
    Event, Layout, Plan, PoolState, PortError, ReleaseId, Server, ServerId, Summary,
};
use mwdeploy_haproxy::HaproxyPool;
use mwdeploy_rsync::RecoverTransfer;
use mwdeploy_runtime::driver::Ports;
use mwdeploy_runtime::journal::{self, Journal};

use mwdeploy_runtime::lock::DeployLock;

use crate::config::{Config, ServerConfig};
use crate::deploy::Deployment;
use crate::error::{DeployError, LockRefused};
use crate::ports::{notifier, Setup};
use crate::request::operator;
use crate::session::{take_lock, Controls, Observer, Session, Warn};

/// One unfinished deploy: its journal and what it left.
#[derive(Debug)]
pub struct Unfinished {
    /// Its id (and journal's name).
    pub id: String,
    layout: Layout,
    release: Option<ReleaseId>,
    started: Option<SystemTime>,
    /// Each server's last state in the journal.
    last: BTreeMap<ServerId, ServerStatus>,
    /// Servers out of the pool, and whether their copy was cut.
    pub left: Vec<(ServerId, bool)>,
}

/// The unfinished deploys of `state_dir`, oldest first.
fn unfinished(state_dir: &Path) -> Result<Vec<Unfinished>, String> {
    let ids = journal::list(state_dir).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for id in ids {
        let read = journal::read(&journal::path(state_dir, &id)).map_err(|e| e.to_string())?;
        if journal::is_finished(&read) {
            continue;
        }
        let mut u = Unfinished {
            id: id.clone(),
            layout: Layout::Inplace,
            release: None,
            started: read.records.first().map(|r| r.ts),
            last: BTreeMap::new(),
            left: Vec::new(),
        };
        for r in &read.records {
            match &r.event {
                Event::DeployStarted {
                    layout, release, ..
                } => {
                    u.layout = *layout;
                    u.release = Some(release.clone());
                }
                Event::ServerState { server, state, .. } => {
                    u.last.insert(server.clone(), *state);
                }
                _ => {}
            }
        }
        u.left = journal::left_out(&read)
            .into_iter()
            .map(|l| (l.server, !l.copy_finished))
            .collect();
        out.push(u);
    }
    Ok(out)
}

/// Why a recovery cannot run; nothing was touched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError {
    /// The lock is held (a running deploy puts its own servers back), or failed.
    #[error(transparent)]
    Lock(#[from] LockRefused),
    /// A journal cannot be read.
    #[error("cannot read the journals: {0}")]
    Journals(String),
    /// A killed deploy used another layout than the config says now.
    #[error(
        "deploy {deploy} used the {was} layout but {config} now says release_layout: {now}; nothing was touched"
    )]
    LayoutChanged {
        /// The killed deploy.
        deploy: String,
        /// Its layout.
        was: Layout,
        /// The config's.
        now: Layout,
        /// The config file.
        config: String,
    },
    /// Servers a killed deploy left out are no longer in the config.
    #[error(
        "{} left out of the pool by a killed deploy but no longer in {config}: put {} back by hand (`mwdeploy pool repool` needs it in the config); nothing was touched",
        join(.servers), if .servers.len() == 1 { "it" } else { "them" }
    )]
    UnknownServers {
        /// The servers.
        servers: Vec<ServerId>,
        /// The config file.
        config: String,
    },
}

/// What the journals of `state_dir` say is left to recover, under the deploy lock.
#[derive(Debug)]
pub struct Recovery {
    lock: DeployLock,
    found: Vec<Unfinished>,
    targets: BTreeMap<ServerId, (bool, Option<ReleaseId>)>,
}

impl Recovery {
    /// Takes the lock and reads every journal: the unfinished deploys and the servers
    /// they left out of the pool.
    pub fn find(config: &Config) -> Result<Recovery, RecoverError> {
        let lock = take_lock(&config.state_dir, "recover")?;
        let found = unfinished(&config.state_dir).map_err(RecoverError::Journals)?;
        let mut targets: BTreeMap<ServerId, (bool, Option<ReleaseId>)> = BTreeMap::new();
        for u in &found {
            if u.layout != config.layout {
                return Err(RecoverError::LayoutChanged {
                    deploy: u.id.clone(),
                    was: u.layout,
                    now: config.layout,
                    config: config.file.display().to_string(),
                });
            }
            for (server, cut) in &u.left {
                let t = targets
                    .entry(server.clone())
                    .or_insert((false, u.release.clone()));
                t.0 |= *cut;
            }
        }
        let unknown: Vec<ServerId> = targets
            .keys()
            .filter(|s| config.server(s.as_str()).is_none())
            .cloned()
            .collect();
        if !unknown.is_empty() {
            return Err(RecoverError::UnknownServers {
                servers: unknown,
                config: config.file.display().to_string(),
            });
        }
        Ok(Recovery {
            lock,
            found,
            targets,
        })
    }

    /// The unfinished deploys, oldest first (none: nothing to recover).
    pub fn unfinished(&self) -> &[Unfinished] {
        &self.found
    }

    /// The servers left out of the pool (none: the journals only need closing).
    pub fn servers(&self) -> impl Iterator<Item = &ServerId> {
        self.targets.keys()
    }

    /// Closes the old journals for recovery `by`: a second run finds them finished.
    /// Returns the journals that could not be closed, with why.
    pub fn close(&self, config: &Config, by: &ReleaseId) -> Vec<(String, String)> {
        self.found
            .iter()
            .filter_map(|u| {
                close(&config.state_dir, u, by)
                    .err()
                    .map(|e| (u.id.clone(), e))
            })
            .collect()
    }

    /// The engine run `id` (a [`new_id`](crate::session::new_id)`("recover")`) that puts
    /// the servers back: built, journaled, its start recorded. The lock stays with this
    /// recovery, for [`close`](Self::close) after the run.
    pub async fn prepare(
        &self,
        config: &Config,
        id: ReleaseId,
        argv: Vec<String>,
        controls: &Controls,
        observer: &mut dyn Observer,
        warn: Warn,
    ) -> Result<Deployment, DeployError> {
        let _ = &self.lock;
        recover(
            config,
            id,
            &self.targets,
            &self.found,
            argv,
            controls,
            observer,
            warn,
        )
        .await
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The engine run that puts `targets` back.
#[allow(clippy::too_many_arguments)]
async fn recover(
    config: &Config,
    id: ReleaseId,
    targets: &BTreeMap<ServerId, (bool, Option<ReleaseId>)>,
    found: &[Unfinished],
    argv: Vec<String>,
    controls: &Controls,
    observer: &mut dyn Observer,
    warn: Warn,
) -> Result<Deployment, DeployError> {
    let servers: Vec<&ServerConfig> = config
        .servers
        .iter()
        .filter(|s| targets.contains_key(&s.name))
        .collect();
    let (setup, transfer) = Setup::existing(config, &servers, true, &id).await?;
    let Setup {
        hosts,
        hooks,
        canary,
        pool,
        ..
    } = setup;
    let pool = pool.expect("built with the pool");

    let n = u32::try_from(servers.len()).unwrap_or(u32::MAX).max(1);
    let release = found
        .iter()
        .rev()
        .find_map(|u| u.release.clone())
        .unwrap_or_else(|| id.clone());
    let mut plan = Plan::new(
        id.as_str(),
        release,
        config.layout,
        servers
            .iter()
            .map(|s| {
                let mut server = s.to_server();
                server.hooks = hooks.points(&server.id);
                server
            })
            .collect(),
    );
    // They are out already: all at once, each one on its own (no prompt, no stop).
    let mut policy = config.policy();
    policy.parallel = n;
    policy.max_unavailable = n;
    policy.stages = vec![StageSize::Percent(100)];
    policy.failure_budget = FailureBudget::Count(n);
    policy.on_failure = OnFailure::Continue;
    plan.policy = policy;
    plan.preflight = false;
    plan.meta.flags = argv;
    plan.meta.message = Some(format!(
        "recovering what {} left",
        found
            .iter()
            .map(|u| u.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    plan.meta.user = operator();

    let mut session = match Session::open(config, id.as_str(), false, controls, warn) {
        Ok(s) => s,
        Err(e) => {
            hosts.close().await;
            return Err(e.into());
        }
    };
    {
        session.record(Event::started(&plan), observer);
        for (server, (cut, _)) in targets {
            let detail = if *cut {
                "left out of the pool with its copy cut: copied again from staging".to_string()
            } else if config.layout == Layout::Releases {
                "left out of the pool: its live release is whole (the switch is atomic)".to_string()
            } else {
                "left out of the pool: its copy had finished".to_string()
            };
            session.record(
                Event::Warning {
                    server: Some(server.clone()),
                    detail,
                },
                observer,
            );
        }
    }
    let recopy: BTreeSet<ServerId> = targets
        .iter()
        .filter(|(_, (cut, _))| *cut)
        .map(|(s, _)| s.clone())
        .collect();
    let notifier = notifier(
        config,
        id.as_str(),
        targets.keys().map(ToString::to_string).collect(),
        plan.meta.message.clone(),
        false,
    );
    let ports = Ports {
        pool: Arc::new(RecoverPool(pool)),
        transfer: Arc::new(RecoverTransfer::new(
            transfer,
            recopy,
            config.layout == Layout::Releases,
        )),
        health: Arc::new(canary),
        hooks,
        notifier,
    };
    Ok(Deployment::ready(None, id, session, plan, ports, hosts))
}

/// Appends to `u`'s journal that recovery `by` took over, and its end.
fn close(state_dir: &Path, u: &Unfinished, by: &ReleaseId) -> Result<(), String> {
    let path = journal::path(state_dir, &u.id);
    journal::cut_torn_tail(&path).map_err(|e| e.to_string())?;
    let mut j = Journal::create(state_dir, &u.id).map_err(|e| e.to_string())?;
    let now = SystemTime::now();
    let mine: Vec<&ServerId> = u.left.iter().map(|(s, _)| s).collect();
    let detail = if mine.is_empty() {
        format!("the deploy did not finish (killed?); closed by {by}: no server was left out of the pool")
    } else {
        format!(
            "the deploy did not finish (killed?); {by} took over {} (see its journal)",
            join(&mine)
        )
    };
    let mut summary = Summary::default();
    for state in u.last.values() {
        let state = match state {
            s if s.is_final() => *s,
            _ => ServerStatus::Skipped,
        };
        summary.count(state);
    }
    for event in [
        Event::Warning {
            server: None,
            detail,
        },
        Event::DeployFinished {
            summary,
            duration_s: u
                .started
                .and_then(|s| now.duration_since(s).ok())
                .map_or(0.0, |d| d.as_secs_f64()),
            verdict: mwdeploy_core::Verdict::Failed,
        },
    ] {
        j.append(&Record {
            ts: now,
            deploy: u.id.clone(),
            event,
        })
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// HAProxy, but a server that is already out of the pool is not depooled again (a
/// drain would take it out of maintenance first): a recovery's pool.
#[derive(Debug)]
pub struct RecoverPool(pub HaproxyPool);

#[async_trait]
impl PoolControl for RecoverPool {
    async fn depool(&self, server: &Server, progress: &Progress) -> Result<(), PortError> {
        if self.0.state(server).await? == PoolState::Maint {
            return Ok(());
        }
        self.0.depool(server, progress).await
    }
    async fn repool(&self, server: &Server, progress: &Progress) -> Result<(), PortError> {
        self.0.repool(server, progress).await
    }
    async fn state(&self, server: &Server) -> Result<PoolState, PortError> {
        self.0.state(server).await
    }
    async fn states(&self) -> Result<Vec<(ServerId, PoolState)>, PortError> {
        self.0.states().await
    }
}
