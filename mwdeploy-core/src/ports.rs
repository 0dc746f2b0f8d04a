//! The ports: what the engine asks of the world. Each adapter crate implements one.
//!
//! Every port is object-safe and `Send + Sync`, so the driver holds them as
//! `Arc<dyn PoolControl>` and so on. A port does one step and reports how it went;
//! retries, pauses and deadlines belong to the [`Rollout`](crate::Rollout) machine,
//! so they are deterministic and can be simulated.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::PortError;
use crate::event::PoolAction;
use crate::model::{Health, HookPoint, PoolState, ReleaseId, Server, ServerId};

/// One progress report of a running step: a percentage, a rate, a line of output.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProgressUpdate {
    /// Percent done, 0.0..=100.0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f32>,
    /// Transfer rate as the tool printed it (`12.3MB/s`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// A line of the step's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    /// One proxy's answer to a pool change: recorded as its own `pool` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<ProxyAnswer>,
}

/// How one proxy, in one backend, answered a depool or a repool. The pool control
/// reports one per proxy and backend as they come ([`ProgressUpdate::answer`]); the
/// change counts only by the server's own result, once every proxy answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProxyAnswer {
    /// The proxy's name.
    pub proxy: String,
    /// The backend the server is in there.
    pub backend: String,
    /// Depool or repool.
    pub action: PoolAction,
    /// Whether this proxy confirmed the change in this backend.
    pub ok: bool,
    /// What went wrong there, with HAProxy's own answer when it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

impl ProxyAnswer {
    /// `proxy` confirmed `action` in `backend`.
    pub fn confirmed(proxy: &str, backend: &str, action: PoolAction) -> ProxyAnswer {
        ProxyAnswer {
            proxy: proxy.to_string(),
            backend: backend.to_string(),
            action,
            ok: true,
            answer: None,
        }
    }

    /// `proxy` did not confirm `action` in `backend`, for `why`.
    pub fn failed(
        proxy: &str,
        backend: &str,
        action: PoolAction,
        why: impl Into<String>,
    ) -> ProxyAnswer {
        ProxyAnswer {
            ok: false,
            answer: Some(why.into()),
            ..ProxyAnswer::confirmed(proxy, backend, action)
        }
    }
}

impl ProgressUpdate {
    /// An update carrying one line of output.
    pub fn line(line: impl Into<String>) -> Self {
        ProgressUpdate {
            line: Some(line.into()),
            ..Default::default()
        }
    }

    /// An update carrying a percentage.
    pub fn percent(percent: f32) -> Self {
        ProgressUpdate {
            percent: Some(percent),
            ..Default::default()
        }
    }

    /// An update carrying one proxy's answer to a pool change.
    pub fn answer(answer: ProxyAnswer) -> Self {
        ProgressUpdate {
            pool: Some(answer),
            ..Default::default()
        }
    }
}

type Sink = dyn Fn(&ServerId, &str, ProgressUpdate) + Send + Sync;

/// The handle a port reports progress through. Cheap to clone; reporting never blocks.
///
/// ```
/// use mwdeploy_core::ports::{Progress, ProgressUpdate};
/// use mwdeploy_core::ServerId;
/// let p = Progress::new(ServerId::new("mw1").unwrap(), "copy", |server, step, update| {
///     println!("{server} {step} {:?}", update.percent);
/// });
/// p.report(ProgressUpdate::percent(50.0));
/// ```
#[derive(Clone)]
pub struct Progress {
    server: ServerId,
    step: &'static str,
    sink: Arc<Sink>,
}

impl Progress {
    /// A handle for `step` on `server` that hands every update to `sink`.
    pub fn new(
        server: ServerId,
        step: &'static str,
        sink: impl Fn(&ServerId, &str, ProgressUpdate) + Send + Sync + 'static,
    ) -> Self {
        Progress {
            server,
            step,
            sink: Arc::new(sink),
        }
    }

    /// A handle that drops every update.
    pub fn discard(server: ServerId) -> Self {
        Progress::new(server, "", |_, _, _| {})
    }

    /// Reports `update`.
    pub fn report(&self, update: ProgressUpdate) {
        (self.sink)(&self.server, self.step, update)
    }

    /// The server this handle reports for.
    pub fn server(&self) -> &ServerId {
        &self.server
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("server", &self.server)
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

/// Takes servers out of the balancer's pool and puts them back.
///
/// A change counts only when every proxy confirmed it, in every backend the server is in.
#[async_trait]
pub trait PoolControl: Send + Sync {
    /// Drain the server (wait, within a bound, for its sessions to end), then put it in maintenance.
    async fn depool(&self, server: &Server, progress: &Progress) -> Result<(), PortError>;
    /// Make the server ready, then confirm the balancer serves it.
    async fn repool(&self, server: &Server, progress: &Progress) -> Result<(), PortError>;
    /// `--force` on a server whose canary failed: make it ready and leave it to the
    /// balancer's own check, which keeps it out of service (`DOWN`) until it passes;
    /// never taken back out for a failed check. Returns the state after. The default
    /// is [`PoolControl::repool`], confirmed.
    async fn repool_forced(
        &self,
        server: &Server,
        progress: &Progress,
    ) -> Result<PoolState, PortError> {
        self.repool(server, progress).await?;
        Ok(PoolState::Up)
    }
    /// The server's state; across proxies and backends, the least serving one.
    async fn state(&self, server: &Server) -> Result<PoolState, PortError>;
    /// Every server of the backend(s), also those outside the deploy.
    async fn states(&self) -> Result<Vec<(ServerId, PoolState)>, PortError>;
}

/// Puts a release on a server.
#[async_trait]
pub trait Transfer: Send + Sync {
    /// Copy `release` beside the live tree while the server serves. An in-place transfer
    /// copies nothing here.
    async fn copy(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError>;
    /// Make `release` live, atomically (in-place: copy into the live tree).
    async fn activate(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError>;
    /// Make the previous release live again; returns the release now live.
    async fn rollback(&self, server: &Server, progress: &Progress) -> Result<ReleaseId, PortError>;
    /// Whether this transfer keeps a previous release to go back to.
    fn can_rollback(&self) -> bool;
}

/// Checks a server (or the staging host) once. The machine owns retries and pauses.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// One canary attempt.
    async fn check(&self, server: &Server, progress: &Progress) -> Health;
    /// The error gate: watch the server, in the pool, for `window`, and judge its errors.
    ///
    /// The default says it cannot tell; the plan's `on_unknown` then decides.
    async fn watch(&self, server: &Server, window: Duration, progress: &Progress) -> Health {
        let _ = (server, window, progress);
        Health::Unknown {
            reason: "this health check has no error gate".to_string(),
        }
    }
}

/// Runs the hooks configured at a point of the cycle, on one server.
#[async_trait]
pub trait Hook: Send + Sync {
    /// Runs every hook of `point` for `server`, in order; the first failure stops and is returned.
    async fn run(
        &self,
        server: &Server,
        point: HookPoint,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError>;
}

/// What a notifier is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Note {
    /// The deploy starts on these servers.
    Started {
        /// Deploy id.
        deploy: String,
        /// Number of servers.
        servers: usize,
    },
    /// A server failed (or was rolled back).
    ServerFailed {
        /// The server.
        server: ServerId,
        /// What happened.
        detail: String,
    },
    /// The deploy ended.
    Finished {
        /// Deploy id.
        deploy: String,
        /// Counts per outcome.
        summary: crate::event::Summary,
    },
}

/// Receives notifications (webhooks). A failure is logged and never fails a deploy.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `note`.
    async fn notify(&self, note: &Note) -> Result<(), PortError>;
}
