//! mwdeploy-runtime: what runs the pure rollout machine of `mwdeploy-core` for real.
//!
//! ```text
//!  mwdeploy-core::Rollout ──> driver (tokio) ──> ports (adapters: HAProxy, rsync, canary, ...)
//!                                 │ records
//!                                 ▼
//!                       journal (write-ahead JSON lines) · log file · UIs
//!  lock: one deploy, manual pool change or recovery at a time per state dir
//! ```
//!
//! - [`driver`]: runs a [`Rollout`](mwdeploy_core::Rollout) on tokio against the ports,
//!   with deadlines, timers and decisions from a [`DriverHandle`].
//! - [`journal`]: every event on disk, pool changes written ahead; what recovery reads.
//! - [`lock`]: one deploy at a time per state dir (`flock`, with the holder's record).
//! - [`log_file`]: the human log, one plain line per event an operator reads.
//! - [`render`]: events as JSON lines (the journal's schema) or plain lines, into a
//!   [`Sink`](render::Sink).
//!
//! # Example: a deploy driven on a simulated fleet
//!
//! ```
//! use std::sync::Arc;
//! use mwdeploy_runtime::driver::{Driver, Ports};
//! use mwdeploy_sim::{Faults, FleetModel, SimFleet, Simulation};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let plan = Simulation::new(3, 1).into_plan();
//! let fleet = Arc::new(SimFleet::new(FleetModel::new(
//!     1, plan.layout, Faults::none(), &plan.servers, Vec::new(), None,
//! )));
//! let (driver, _handle) = Driver::new(Ports::all(fleet));
//! let rollout = mwdeploy_core::Rollout::new(plan, std::time::Instant::now()).unwrap();
//! let report = driver.run(rollout).await;
//! assert_eq!(report.verdict, mwdeploy_core::Verdict::Done);
//! # }
//! ```
#![warn(missing_docs)]

pub mod driver;
pub mod journal;
pub mod lock;
pub mod log_file;
pub mod render;

pub use driver::{Driver, DriverHandle, Ports, Subscriber, SubscriberError};
pub use journal::{Journal, JournalError};
pub use lock::{DeployLock, Holder, LockError};
pub use log_file::LogFile;
