//! Choose a rollout policy by simulating it first, on a fleet with server groups.
//!
//! ```text
//! cargo run --release -p mwdeploy-examples --example custom_policy
//! ```
//!
//! A hand-built [`Plan`] (servers with groups, as `mw_servers` in config.yaml gives them)
//! is run under a few policies with the same seed and fault rate. The faults are drawn
//! in the order the steps run, so a different policy meets slightly different broken
//! servers: compare the durations and the pool figures, not single failures.

use std::process::ExitCode;

use mwdeploy_core::plan::{FailureBudget, OnFailure, Policy, StageSize};
use mwdeploy_core::{Layout, Plan, ServerId};
use mwdeploy_sim::{Faults, Simulation};

/// 200 servers: four in group `canary`, the others in `main`.
fn plan() -> Plan {
    let servers = (1..=200)
        .map(|n| {
            let id = ServerId::new(&format!("mw{n:03}")).expect("a valid name");
            let mut server = mwdeploy_core::Server::new(id);
            server.group = Some(if n <= 4 { "canary" } else { "main" }.to_string());
            server
        })
        .collect();
    let release = Simulation::release(1);
    let mut plan = Plan::new("custom-policy", release, Layout::Releases, servers);
    // Stages by group: the canary servers first, then the rest.
    plan.policy.stages = vec![
        StageSize::Group("canary".into()),
        StageSize::Group("main".into()),
    ];
    plan
}

fn main() -> ExitCode {
    type Tune = fn(&mut Policy);
    let candidates: [(&str, Tune); 3] = [
        ("one at a time", |p| {
            p.parallel = 1;
            p.max_unavailable = 1;
        }),
        ("copy ahead", |p| {
            // Four servers in flight, still one out of the pool at a time: the copies
            // of the next servers run while the current one is out.
            p.parallel = 4;
            p.max_unavailable = 1;
        }),
        ("two out at once", |p| {
            p.parallel = 8;
            p.max_unavailable = 2;
        }),
    ];

    println!(
        "{:<16} {:>10} {:>12} {:>9} {:>12} {:>8}",
        "policy", "duration", "max out", "done", "rolled back", "failed"
    );
    let mut broken = false;
    for (name, tune) in candidates {
        let report = Simulation::with_plan(plan(), 7)
            .faults(Faults::canary(0.03))
            .policy(|p| {
                tune(p);
                p.failure_budget = FailureBudget::Percent(10);
                p.on_failure = OnFailure::Continue;
            })
            .run()
            .expect("the plan is valid");
        let s = report.summary;
        println!(
            "{name:<16} {:>9.0}m {:>12} {:>9} {:>12} {:>8}",
            report.virtual_duration.as_secs_f64() / 60.0,
            report.max_out_of_pool,
            s.succeeded,
            s.rolled_back,
            s.failed
        );
        for v in &report.violations {
            println!("  rule broken: {v}");
            broken = true;
        }
    }
    println!("(virtual time; seed 7, 3% of releases broken, rolled back by the release layout)");
    if broken {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
