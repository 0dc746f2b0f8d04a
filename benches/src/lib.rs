//! Benchmarks of the mwdeploy engine; see `benches/` and README.md.
//!
//! [`rollout`] is the one plan every engine measurement uses, so the criterion figures
//! and the peak-memory figure describe the same deploy.
#![warn(missing_docs)]

use mwdeploy_core::plan::{FailureBudget, OnFailure};
use mwdeploy_core::Layout;
use mwdeploy_sim::{Faults, Simulation};

/// Release layout, 4 in flight, 2 out of the pool at most, 1% broken releases rolled
/// back, and a budget so large that the deploy never stops early: every server is
/// deployed, so the work grows with the fleet.
pub fn rollout(servers: usize) -> Simulation {
    Simulation::new(servers, 1)
        .layout(Layout::Releases)
        .faults(Faults::canary(0.01))
        .policy(|p| {
            p.parallel = 4;
            p.max_unavailable = 2;
            p.failure_budget = FailureBudget::Percent(100);
            p.on_failure = OnFailure::Continue;
        })
}
