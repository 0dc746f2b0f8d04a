//! The engine's ports built from the config: HAProxy on every proxy, rsync, the canary,
//! the hooks and the webhooks; shared by the deploy, rollback, recovery and the
//! operations (status, releases, pool).
//!
//! Each builder returns a [`BuildError`] naming the key, server or proxy it concerns.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use mwdeploy_canary::{Canary, CurlCheck, ErrorRateGate};
use mwdeploy_core::ports::{Note, Notifier, PoolControl, Progress};
use mwdeploy_core::{HookPoint, PoolState, PortError, Server, ServerId};
use mwdeploy_exec::Hosts;
use mwdeploy_haproxy::{HaproxyConfig, HaproxyPool, Proxy, Transport};
use mwdeploy_rsync::{Hooks, RsyncConfig, TreePath};

use crate::config::{Config, ServerConfig, StagingConfig};
use crate::error::BuildError;
use crate::request::DeployRequest;

/// The transfer's settings from the config.
///
/// `provision`: the source is the deploy host's own live tree (`staging.prod_path`), as
/// it is, rather than the staging checkout.
pub fn rsync_config(config: &Config, provision: bool) -> Result<RsyncConfig, BuildError> {
    let source = if provision {
        &config.staging.prod_path
    } else {
        &config.staging_path
    };
    let mut c = RsyncConfig::new(source, &config.prod_path, config.layout);
    c.keep_releases = config.keep_releases as usize;
    c.shared_dirs = config
        .shared_dirs
        .iter()
        .map(|d| TreePath::new(d).map_err(BuildError::SharedDirs))
        .collect::<Result<_, _>>()?;
    c.excludes = config.excludes.clone();
    c.chown = config.chown.clone();
    c.compress = config.compress;
    // Every server's releases sit beside its own live tree (`<prod_path>-releases`).
    if let Some(s) = config.servers.iter().find(|s| {
        let mut default = s.prod_path.as_os_str().to_owned();
        default.push("-releases");
        s.releases_dir != Path::new(&default)
    }) {
        return Err(BuildError::ReleasesDir {
            server: s.name.clone(),
        });
    }
    c.validate().map_err(BuildError::Rsync)?;
    Ok(c)
}

/// The hooks of a deploy: the global ones, each selected server's (and staging's) own
/// lists, with `--l10n` first at its point on every server.
pub fn hooks(
    req: &DeployRequest,
    hosts: Arc<Hosts>,
    rsync: &RsyncConfig,
) -> Result<Hooks, BuildError> {
    let l10n = match (req.work.l10n, &req.config.l10n_command) {
        (true, Some(cmd)) => Some(cmd.as_slice()),
        _ => None,
    };
    hooks_for(&req.config, req.selected_servers(), l10n, hosts, rsync)
}

/// The hooks for `servers` (and staging): the global ones and each one's own lists;
/// `l10n`, when given, runs first at its layout's point on every server (staging runs it
/// as a step of its own).
pub fn hooks_for<'a>(
    config: &Config,
    servers: impl Iterator<Item = &'a ServerConfig> + Clone,
    l10n: Option<&[String]>,
    hosts: Arc<Hosts>,
    rsync: &RsyncConfig,
) -> Result<Hooks, BuildError> {
    let bad = BuildError::Hooks;
    let mut h = Hooks::new(hosts, rsync).map_err(bad)?;
    for point in HookPoint::ALL {
        h = h
            .global(point, config.hooks.at(point).to_vec())
            .map_err(bad)?;
        for s in servers.clone() {
            let mut list = s.hooks.at(point).to_vec();
            if let Some(cmd) = l10n {
                if point == mwdeploy_mediawiki::steps::l10n_point(config.layout) {
                    list.insert(0, mwdeploy_mediawiki::steps::l10n_argv(cmd, config.layout));
                }
            }
            h = h.server(s.name.clone(), point, list).map_err(bad)?;
        }
        let staging = ServerId::new(StagingConfig::NAME).expect("a valid name");
        h = h
            .server(staging, point, config.staging.hooks.at(point).to_vec())
            .map_err(bad)?;
    }
    Ok(h)
}

/// The canary (curl on each server) and the error gate, if configured.
pub fn canary(config: &Config, hosts: Arc<Hosts>) -> Result<Canary, BuildError> {
    let c = &config.canary;
    let bad = BuildError::Canary;
    let curl = canary_curl(config).map_err(bad)?;
    let mut canary = Canary::new(hosts, curl);
    if let Some(g) = &c.error_gate {
        let gate = ErrorRateGate::new(g.log_file.to_string_lossy(), &g.pattern, g.threshold)
            .map_err(bad)?
            .sudo(config.remote_sudo);
        canary = canary.with_gate(gate);
    }
    Ok(canary)
}

/// The canary's curl check (the config's URLs, vhost, status and body).
pub fn canary_curl(config: &Config) -> Result<CurlCheck, mwdeploy_canary::ConfigError> {
    let c = &config.canary;
    let mut curl = CurlCheck::new(&c.urls)?
        .expect_status(c.expect_status)
        .timeout(c.timeout)
        .follow_redirects(c.follow_redirects);
    if let Some(vhost) = &config.canary_vhost {
        curl = curl.host(vhost.clone())?;
    }
    if let Some(body) = &c.expect_body {
        curl = curl.expect_body(body.clone());
    }
    Ok(curl)
}

/// HAProxy on every proxy of the config, in every backend.
pub fn haproxy(config: &Config, hosts: &Hosts) -> Result<HaproxyPool, BuildError> {
    let mut proxies = Vec::with_capacity(config.proxies.len());
    for p in &config.proxies {
        let bad = |e: &dyn std::fmt::Display| BuildError::Proxy {
            proxy: p.name.to_string(),
            detail: e.to_string(),
        };
        let transport = if p.local {
            Transport::local(&p.socket).map_err(|e| bad(&e))?
        } else {
            let runner = hosts.runner(&p.to_host()).map_err(|e| bad(&e))?;
            Transport::remote(runner, p.socket.to_string_lossy())
                .map_err(|e| bad(&e))?
                .sudo(config.remote_sudo)
        };
        proxies.push(Proxy::new(p.name.as_str(), transport).map_err(|e| bad(&e))?);
    }
    let c = HaproxyConfig::new(proxies, config.haproxy_backends.clone())
        .timeouts(config.rollout.drain_timeout, config.rollout.repool_timeout)
        .after_check(config.rollout.repool_after_check);
    HaproxyPool::new(c).map_err(|e| BuildError::Haproxy(Box::new(e)))
}

/// HAProxy on every proxy, once every proxy answered: a pool change must be confirmed
/// by each, so one that cannot be read refuses the run before anything changes (also
/// with `--force`). `Err` holds each proxy's error.
pub async fn reachable_haproxy(config: &Config, hosts: &Hosts) -> Result<HaproxyPool, Vec<String>> {
    let pool = haproxy(config, hosts).map_err(|e| vec![e.to_string()])?;
    let unreachable: Vec<String> = pool
        .status()
        .await
        .proxies
        .into_iter()
        .filter_map(|p| p.error.map(|e| e.to_string()))
        .collect();
    if unreachable.is_empty() {
        return Ok(pool);
    }
    Err(unreachable)
}

/// The webhooks of the config for run `id` (none with `no_log`, or none configured).
pub fn notifier(
    config: &Config,
    id: &str,
    servers: Vec<String>,
    message: Option<String>,
    no_log: bool,
) -> Arc<dyn Notifier> {
    if no_log {
        return Arc::new(NoNotifier);
    }
    let w = &config.webhooks;
    let webhooks = mwdeploy_webhook::Webhooks::new(
        mwdeploy_webhook::hooks(
            w.discord.as_ref().map(|s| s.expose()),
            w.slack.as_ref().map(|s| s.expose()),
        ),
        mwdeploy_webhook::Curl::default(),
        id,
        servers,
        message,
    );
    if webhooks.is_on() {
        Arc::new(webhooks)
    } else {
        Arc::new(NoNotifier)
    }
}

/// Without `--rollout` no server leaves the pool: every server is unpooled in the plan,
/// so the machine never asks; an ask anyway is refused.
#[derive(Debug)]
pub struct NoPool;

#[async_trait]
impl PoolControl for NoPool {
    async fn depool(&self, server: &Server, _: &Progress) -> Result<(), PortError> {
        Err(PortError::misconfigured(format!(
            "{}: no pool changes without --rollout",
            server.id
        )))
    }
    async fn repool(&self, server: &Server, _: &Progress) -> Result<(), PortError> {
        Err(PortError::misconfigured(format!(
            "{}: no pool changes without --rollout",
            server.id
        )))
    }
    async fn state(&self, server: &Server) -> Result<PoolState, PortError> {
        Err(PortError::misconfigured(format!(
            "{}: the pool is not read without --rollout",
            server.id
        )))
    }
    async fn states(&self) -> Result<Vec<(ServerId, PoolState)>, PortError> {
        Err(PortError::misconfigured(
            "the pool is not read without --rollout",
        ))
    }
}

/// No webhook configured, or `--no-log`: every note is dropped.
#[derive(Debug)]
pub struct NoNotifier;

#[async_trait]
impl Notifier for NoNotifier {
    async fn notify(&self, _note: &Note) -> Result<(), PortError> {
        Ok(())
    }
}

/// The ports every run (a deploy, a rollback, a recovery) builds the same way: ssh to the
/// hosts, rsync's settings, the hooks, the canary, and (when asked) HAProxy on every
/// proxy, each proxy read once.
pub(crate) struct Setup {
    /// One ssh connection per host, closed when the run ends.
    pub(crate) hosts: Arc<Hosts>,
    /// The transfer's settings.
    pub(crate) rsync: RsyncConfig,
    /// The hooks.
    pub(crate) hooks: Arc<Hooks>,
    /// The canary.
    pub(crate) canary: Canary,
    /// HAProxy, every proxy reachable (`None` when the run does not change the pool).
    pub(crate) pool: Option<HaproxyPool>,
}

impl Setup {
    /// Builds them: `rsync` from the config as the run wants it, `hooks` for its servers,
    /// the pool when `with_pool`. On an error the hosts are closed and nothing was
    /// touched.
    pub(crate) async fn build(
        config: &Config,
        provision: bool,
        hooks: impl FnOnce(Arc<Hosts>, &RsyncConfig) -> Result<Hooks, BuildError>,
        with_pool: bool,
    ) -> Result<Setup, crate::DeployError> {
        let hosts = Arc::new(Hosts::new(config.ssh_defaults()).map_err(BuildError::Ssh)?);
        let built = async {
            let rsync = rsync_config(config, provision)?;
            let hooks = Arc::new(hooks(hosts.clone(), &rsync)?);
            let canary = canary(config, hosts.clone())?;
            let pool = if with_pool {
                Some(
                    reachable_haproxy(config, &hosts)
                        .await
                        .map_err(crate::DeployError::Unreachable)?,
                )
            } else {
                None
            };
            Ok((rsync, hooks, canary, pool))
        };
        match built.await {
            Ok((rsync, hooks, canary, pool)) => Ok(Setup {
                hosts,
                rsync,
                hooks,
                canary,
                pool,
            }),
            Err(e) => {
                hosts.close().await;
                Err(e)
            }
        }
    }

    /// The setup of a run that copies nothing new (a rollback, a recovery) on `servers`:
    /// their own hooks (no l10n), and the transfer of run `id` over the releases already
    /// there.
    pub(crate) async fn existing(
        config: &Config,
        servers: &[&ServerConfig],
        with_pool: bool,
        id: &mwdeploy_core::ReleaseId,
    ) -> Result<(Setup, mwdeploy_rsync::RsyncTransfer), crate::DeployError> {
        let setup = Setup::build(
            config,
            false,
            |hosts, rsync| hooks_for(config, servers.iter().copied(), None, hosts, rsync),
            with_pool,
        )
        .await?;
        let info = mwdeploy_rsync::DeployInfo::new(id.as_str());
        match mwdeploy_rsync::RsyncTransfer::new(setup.rsync.clone(), setup.hosts.clone(), info) {
            Ok(t) => Ok((setup, t)),
            Err(e) => setup.refuse(BuildError::Rsync(e).into()).await,
        }
    }

    /// Closes the hosts and gives back `e`: a run refused after the setup.
    pub(crate) async fn refuse<T>(&self, e: crate::DeployError) -> Result<T, crate::DeployError> {
        self.hosts.close().await;
        Err(e)
    }
}
