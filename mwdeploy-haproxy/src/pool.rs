//! [`HaproxyPool`]: core's [`PoolControl`] over the runtime API of every proxy.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use mwdeploy_core::event::PoolAction;
use mwdeploy_core::model::validate_name;
use mwdeploy_core::ports::{PoolControl, Progress, ProgressUpdate, ProxyAnswer};
use mwdeploy_core::{PoolState, PortError, Server, ServerId};
use tokio::time::Instant;

use crate::error::{HaproxyError, Unserved};
use crate::reply::{check_empty, refusal_of_show};
use crate::stat::{parse_servers_state, parse_show_stat, RowKind, ServerStateRow, StatRow, Status};
use crate::status::{
    least_serving, BackendStatus, CheckStatus, PoolStatus, ProxyStatus, ServerStatus,
};
use crate::transport::Transport;

/// Backends and servers only: frontends are not read.
const SHOW_STAT: &str = "show stat -1 6 -1";
const SHOW_SERVERS_STATE: &str = "show servers state";

/// One HAProxy instance and how to reach its admin socket.
#[derive(Debug, Clone)]
pub struct Proxy {
    name: String,
    transport: Transport,
}

impl Proxy {
    /// A proxy called `name` (checked like every name that reaches a message or ssh).
    pub fn new(name: &str, transport: Transport) -> Result<Proxy, HaproxyError> {
        validate_name("proxy", name, 253)?;
        Ok(Proxy {
            name: name.to_string(),
            transport,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How its socket is reached.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

/// What [`HaproxyPool`] needs: the proxies, the backends the servers are in, and the
/// bounds of each step.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HaproxyConfig {
    /// Every proxy; a pool change counts only when all of them confirmed it.
    pub proxies: Vec<Proxy>,
    /// `haproxy_backend`: the backends the servers are in (a change applies to every
    /// one of them that holds the server).
    pub backends: Vec<String>,
    /// `rollout.drain_timeout`: how long a depool waits for sessions to end before it
    /// puts the server in maintenance anyway.
    pub drain_timeout: Duration,
    /// `rollout.repool_timeout`: how long a repool waits for HAProxy to serve the server.
    pub repool_timeout: Duration,
    /// `rollout.repool_after_check`: a server with a health check leaves maintenance
    /// through DRAIN and gets requests only once HAProxy's own check passed since
    /// (`true`, the default). `false`: `state ready` at once, as `enable server` and the
    /// old tool do; the repool counts once every backend has it `UP`, and HAProxy's
    /// next check, in the pool, can still take it out.
    pub after_check: bool,
    /// How often the sessions and states are read while waiting.
    pub poll_interval: Duration,
    /// How long one command may take, connection included.
    pub command_timeout: Duration,
}

impl HaproxyConfig {
    /// `proxies` and `backends`, with the config defaults: 30 s drain and repool
    /// bounds, a repool after HAProxy's check, a 20 ms poll interval (a read of the
    /// stats: a server waiting for its check is out of the pool, and the wait should
    /// end when the check does), 10 s per command.
    pub fn new(proxies: Vec<Proxy>, backends: Vec<String>) -> HaproxyConfig {
        HaproxyConfig {
            proxies,
            backends,
            drain_timeout: Duration::from_secs(30),
            repool_timeout: Duration::from_secs(30),
            after_check: true,
            poll_interval: Duration::from_millis(20),
            command_timeout: Duration::from_secs(10),
        }
    }

    /// The same config with `drain_timeout` and `repool_timeout`.
    pub fn timeouts(mut self, drain: Duration, repool: Duration) -> HaproxyConfig {
        self.drain_timeout = drain;
        self.repool_timeout = repool;
        self
    }

    /// The same config with `repool_after_check`: whether a repooled server waits for
    /// HAProxy's own check, in DRAIN, before it gets requests.
    pub fn after_check(mut self, after_check: bool) -> HaproxyConfig {
        self.after_check = after_check;
        self
    }

    /// The same config with this poll interval.
    pub fn poll_interval(mut self, every: Duration) -> HaproxyConfig {
        self.poll_interval = every;
        self
    }

    /// The same config with this bound on each command.
    pub fn command_timeout(mut self, timeout: Duration) -> HaproxyConfig {
        self.command_timeout = timeout;
        self
    }
}

/// How a server was, on one proxy and backend, before mwdeploy depooled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Before {
    /// It has a health check (a row in maintenance no longer shows it).
    checked: bool,
}

type Key = (String, String, String);

/// Depools and repools servers on every proxy and backend, and reads their states.
///
/// - `depool`: on every proxy at once, `set server <b>/<s> state drain` in every
///   backend that holds the server, then `show stat` until its sessions (`scur`, plus
///   `qcur` requests queued for it) are 0 (at most
///   `drain_timeout`; past it, on to maintenance, said through the progress handle),
///   then `state maint`, confirmed by reading the state back. If any proxy fails, the
///   others are made ready again and the error names the proxy that failed.
/// - `repool`: on every proxy at once, within `repool_timeout`. A server with a health
///   check leaves maintenance through `state drain` (HAProxy checks it again, sends it
///   no new request), is made `state ready` only once a check passed since, then
///   confirmed served (`UP`). A server without a check, or any server with
///   [`HaproxyConfig::after_check`] off, gets `state ready` at once. Its health is never forced (`health up`): the balancer's own check decides. A
///   server not confirmed in time is put back in maintenance on that proxy, and on
///   every other proxy that served it ([`HaproxyError::NotServing`]).
/// - `states` / `state`: from `show stat`; across proxies and backends, the least
///   serving state. [`HaproxyPool::status`] has the full picture.
///
/// Servers with `pooled: false` are never sent to HAProxy.
#[derive(Debug)]
pub struct HaproxyPool {
    config: HaproxyConfig,
    before: Mutex<HashMap<Key, Before>>,
}

impl HaproxyPool {
    /// Checks `config` (at least one proxy and backend, names that may reach the line
    /// protocol, no proxy or backend twice, a non-zero poll interval).
    pub fn new(config: HaproxyConfig) -> Result<HaproxyPool, HaproxyError> {
        if config.proxies.is_empty() {
            return Err(HaproxyError::Config("no proxy configured".into()));
        }
        if config.backends.is_empty() {
            return Err(HaproxyError::Config(
                "no backend configured (haproxy_backend)".into(),
            ));
        }
        for (i, b) in config.backends.iter().enumerate() {
            validate_name("backend", b, 253)?;
            if config.backends[..i].contains(b) {
                return Err(HaproxyError::Config(format!("backend {b} is listed twice")));
            }
        }
        for (i, p) in config.proxies.iter().enumerate() {
            if config.proxies[..i].iter().any(|q| q.name == p.name) {
                return Err(HaproxyError::Config(format!(
                    "proxy {} is listed twice",
                    p.name
                )));
            }
        }
        if config.poll_interval.is_zero() {
            return Err(HaproxyError::Config("the poll interval is 0".into()));
        }
        Ok(HaproxyPool {
            config,
            before: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &HaproxyConfig {
        &self.config
    }

    /// Every server of the configured backends on every proxy: status in HAProxy's
    /// words, admin and operational state, check, sessions. A proxy that cannot be
    /// read is listed with its error; the others are still read.
    pub async fn status(&self) -> PoolStatus {
        let proxies = join_all(self.config.proxies.iter().map(|p| async move {
            match self.read_proxy(p).await {
                Ok(backends) => ProxyStatus {
                    proxy: p.name.clone(),
                    backends,
                    error: None,
                },
                Err(e) => ProxyStatus {
                    proxy: p.name.clone(),
                    backends: Vec::new(),
                    error: Some(e),
                },
            }
        }))
        .await;
        PoolStatus { proxies }
    }

    /// Depools `server` on every proxy; see [`HaproxyPool`].
    pub async fn depool_server(
        &self,
        server: &Server,
        progress: &Progress,
    ) -> Result<(), HaproxyError> {
        let name = pooled_name(server)?;
        // Where the server is, on every proxy, before anything changes: a server missing
        // from one proxy fails the depool with nothing touched.
        let located = try_join_all(self.config.proxies.iter().map(|p| async move {
            let rows = self.read_stat(p).await?;
            let found: Vec<(String, Option<Before>)> = self
                .server_rows(p, &rows, name)?
                .into_iter()
                .map(|r| (r.proxy.clone(), before_of(r)))
                .collect();
            Ok::<_, HaproxyError>(found)
        }))
        .await?;
        {
            let mut before = self.lock_before();
            for (p, found) in self.config.proxies.iter().zip(&located) {
                for (backend, b) in found {
                    let key = (p.name.clone(), backend.clone(), name.to_string());
                    // Already out (a depool again): keep what was known from before;
                    // unknown, the repool asks HAProxy whether it has a check.
                    if let Some(b) = b {
                        before.insert(key, *b);
                    }
                }
            }
        }
        let touched = Mutex::new(Vec::new());
        let touched_ref = &touched;
        let result = try_join_all(self.config.proxies.iter().zip(&located).map(|(p, found)| {
            let backends: Vec<&str> = found.iter().map(|(b, _)| b.as_str()).collect();
            async move {
                let result = self
                    .depool_on(p, name, backends.clone(), touched_ref, progress)
                    .await;
                answer(progress, p, &backends, PoolAction::Depool, &result);
                result
            }
        }))
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(failed) => {
                let touched = touched.into_inner().unwrap_or_else(|e| e.into_inner());
                Err(self.put_back(name, touched, failed, progress).await)
            }
        }
    }

    /// Repools `server` on every proxy; see [`HaproxyPool`]. Every proxy is tried; the
    /// first failure is returned (each one is also reported through `progress`).
    ///
    /// When a proxy left the server out ([`HaproxyError::rejects_server`]: its check
    /// failed, or it did not serve the server in time), the server is broken whatever the other proxies saw: it is put back in maintenance
    /// on the proxies that had confirmed it too, so no proxy sends it traffic.
    pub async fn repool_server(
        &self,
        server: &Server,
        progress: &Progress,
    ) -> Result<(), HaproxyError> {
        self.repool_with(server, false, progress).await
    }

    /// `--force` on a server whose canary failed: as [`HaproxyPool::repool_server`], but
    /// a server HAProxy's check rejects, or does not pass in time, is left `READY` on
    /// every proxy, where that check decides (it is served once the check passes),
    /// instead of being put back in maintenance. Returns its state then.
    pub async fn repool_server_forced(
        &self,
        server: &Server,
        progress: &Progress,
    ) -> Result<PoolState, HaproxyError> {
        self.repool_with(server, true, progress).await?;
        self.server_state(server).await
    }

    async fn repool_with(
        &self,
        server: &Server,
        forced: bool,
        progress: &Progress,
    ) -> Result<(), HaproxyError> {
        let name = pooled_name(server)?;
        let results = join_all(self.config.proxies.iter().map(|p| async move {
            let mut backends = Vec::new();
            let result = self
                .repool_on(p, name, forced, &mut backends, progress)
                .await;
            if backends.is_empty() {
                // Not read so far: the backends it was asked in.
                backends.clone_from(&self.config.backends);
            }
            let names: Vec<&str> = backends.iter().map(String::as_str).collect();
            answer(progress, p, &names, PoolAction::Repool, &result);
            result
        }))
        .await;
        let rejected = results
            .iter()
            .any(|r| r.as_ref().is_err_and(HaproxyError::rejects_server));
        let mut first = None;
        for (proxy, result) in self.config.proxies.iter().zip(results) {
            match result {
                Ok(backends) if rejected && !forced => {
                    self.take_out(proxy, name, &backends, progress).await;
                }
                Ok(_) => {}
                Err(e) => {
                    progress.report(ProgressUpdate::line(format!("repool failed: {e}")));
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// `server`'s least serving state across every proxy and backend.
    pub async fn server_state(&self, server: &Server) -> Result<PoolState, HaproxyError> {
        let name = pooled_name(server)?;
        let per_proxy = try_join_all(self.config.proxies.iter().map(|p| async move {
            let rows = self.read_stat(p).await?;
            let states: Vec<PoolState> = self
                .server_rows(p, &rows, name)?
                .iter()
                .map(|r| r.status_word().pool_state())
                .collect();
            Ok::<_, HaproxyError>(states)
        }))
        .await?;
        Ok(per_proxy
            .into_iter()
            .flatten()
            .reduce(least_serving)
            .unwrap_or(PoolState::Down))
    }

    /// Every server of the configured backends, with its least serving state across
    /// proxies and backends, in backend order then HAProxy's order. Names that could
    /// not be a server of the config (core's name rules) are left out.
    pub async fn server_states(&self) -> Result<Vec<(ServerId, PoolState)>, HaproxyError> {
        let per_proxy = try_join_all(self.config.proxies.iter().map(|p| async move {
            let rows = self.read_stat(p).await?;
            self.check_backends(p, &rows)?;
            Ok::<_, HaproxyError>(rows)
        }))
        .await?;
        let mut order: Vec<ServerId> = Vec::new();
        let mut states: HashMap<ServerId, PoolState> = HashMap::new();
        for backend in &self.config.backends {
            for rows in &per_proxy {
                for row in rows
                    .iter()
                    .filter(|r| r.kind == RowKind::Server && &r.proxy == backend)
                {
                    let Ok(id) = ServerId::new(&row.name) else {
                        continue;
                    };
                    let state = row.status_word().pool_state();
                    match states.get_mut(&id) {
                        Some(s) => *s = least_serving(*s, state),
                        None => {
                            states.insert(id.clone(), state);
                            order.push(id);
                        }
                    }
                }
            }
        }
        Ok(order
            .into_iter()
            .map(|id| {
                let s = states.get(&id).copied().unwrap_or(PoolState::Down);
                (id, s)
            })
            .collect())
    }

    fn lock_before(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Before>> {
        self.before.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(&self, proxy: &Proxy, line: &str) -> Result<String, HaproxyError> {
        proxy
            .transport
            .send(&proxy.name, line, self.config.command_timeout)
            .await
    }

    /// Sends a command whose success is an empty answer.
    async fn set(&self, proxy: &Proxy, line: &str) -> Result<(), HaproxyError> {
        let reply = self.send(proxy, line).await?;
        check_empty(&reply).map_err(|(reply, reason)| HaproxyError::Refused {
            proxy: proxy.name.clone(),
            command: line.to_string(),
            reply,
            reason,
        })
    }

    /// Sends a `show` command: refused, or the data.
    async fn show(&self, proxy: &Proxy, line: &str) -> Result<String, HaproxyError> {
        let reply = self.send(proxy, line).await?;
        match refusal_of_show(&reply) {
            Some(reason) => Err(HaproxyError::Refused {
                proxy: proxy.name.clone(),
                command: line.to_string(),
                reply: reply.trim().to_string(),
                reason,
            }),
            None => Ok(reply),
        }
    }

    async fn read_stat(&self, proxy: &Proxy) -> Result<Vec<StatRow>, HaproxyError> {
        let reply = self.show(proxy, SHOW_STAT).await?;
        parse_show_stat(&reply).map_err(|e| HaproxyError::BadAnswer {
            proxy: proxy.name.clone(),
            command: SHOW_STAT.to_string(),
            detail: e.to_string(),
        })
    }

    async fn read_servers_state(&self, proxy: &Proxy) -> Result<Vec<ServerStateRow>, HaproxyError> {
        let reply = self.show(proxy, SHOW_SERVERS_STATE).await?;
        parse_servers_state(&reply).map_err(|e| HaproxyError::BadAnswer {
            proxy: proxy.name.clone(),
            command: SHOW_SERVERS_STATE.to_string(),
            detail: e.to_string(),
        })
    }

    /// Every configured backend exists on the proxy.
    fn check_backends(&self, proxy: &Proxy, rows: &[StatRow]) -> Result<(), HaproxyError> {
        for backend in &self.config.backends {
            if !rows
                .iter()
                .any(|r| r.kind == RowKind::Backend && &r.proxy == backend)
            {
                return Err(HaproxyError::NoSuchBackend {
                    proxy: proxy.name.clone(),
                    backend: backend.clone(),
                });
            }
        }
        Ok(())
    }

    /// The server's rows in the configured backends; at least one, or an error.
    fn server_rows<'r>(
        &self,
        proxy: &Proxy,
        rows: &'r [StatRow],
        server: &ServerId,
    ) -> Result<Vec<&'r StatRow>, HaproxyError> {
        self.check_backends(proxy, rows)?;
        let found: Vec<&StatRow> = self
            .config
            .backends
            .iter()
            .filter_map(|b| {
                rows.iter().find(|r| {
                    r.kind == RowKind::Server && &r.proxy == b && r.name == server.as_str()
                })
            })
            .collect();
        if found.is_empty() {
            return Err(HaproxyError::NoSuchServer {
                proxy: proxy.name.clone(),
                server: server.to_string(),
                backends: self.config.backends.clone(),
            });
        }
        Ok(found)
    }

    /// The server's row in `backend`, which it was in a moment ago.
    fn row_in<'r>(
        proxy: &Proxy,
        rows: &'r [StatRow],
        backend: &str,
        server: &ServerId,
    ) -> Result<&'r StatRow, HaproxyError> {
        rows.iter()
            .find(|r| r.kind == RowKind::Server && r.proxy == backend && r.name == server.as_str())
            .ok_or_else(|| HaproxyError::NoSuchServer {
                proxy: proxy.name.clone(),
                server: server.to_string(),
                backends: vec![backend.to_string()],
            })
    }

    async fn read_proxy(&self, proxy: &Proxy) -> Result<Vec<BackendStatus>, HaproxyError> {
        let rows = self.read_stat(proxy).await?;
        self.check_backends(proxy, &rows)?;
        let states = self.read_servers_state(proxy).await?;
        Ok(self
            .config
            .backends
            .iter()
            .map(|backend| BackendStatus {
                backend: backend.clone(),
                servers: rows
                    .iter()
                    .filter(|r| r.kind == RowKind::Server && &r.proxy == backend)
                    .map(|r| {
                        let st = states
                            .iter()
                            .find(|s| &s.backend == backend && s.server == r.name);
                        ServerStatus {
                            server: r.name.clone(),
                            status: r.status.clone(),
                            state: r.status_word().pool_state(),
                            admin: st.map(|s| s.admin),
                            operational: st.map(|s| s.operational),
                            check: CheckStatus {
                                enabled: st.map_or(r.status_word() != Status::NoCheck, |s| {
                                    s.check_enabled
                                }),
                                status: r.check_status.clone(),
                                description: r.check_desc.clone(),
                                health: r.check_health,
                            },
                            sessions: r.sessions,
                            queued: r.queued,
                        }
                    })
                    .collect(),
            })
            .collect())
    }

    /// Drain, wait for the sessions to end (within the bound), maintenance, confirm:
    /// on one proxy, in `backends`.
    async fn depool_on(
        &self,
        proxy: &Proxy,
        server: &ServerId,
        backends: Vec<&str>,
        touched: &Mutex<Vec<(String, String)>>,
        progress: &Progress,
    ) -> Result<(), HaproxyError> {
        let say = |line: String| progress.report(ProgressUpdate::line(line));
        for backend in &backends {
            // Noted before the command: a cancelled or failed exchange may still have
            // reached HAProxy, and putting back is harmless where it did not.
            let mine = (proxy.name.clone(), backend.to_string());
            touched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(mine.clone());
            let result = self
                .set(proxy, &format!("set server {backend}/{server} state drain"))
                .await;
            if let Err(e) = result {
                if matches!(e, HaproxyError::Refused { .. }) {
                    // HAProxy answered a refusal: nothing changed there.
                    touched
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(|t| t != &mine);
                }
                return Err(e);
            }
        }
        say(format!(
            "proxy {}: {server} draining in {}",
            proxy.name,
            backends.join(", ")
        ));

        let start = Instant::now();
        let mut last_open = None;
        loop {
            let rows = self.read_stat(proxy).await?;
            let mut open = 0u64;
            for backend in &backends {
                let row = Self::row_in(proxy, &rows, backend, server)?;
                open = open.saturating_add(row.sessions).saturating_add(row.queued);
            }
            if open == 0 {
                break;
            }
            let waited = start.elapsed();
            if waited >= self.config.drain_timeout {
                // Sticky sessions may never end: the bound decides, and it is said.
                say(format!(
                    "proxy {}: drain timeout ({:?}) with {open} session(s) of {server} still open; putting it in maintenance anyway",
                    proxy.name, self.config.drain_timeout
                ));
                break;
            }
            if last_open != Some(open) {
                say(format!(
                    "proxy {}: waiting for {open} session(s) of {server} to end",
                    proxy.name
                ));
                last_open = Some(open);
            }
            let left = self.config.drain_timeout - waited;
            tokio::time::sleep(self.config.poll_interval.min(left)).await;
        }

        for backend in &backends {
            self.set(proxy, &format!("set server {backend}/{server} state maint"))
                .await?;
        }
        let rows = self.read_stat(proxy).await?;
        for backend in &backends {
            let row = Self::row_in(proxy, &rows, backend, server)?;
            if row.status_word() != Status::Maint {
                return Err(HaproxyError::NotConfirmed {
                    proxy: proxy.name.clone(),
                    server: format!("{backend}/{server}"),
                    command: format!("set server {backend}/{server} state maint"),
                    status: row.status.clone(),
                });
            }
        }
        say(format!(
            "proxy {}: {server} in maintenance in {}",
            proxy.name,
            backends.join(", ")
        ));
        Ok(())
    }

    /// After a failed depool: make the server ready again wherever it may have changed.
    async fn put_back(
        &self,
        server: &ServerId,
        mut touched: Vec<(String, String)>,
        failed: HaproxyError,
        progress: &Progress,
    ) -> HaproxyError {
        touched.dedup();
        let mut put_back = Vec::new();
        let mut not_put_back = Vec::new();
        for (proxy_name, backend) in touched {
            let Some(proxy) = self.config.proxies.iter().find(|p| p.name == proxy_name) else {
                continue;
            };
            // Its health is left to HAProxy's checks, never forced.
            let result = self
                .set(proxy, &format!("set server {backend}/{server} state ready"))
                .await;
            answer(progress, proxy, &[&backend], PoolAction::Repool, &result);
            match result {
                Ok(()) => put_back.push(format!("{proxy_name}/{backend}")),
                Err(e) => not_put_back.push(format!("{proxy_name}/{backend}: {e}")),
            }
        }
        progress.report(ProgressUpdate::line(format!(
            "depool failed ({failed}); made ready again on: {}",
            if put_back.is_empty() {
                "none".to_string()
            } else {
                put_back.join(", ")
            }
        )));
        HaproxyError::DepoolRolledBack {
            failed: Box::new(failed),
            put_back,
            not_put_back,
        }
    }

    /// Leaves maintenance on one proxy, in every configured backend that holds the
    /// server: through DRAIN until a check passed (a server with a check), then ready,
    /// then served. Not confirmed within `repool_timeout`: back in maintenance there,
    /// and [`HaproxyError::NotServing`]. On success, the backends it is served in.
    async fn repool_on(
        &self,
        proxy: &Proxy,
        server: &ServerId,
        forced: bool,
        found: &mut Vec<String>,
        progress: &Progress,
    ) -> Result<Vec<String>, HaproxyError> {
        let say = |line: String| progress.report(ProgressUpdate::line(line));
        let rows = self.read_stat(proxy).await?;
        let backends: Vec<String> = self
            .server_rows(proxy, &rows, server)?
            .iter()
            .map(|r| r.proxy.clone())
            .collect();
        found.clone_from(&backends);
        let known: Vec<Option<Before>> = {
            let before = self.lock_before();
            backends
                .iter()
                .map(|b| {
                    before
                        .get(&(proxy.name.clone(), b.clone(), server.to_string()))
                        .copied()
                })
                .collect()
        };
        // Not depooled by this process (`mwdeploy recover`): HAProxy says whether it
        // has a check (a row in maintenance does not show it in `show stat`).
        let states = if known.iter().any(Option::is_none) {
            Some(self.read_servers_state(proxy).await?)
        } else {
            None
        };
        let mut steps = Vec::new();
        for (backend, before) in backends.iter().zip(&known) {
            let checked = before.map_or_else(
                || {
                    states.iter().flatten().any(|s| {
                        &s.backend == backend && s.server == server.as_str() && s.check_enabled
                    })
                },
                |b| b.checked,
            );
            let step = if checked && self.config.after_check {
                // Out of maintenance, checked again, no new request yet.
                self.set(proxy, &format!("set server {backend}/{server} state drain"))
                    .await?;
                RepoolStep::Checking
            } else {
                self.set(proxy, &format!("set server {backend}/{server} state ready"))
                    .await?;
                RepoolStep::Ready
            };
            steps.push(step);
        }

        let start = Instant::now();
        let mut last = String::new();
        let mut left_to_check = false;
        loop {
            let rows = self.read_stat(proxy).await?;
            let mut waiting = None;
            let mut readied = false;
            for (backend, step) in backends.iter().zip(steps.iter_mut()) {
                let row = Self::row_in(proxy, &rows, backend, server)?;
                if *step == RepoolStep::Checking && passed_check(row) {
                    self.set(proxy, &format!("set server {backend}/{server} state ready"))
                        .await?;
                    say(format!(
                        "proxy {}: {backend}/{server} passed its check: ready",
                        proxy.name
                    ));
                    *step = RepoolStep::Ready;
                    readied = true;
                    // Served is confirmed on a later read; this row is from before.
                    waiting.get_or_insert((backend, row.clone(), None));
                } else if (*step == RepoolStep::Checking || !serves(row, self.config.after_check))
                    && waiting.as_ref().is_none_or(|w| w.2.is_none())
                {
                    // The first backend still waiting is the one said.
                    waiting = Some((backend, row.clone(), Some(*step)));
                }
            }
            let Some((backend, row, step)) = waiting else {
                break;
            };
            let waited = start.elapsed();
            let failed_checks = step == Some(RepoolStep::Checking) && checks_failed(&row);
            if forced && (failed_checks || waited >= self.config.repool_timeout) {
                // The operator overrode the canary: HAProxy's check decides, in READY.
                for (backend, step) in backends.iter().zip(&steps) {
                    if *step == RepoolStep::Checking {
                        self.set(proxy, &format!("set server {backend}/{server} state ready"))
                            .await?;
                    }
                }
                say(format!(
                    "proxy {}: {server} left ready (--force): HAProxy's check has it {} (last check {}); it is served once the check passes",
                    proxy.name,
                    row.status,
                    row.check_text()
                ));
                left_to_check = true;
                break;
            }
            if failed_checks || waited >= self.config.repool_timeout {
                // Definitely out: no request for a server HAProxy's check rejects (down by
                // its own checks, there is no point waiting for the timeout).
                let not_kept_out = self.back_in_maint(proxy, server, &backends).await;
                if let Some(why) = &not_kept_out {
                    say(format!(
                        "proxy {}: {server} NOT put back in maintenance: {why}",
                        proxy.name
                    ));
                }
                let unserved = Unserved {
                    proxy: proxy.name.clone(),
                    server: format!("{backend}/{server}"),
                    status: row.status.clone(),
                    check: row.check_text(),
                    waited,
                    kept_out: not_kept_out.is_none(),
                };
                return Err(if failed_checks {
                    HaproxyError::CheckFailed(unserved)
                } else {
                    HaproxyError::NotServing(unserved)
                });
            }
            let now = format!("{} (last check {})", row.status, row.check_text());
            if let Some(step) = step.filter(|_| now != last) {
                let what = match step {
                    RepoolStep::Checking => "pass its check",
                    RepoolStep::Ready => "be served",
                };
                say(format!(
                    "proxy {}: waiting for {backend}/{server} to {what}: {now}",
                    proxy.name
                ));
                last = now;
            }
            if readied {
                // Made ready just now: read it back at once (it is still out of the pool).
                continue;
            }
            let left = self.config.repool_timeout - waited;
            tokio::time::sleep(self.config.poll_interval.min(left)).await;
        }
        {
            let mut before = self.lock_before();
            for backend in &backends {
                before.remove(&(proxy.name.clone(), backend.clone(), server.to_string()));
            }
        }
        if !left_to_check {
            say(format!(
                "proxy {}: {server} served in {}",
                proxy.name,
                backends.join(", ")
            ));
        }
        Ok(backends)
    }

    /// `state maint` in `backends` on one proxy; why it failed, if it did.
    async fn back_in_maint(
        &self,
        proxy: &Proxy,
        server: &ServerId,
        backends: &[String],
    ) -> Option<String> {
        let mut failed = Vec::new();
        for backend in backends {
            if let Err(e) = self
                .set(proxy, &format!("set server {backend}/{server} state maint"))
                .await
            {
                failed.push(format!("{backend}: {e}"));
            }
        }
        (!failed.is_empty()).then(|| failed.join("; "))
    }

    /// A repool confirmed on this proxy failed on another, whose check rejected the
    /// server: out of this proxy too.
    async fn take_out(
        &self,
        proxy: &Proxy,
        server: &ServerId,
        backends: &[String],
        progress: &Progress,
    ) {
        let not_kept_out = self.back_in_maint(proxy, server, backends).await;
        for backend in backends {
            progress.report(ProgressUpdate::answer(match &not_kept_out {
                None => ProxyAnswer::confirmed(&proxy.name, backend, PoolAction::Depool),
                Some(why) => ProxyAnswer::failed(&proxy.name, backend, PoolAction::Depool, why),
            }));
        }
        let line = match not_kept_out {
            None => format!(
                "proxy {}: {server} back in maintenance in {}: another proxy's check rejected it",
                proxy.name,
                backends.join(", ")
            ),
            Some(why) => format!(
                "proxy {}: {server} served although another proxy's check rejected it; NOT back in maintenance: {why}",
                proxy.name
            ),
        };
        progress.report(ProgressUpdate::line(line));
    }
}

/// Reports how `proxy` answered `action` in each of `backends`.
fn answer<T>(
    progress: &Progress,
    proxy: &Proxy,
    backends: &[&str],
    action: PoolAction,
    result: &Result<T, HaproxyError>,
) {
    for backend in backends {
        let answer = match result {
            Ok(_) => ProxyAnswer::confirmed(&proxy.name, backend, action),
            Err(e) => ProxyAnswer::failed(&proxy.name, backend, action, e.to_string()),
        };
        progress.report(ProgressUpdate::answer(answer));
    }
}

/// Where one backend is in a repool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RepoolStep {
    /// In DRAIN, waiting for a check to pass.
    Checking,
    /// `state ready` sent, waiting to be served.
    Ready,
}

/// Whether the server's health is at its top since it left maintenance: HAProxy sets
/// it to the `rise` threshold then (`DRAIN 1/2`, `UP 1/2` with `rise 2 fall 2` on
/// HAProxy 2.6; `check_health` 2 of at most 3) and to `rise + fall - 1` at the next
/// passed check (plain `DRAIN`, `UP`). HAProxy's check status text cannot tell: it
/// still shows the last check before the maintenance.
///
/// With `fall 1` the top is `rise` itself: the row cannot show a check passed since,
/// and this is true at once.
fn health_full(row: &StatRow) -> bool {
    // `UP 1/2`, `DRAIN 1/2`: the `n/m` HAProxy adds below the top (`DRAIN (agent)`
    // is no such suffix).
    let falling = row.status.split_whitespace().skip(1).any(|w| {
        w.split_once('/')
            .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok())
    });
    !falling
        && row
            .check_health
            .is_none_or(|(h, rise, fall)| h >= rise.saturating_add(fall).saturating_sub(1))
}

/// Whether a check passed since the server left maintenance through DRAIN, so that it
/// may be made ready. `UP` too: someone (a reload) made it ready meanwhile.
fn passed_check(row: &StatRow) -> bool {
    match row.status_word() {
        Status::Drain | Status::Up => health_full(row),
        _ => false,
    }
}

/// Whether HAProxy's checks took a server that left maintenance (with its health at
/// `rise`) all the way down (health 0): `rise` failed checks in a row, none passed.
fn checks_failed(row: &StatRow) -> bool {
    row.status_word() == Status::Down && row.check_health.is_some_and(|(h, _, _)| h == 0)
}

/// Whether HAProxy serves the server after `state ready`: without a check, at once;
/// with one, `UP` with its health at the top (a check passed since it left
/// maintenance, none failed since). `UP 1/2` is served but falling, or not checked
/// yet: not confirmed, unless the repool does not wait for a check (`after_check`
/// false), where any `UP` is served.
fn serves(row: &StatRow, after_check: bool) -> bool {
    match row.status_word() {
        Status::NoCheck => true,
        Status::Up => !after_check || health_full(row),
        _ => false,
    }
}

/// What the row says about the server before a depool; `None` when it is already out
/// (maintenance), where the row no longer shows whether it has a check.
fn before_of(row: &StatRow) -> Option<Before> {
    match row.status_word() {
        Status::Maint => None,
        Status::NoCheck => Some(Before { checked: false }),
        _ => Some(Before { checked: true }),
    }
}

fn pooled_name(server: &Server) -> Result<&ServerId, HaproxyError> {
    if !server.pooled {
        return Err(HaproxyError::NotPooled {
            server: server.id.clone(),
        });
    }
    Ok(server.backend_name())
}

#[async_trait]
impl PoolControl for HaproxyPool {
    async fn depool(&self, server: &Server, progress: &Progress) -> Result<(), PortError> {
        self.depool_server(server, progress)
            .await
            .map_err(|e| e.into_port_error(&server.id))
    }

    async fn repool(&self, server: &Server, progress: &Progress) -> Result<(), PortError> {
        self.repool_server(server, progress)
            .await
            .map_err(|e| e.into_port_error(&server.id))
    }

    async fn repool_forced(
        &self,
        server: &Server,
        progress: &Progress,
    ) -> Result<PoolState, PortError> {
        self.repool_server_forced(server, progress)
            .await
            .map_err(|e| e.into_port_error(&server.id))
    }

    async fn state(&self, server: &Server) -> Result<PoolState, PortError> {
        self.server_state(server)
            .await
            .map_err(|e| e.into_port_error(&server.id))
    }

    async fn states(&self) -> Result<Vec<(ServerId, PoolState)>, PortError> {
        self.server_states().await.map_err(PortError::from)
    }
}

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs every future at once and returns every output, in order.
async fn join_all<'a, T: Send + 'a>(
    futures: impl IntoIterator<Item = impl Future<Output = T> + Send + 'a>,
) -> Vec<T> {
    let mut futures: Vec<Boxed<'a, T>> = futures
        .into_iter()
        .map(|f| Box::pin(f) as Boxed<'a, T>)
        .collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Runs every future at once; the first error cancels the rest (they are dropped).
async fn try_join_all<'a, T: Send + 'a, E: Send + 'a>(
    futures: impl IntoIterator<Item = impl Future<Output = Result<T, E>> + Send + 'a>,
) -> Result<Vec<T>, E> {
    let mut futures: Vec<Boxed<'a, Result<T, E>>> = futures
        .into_iter()
        .map(|f| Box::pin(f) as Boxed<'a, Result<T, E>>)
        .collect();
    let mut out: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(Ok(v)) => *slot = Some(v),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    })
    .await?;
    Ok(out.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, health: Option<(u32, u32, u32)>) -> StatRow {
        StatRow {
            proxy: "mediawiki".into(),
            name: "mw1".into(),
            kind: RowKind::Server,
            status: status.into(),
            sessions: 0,
            queued: 0,
            check_status: None,
            check_desc: None,
            check_health: health,
        }
    }

    #[test]
    fn only_a_check_passed_since_leaving_maintenance_is_served() {
        // Health at the top (rise + fall - 1): a check passed since.
        assert!(serves(&row("UP", Some((3, 2, 2))), true));
        assert!(serves(&row("UP", Some((4, 3, 2))), true));
        assert!(serves(&row("no check", None), true));
        // Just out of maintenance (health = rise), or a check failed since: not yet.
        assert!(!serves(&row("UP 1/2", Some((2, 2, 2))), true));
        assert!(!serves(&row("UP 2/3", Some((5, 3, 3))), true));
        // The status text decides too where the health columns are missing.
        assert!(!serves(&row("UP 1/2", None), true));
        assert!(serves(&row("UP", None), true));
        // Never forced: no status but UP (or no check) is served.
        for s in [
            "DOWN",
            "DOWN 1/2",
            "MAINT",
            "DRAIN",
            "NOLB",
            "MAINT (via a/b)",
        ] {
            assert!(!serves(&row(s, Some((3, 2, 2))), true), "{s}");
            assert!(!serves(&row(s, None), true), "{s}");
            assert!(!serves(&row(s, Some((3, 2, 2))), false), "{s}");
        }
        // Not waiting for a check: any UP is served, the check follows in the pool.
        assert!(serves(&row("UP 1/2", Some((2, 2, 2))), false));
        assert!(serves(&row("UP", Some((3, 2, 2))), false));
        assert!(serves(&row("no check", None), false));
    }

    #[test]
    fn a_drained_server_may_be_made_ready_once_its_check_passed() {
        // As read on HAProxy 2.6 after `state drain` from MAINT, rise 2 fall 2.
        assert!(!passed_check(&row("DRAIN 1/2", Some((2, 2, 2)))));
        assert!(passed_check(&row("DRAIN", Some((3, 2, 2)))));
        assert!(!passed_check(&row("DOWN", Some((0, 2, 2)))));
        assert!(!passed_check(&row("DOWN 1/2", Some((1, 2, 2)))));
        assert!(!passed_check(&row("MAINT", None)));
        // Made ready by someone else (a reload) with its checks passing.
        assert!(passed_check(&row("UP", Some((3, 2, 2)))));
        assert!(!passed_check(&row("UP 1/2", Some((2, 2, 2)))));
        assert!(passed_check(&row("DRAIN (agent)", Some((3, 2, 2)))));
        assert!(!passed_check(&row("DRAIN (agent)", Some((2, 2, 2)))));
        // A server without a check shows a plain DRAIN.
        assert!(passed_check(&row("DRAIN", None)));
        // A health column that disagrees with the text: both must say so.
        assert!(!passed_check(&row("DRAIN", Some((2, 2, 2)))));
    }

    #[test]
    fn what_was_before_a_depool() {
        assert_eq!(
            before_of(&row("UP", Some((4, 3, 2)))),
            Some(Before { checked: true })
        );
        assert_eq!(
            before_of(&row("no check", None)),
            Some(Before { checked: false })
        );
        for s in ["DRAIN 1/3", "DOWN", "NOLB"] {
            assert_eq!(
                before_of(&row(s, Some((1, 3, 2)))),
                Some(Before { checked: true }),
                "{s}"
            );
        }
        assert_eq!(before_of(&row("MAINT", None)), None);
    }

    #[test]
    fn configs_that_cannot_work_are_refused() {
        let proxy = |n: &str| Proxy::new(n, Transport::local("/run/haproxy/admin.sock").unwrap());
        assert!(Proxy::new("lb1;x", Transport::local("/x").unwrap()).is_err());
        let bad = [
            HaproxyConfig::new(vec![], vec!["mediawiki".into()]),
            HaproxyConfig::new(vec![proxy("lb1").unwrap()], vec![]),
            HaproxyConfig::new(vec![proxy("lb1").unwrap()], vec!["mw;shutdown".into()]),
            HaproxyConfig::new(vec![proxy("lb1").unwrap()], vec!["a b".into()]),
            HaproxyConfig::new(
                vec![proxy("lb1").unwrap()],
                vec!["mediawiki".into(), "mediawiki".into()],
            ),
            HaproxyConfig::new(
                vec![proxy("lb1").unwrap(), proxy("lb1").unwrap()],
                vec!["mediawiki".into()],
            ),
            HaproxyConfig::new(vec![proxy("lb1").unwrap()], vec!["mediawiki".into()])
                .poll_interval(Duration::ZERO),
        ];
        for config in bad {
            assert!(HaproxyPool::new(config.clone()).is_err(), "{config:?}");
        }
    }

    #[tokio::test]
    async fn unpooled_servers_never_reach_haproxy() {
        // The socket does not exist: an attempt to reach it would fail differently.
        let pool = HaproxyPool::new(HaproxyConfig::new(
            vec![Proxy::new("lb1", Transport::local("/nonexistent/admin.sock").unwrap()).unwrap()],
            vec!["mediawiki".into()],
        ))
        .unwrap();
        let server = Server::new(ServerId::new("task1").unwrap()).unpooled(vec!["true".into()]);
        let progress = Progress::discard(server.id.clone());
        for result in [
            pool.depool(&server, &progress).await,
            pool.repool(&server, &progress).await,
            pool.state(&server).await.map(|_| ()),
        ] {
            let e = result.unwrap_err();
            assert_eq!(e.kind, mwdeploy_core::PortErrorKind::Misconfigured, "{e}");
            assert!(e.detail.contains("pooled: false"), "{e}");
        }
    }

    #[tokio::test]
    async fn try_join_all_stops_at_the_first_error_and_join_all_waits_for_all() {
        let slow_ok = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<u32, &str>(1)
        };
        let quick_err = async { Err::<u32, &str>("boom") };
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            try_join_all(vec![Box::pin(slow_ok) as Boxed<'_, _>, Box::pin(quick_err)]),
        )
        .await
        .expect("the error ends the join without waiting for the slow one");
        assert_eq!(r, Err("boom"));
        let all = join_all((0..4u32).map(|i| async move { i * 2 })).await;
        assert_eq!(all, vec![0, 2, 4, 6]);
    }
}
