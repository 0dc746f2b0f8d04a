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
//! - [`model`]: names and states ([`ServerId`], [`Server`], [`ReleaseId`], [`PoolState`]).
//! - [`plan`]: [`Plan`] and [`Policy`](plan::Policy): stages, `parallel`, `max_unavailable`,
//!   the failure budget.
//! - [`ports`]: the traits the adapters (`mwdeploy-haproxy`, `mwdeploy-rsync`,
//!   `mwdeploy-canary`) implement.
//! - [`rollout`]: the sans-IO [`Rollout`] machine.
//! - [`driver`]: runs a [`Rollout`] on tokio against the ports.
//! - [`exec`]: commands on a host, here or over OpenSSH (argv only, one connection per host).
//! - [`journal`]: every event on disk, pool changes written ahead; what recovery reads.
//! - [`lock`]: one deploy at a time per state dir.
//! - [`sim`]: a fake fleet with seeded faults, virtual time and a checker of the six rules.
//! - [`conformance`]: one suite every implementation of a port must pass.
//!
//! # Example: a simulated deploy
//!
//! ```
//! use mwdeploy_core::sim::{Faults, Simulation};
//! let report = Simulation::new(50, 7).faults(Faults::canary(0.1)).run().unwrap();
//! assert!(report.violations.is_empty());
//! assert_eq!(report.summary.total(), 50);
//! ```
#![warn(missing_docs)]

pub mod action;
pub mod conformance;
pub mod driver;
pub mod error;
pub mod event;
pub mod exec;
pub mod journal;
pub mod lock;
pub mod model;
pub mod plan;
pub mod ports;
pub mod rollout;
pub mod sim;

pub use action::{Action, ActionId, ActionKind, Decision, Outcome, StopReason, Target};
pub use error::{NameError, PlanError, PortError, PortErrorKind};
pub use event::{Event, ServerStatus, Summary};
pub use model::{Health, HookPoint, HookPoints, Layout, PoolState, ReleaseId, Server, ServerId};
pub use plan::Plan;
pub use rollout::{Report, Rollout, Snapshot};
