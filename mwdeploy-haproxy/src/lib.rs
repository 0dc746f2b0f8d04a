//! `PoolControl` for mwdeploy over the HAProxy runtime API.
//!
//! [`HaproxyPool`] takes servers out of HAProxy's pool and puts them back, on every
//! proxy and in every backend a server is in, and reads what every proxy says. It
//! implements core's [`PoolControl`](mwdeploy_core::ports::PoolControl) and passes
//! core's conformance suite against a real HAProxy.
//!
//! # Data flow
//!
//! ```text
//!  depool / repool / state / states / status
//!        │  names checked (core's rules: no `;`, newline or space reaches HAProxy)
//!        ▼
//!  HaproxyPool ── every proxy at once ──> Transport ──> admin socket
//!        │            Local:  tokio UnixStream: one line in, the answer until EOF
//!        │            Remote: CommandRunner (ssh) runs `socat stdio UNIX-CONNECT:<socket>`,
//!        │                    the line on stdin
//!        ▼
//!  every answer is read: `set server` must answer empty (reply), `show stat` and
//!  `show servers state` are parsed by column name (stat); anything else is a
//!  HaproxyError naming the proxy, the command and HAProxy's words, which becomes
//!  core's PortError (kind, proxy, server)
//! ```
//!
//! A depool drains (`set server b/s state drain`), waits for the server's sessions to
//! end (at most `drain_timeout`), then puts it in maintenance and reads the state back.
//! If one proxy fails, the proxies that had changed are made ready again, so no proxy
//! disagrees with the others. A repool takes a server with a health check out of
//! maintenance through DRAIN (checked again, no new request), makes it ready only once
//! HAProxy's check passed since, then waits until HAProxy serves it; all within
//! `repool_timeout`, else it is put back in maintenance and the repool fails. Its
//! health is never forced: the balancer's own check decides. With
//! [`HaproxyConfig::after_check`]`(false)` (`rollout.repool_after_check: false`) a repool
//! is `state ready` at once, confirmed once HAProxy has the server UP, and the check
//! follows with the server in the pool, as the old tool's `enable server` did.
//!
//! # Modules
//!
//! - [`pool`]: [`HaproxyPool`] and its config ([`HaproxyConfig`], [`Proxy`]).
//! - [`transport`]: [`Transport`], local socket or remote through socat.
//! - [`reply`]: reading the answer of a command that changes state.
//! - [`stat`]: parsers of `show stat` and `show servers state`.
//! - [`status`]: [`PoolStatus`], what `mwdeploy status` shows, with drift between proxies.
//! - [`error`]: [`HaproxyError`] and its mapping onto core's `PortError`.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use mwdeploy_exec::{Hosts, SshDefaults};
//! use mwdeploy_core::ports::{PoolControl, Progress};
//! use mwdeploy_core::{Server, ServerId};
//! use mwdeploy_haproxy::{HaproxyConfig, HaproxyPool, Proxy, Transport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hosts = Hosts::new(SshDefaults::new("mwdeploy"))?;
//! let proxies = vec![
//!     // HAProxy on this host.
//!     Proxy::new("lb-local", Transport::local("/run/haproxy/admin.sock")?)?,
//!     // HAProxy on another host, through ssh and socat.
//!     Proxy::new(
//!         "proxy-us-east-011",
//!         Transport::remote(hosts.ssh("proxy-us-east-011.example.org", None)?, "/run/haproxy/admin.sock")?,
//!     )?,
//! ];
//! let config = HaproxyConfig::new(proxies, vec!["mediawiki".to_string()])
//!     .timeouts(Duration::from_secs(30), Duration::from_secs(30));
//! let pool = HaproxyPool::new(config)?;
//!
//! let server = Server::new(ServerId::new("mw1")?);
//! let progress = Progress::new(server.id.clone(), "depool", |server, _, update| {
//!     println!("{server}: {}", update.line.unwrap_or_default());
//! });
//! pool.depool(&server, &progress).await?;
//! // ... the new code goes live, the canary passes ...
//! pool.repool(&server, &progress).await?;
//!
//! let status = pool.status().await;
//! for drift in status.drift() {
//!     println!("{}/{} differs between proxies: {:?}", drift.backend, drift.server, drift.states);
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod pool;
pub mod reply;
pub mod stat;
pub mod status;
pub mod transport;

pub use error::{HaproxyError, Refusal, Unserved};
pub use pool::{HaproxyConfig, HaproxyPool, Proxy};
pub use status::{BackendStatus, CheckStatus, Drift, PoolStatus, ProxyStatus, ServerStatus};
pub use transport::Transport;
