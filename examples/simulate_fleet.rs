//! Deploy to a simulated fleet of 1,000 servers, with faults, and check the engine's rules.
//!
//! ```text
//! cargo run --release -p mwdeploy-examples --example simulate_fleet
//! MWDEPLOY_SIM_SEED=7 cargo run --release -p mwdeploy-examples --example simulate_fleet
//! ```
//!
//! [`Simulation`] runs the same [`Rollout`](mwdeploy_core::Rollout) state machine that
//! deploys to real servers, against a fake fleet whose steps fail, hang or run slow as
//! drawn from one seed, in virtual time. Use it to try a policy on a fleet you do not
//! have, or to test your own code that consumes the engine's events.

use std::process::ExitCode;

use mwdeploy_core::plan::{OnFailure, StageSize};
use mwdeploy_core::{Event, Layout, ServerStatus};
use mwdeploy_sim::{seed_from_env, Faults, Simulation};

fn main() -> ExitCode {
    // Every random choice comes from this seed: the same seed gives the same run, event
    // for event. A failing run is repeated with MWDEPLOY_SIM_SEED=<seed>.
    let seed = seed_from_env().unwrap_or(2026);

    let sim = Simulation::new(1_000, seed)
        // Release directories: copy ahead while the server still serves, switch
        // atomically, roll back by switching back when the canary fails.
        .layout(Layout::Releases)
        // 2% of every kind of step fails (canaries, copies, hooks, proxies, rollbacks...;
        // hangs and balancer reloads at a tenth of that).
        .faults(Faults::chaos(0.02))
        // The policy is the same struct a real deploy gets from config.yaml and flags.
        .policy(|p| {
            // One server first, then 5% of the fleet, then all the others.
            p.stages = vec![
                StageSize::Count(1),
                StageSize::Percent(5),
                StageSize::Percent(100),
            ];
            p.parallel = 4; // servers in flight, copies ahead included
            p.max_unavailable = 2; // out of the pool at once: never raised by `parallel`
            p.failure_budget = "2%".parse().expect("a count or a percentage");
            p.on_failure = OnFailure::Continue; // no one is there to answer a prompt
        });

    // `run_with` hands every event to a closure, with the virtual time since the start:
    // the same events a real deploy writes to its journal and to `--json`.
    let mut stages = 0;
    let mut failed_servers = Vec::new();
    let result = sim.run_with(|event, _at| match event {
        Event::StageStarted { .. } => stages += 1,
        Event::ServerState {
            server,
            state: ServerStatus::Failed | ServerStatus::RolledBack,
            ..
        } => failed_servers.push(server.clone()),
        _ => {}
    });

    // An invalid plan (a stage of 0 servers, say) is an `Err`; a deploy that fails is not:
    // its failures are events and counts in the report.
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            eprintln!("invalid plan: {e}");
            return ExitCode::from(2);
        }
    };

    let s = report.summary;
    println!(
        "simulated deploy to {} servers, seed {}",
        report.servers, report.seed
    );
    println!("  stages            {stages}");
    println!(
        "  summary           {} succeeded, {} warned, {} failed, {} rolled back, {} skipped",
        s.succeeded, s.warned, s.failed, s.rolled_back, s.skipped
    );
    if let Some(first) = failed_servers.first() {
        println!("  first failure     {first} (of {})", failed_servers.len());
    }
    // Why it ended early, if it did: a server that fails and cannot be put back (its
    // rollback failed too) stays out of the pool and keeps its room under
    // max_unavailable; once the room is gone the deploy stops rather than take more
    // capacity. Such servers are reported, never forgotten.
    if let Some(reason) = report.report.stopped {
        println!("  stopped           {reason}");
    }
    for (server, why) in &report.report.left_out {
        println!("  left out of pool  {server}: {why}");
    }
    println!(
        "  virtual duration  {:.1} h",
        report.virtual_duration.as_secs_f64() / 3600.0
    );
    println!(
        "  max out of pool   {} (max_unavailable 2)",
        report.max_out_of_pool
    );
    println!(
        "  engine steps      {} ({} events)",
        report.steps, report.events
    );

    // Violations are the design's rules broken (more than max_unavailable out of the
    // pool, a failing server put back, a depooled server forgotten...): a bug, never
    // an expected outcome. The deploy's own failures are not violations.
    if report.violations.is_empty() {
        println!("  violations        none: every rule held");
        ExitCode::SUCCESS
    } else {
        println!("  violations        {}:", report.violations.len());
        for v in &report.violations {
            println!("    {v}");
        }
        println!("  rerun with MWDEPLOY_SIM_SEED={}", report.seed);
        ExitCode::FAILURE
    }
}
