//! mwdeploy-core: the rollout engine of mwdeploy.
//!
//! It rolls a release out to a fleet of web servers behind a balancer, one server or
//! a small batch at a time, and keeps six rules on every path (never more than
//! `max_unavailable` out of the pool; never a failing server back in; every server
//! taken out put back or reported; a pool change counts only when confirmed; no
//! half-old half-new live tree; the failure budget honoured).
//!
//! # Data flow
//!
//! ```text
//!  Plan (servers, stages, policy) ──> Rollout (pure state machine)
//!                                        │ poll_action()      ▲ handle_completion()
//!                                        ▼                    │ handle_decision() / handle_timeout()
//!                                   a driver ── runs ──> ports: PoolControl / Transfer /
//!                                        │                     HealthCheck / Hook / Notifier
//!                                        ▼ poll_event()
//!                                   journal, UIs, --json
//! ```
//!
//! It is pure: no IO, no threads, no clock reads. The other crates of the workspace do
//! the rest: `mwdeploy-exec` (commands on hosts), `mwdeploy-runtime` (the tokio driver,
//! the journal, the lock), `mwdeploy-sim` (a simulated fleet and the port conformance
//! suite), the adapters (`mwdeploy-haproxy`, `mwdeploy-rsync`, `mwdeploy-canary`), and
//! `mwdeploy`, the embedding API over all of them.
//!
//! - [`model`]: names and states ([`ServerId`], [`Server`], [`ReleaseId`], [`PoolState`]).
//! - [`plan`]: [`Plan`] and [`Policy`](plan::Policy): stages, `parallel`, `max_unavailable`,
//!   the failure budget.
//! - [`ports`]: the traits the adapters implement.
//! - [`rollout`]: the sans-IO [`Rollout`] machine; its [`Report`] ends in a [`Verdict`].
//! - [`event`]: what happened, for the journal and UIs ([`Event`], [`event::Record`]).
//!
//! # Example: a deploy answered by hand
//!
//! ```
//! use std::time::{Instant, UNIX_EPOCH};
//! use mwdeploy_core::{ActionKind, Health, Layout, Outcome, Plan, PoolState, ReleaseId};
//! use mwdeploy_core::{Rollout, Server, ServerId, Verdict};
//!
//! let servers = ["mw1", "mw2"].map(|n| Server::new(ServerId::new(n).unwrap()));
//! let release = ReleaseId::at(UNIX_EPOCH, "a").unwrap();
//! let mut plan = Plan::new("d1", release, Layout::Inplace, servers.into());
//! plan.preflight = false; // no read of the whole pool first
//! let mut rollout = Rollout::new(plan, Instant::now()).unwrap();
//! while !rollout.is_finished() {
//!     while rollout.poll_event().is_some() {}
//!     let action = rollout.poll_action().expect("every step here is an action");
//!     let outcome = match action.kind {
//!         ActionKind::QueryPool => Outcome::State(PoolState::Maint), // the depool held
//!         ActionKind::Canary { .. } => Outcome::Health(Health::Healthy),
//!         _ => Outcome::Done,
//!     };
//!     rollout.handle_completion(Instant::now(), action.id, outcome);
//! }
//! assert_eq!(rollout.report().verdict, Verdict::Done);
//! ```
#![warn(missing_docs)]

pub mod action;
pub mod error;
pub mod event;
pub mod model;
pub mod plan;
pub mod ports;
pub mod rollout;
pub mod text;

pub use action::{Action, ActionId, ActionKind, Decision, Outcome, StopReason, Target};
pub use error::{NameError, PlanError, PortError, PortErrorKind};
pub use event::{Event, ServerStatus, Summary, Verdict};
pub use model::{Health, HookPoint, HookPoints, Layout, PoolState, ReleaseId, Server, ServerId};
pub use plan::Plan;
pub use rollout::{Report, Rollout, Snapshot};
