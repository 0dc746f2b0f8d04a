//! Property tests: random fleets, policies, faults and operators, with the six rules
//! checked after every step of every run.
//!
//! Every case is one seed; all of its choices come from that seed, so a failure names
//! the seed and `MWDEPLOY_SIM_SEED=<seed> cargo test -p mwdeploy-core --test properties`
//! replays exactly that run first. `PROPTEST_CASES` raises or lowers the case count
//! (default 1024).

use mwdeploy_core::event::Event;
use mwdeploy_sim::{random_scenario, seed_from_env};
use proptest::prelude::*;

const MAX_SERVERS: usize = 60;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1024)
}

fn check_seed(seed: u64) -> Result<(), String> {
    let report = random_scenario(seed, MAX_SERVERS)
        .run()
        .map_err(|e| format!("seed {seed}: plan error {e}"))?;
    if report.violations.is_empty() {
        return Ok(());
    }
    // Replay it to show the end of its trace.
    let mut trace = std::collections::VecDeque::new();
    let _ = random_scenario(seed, MAX_SERVERS).run_with(|ev: &Event, at| {
        if trace.len() == 80 {
            trace.pop_front();
        }
        let line = serde_json::to_string(ev).unwrap_or_default();
        trace.push_back(format!("{:>9.1}s {line}", at.as_secs_f64()));
    });
    Err(format!(
        "seed {seed} broke the rules (rerun: MWDEPLOY_SIM_SEED={seed} cargo test -p mwdeploy-core --test properties):\n  {}\nscenario: {:?}\nlast events:\n{}",
        report.violations.join("\n  "),
        random_scenario(seed, MAX_SERVERS),
        Vec::from(trace).join("\n")
    ))
}

#[test]
fn the_seed_from_the_environment_replays_first() {
    if let Some(seed) = seed_from_env() {
        if let Err(e) = check_seed(seed) {
            panic!("{e}");
        }
    }
}

proptest! {
    // Failures print their seed, which replays them; no regression files.
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_rule_holds_after_every_step(seed in any::<u64>()) {
        if let Err(e) = check_seed(seed) {
            prop_assert!(false, "{}", e);
        }
    }
}

/// The checker is not blind: a machine that broke rule 1 would be caught. We feed it
/// a run whose fleet has more servers already out than `max_unavailable` allows, with
/// the preflight turned off so the machine cannot see them.
#[test]
fn the_checker_catches_too_many_servers_out() {
    use mwdeploy_core::PoolState;
    use mwdeploy_sim::Simulation;
    let report = Simulation::new(3, 1)
        .plan(|p| p.preflight = false)
        .outsider("other1", PoolState::Maint)
        .run()
        .unwrap();
    assert!(
        report.violations.iter().any(|v| v.starts_with("rule 1:")),
        "expected a rule 1 violation, got {:?}",
        report.violations
    );
}

/// The same fleet with the pool read again before each depool: the machine sees the
/// server out, waits for room, and stops rather than take a second one out.
#[test]
fn reread_pool_keeps_rule_1_with_a_server_the_preflight_did_not_see() {
    use mwdeploy_core::{PoolState, StopReason};
    use mwdeploy_sim::Simulation;
    let report = Simulation::new(3, 1)
        .plan(|p| p.preflight = false)
        .policy(|p| p.reread_pool = true)
        .outsider("other1", PoolState::Maint)
        .run()
        .unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.report.stopped, Some(StopReason::NoRoom));
    assert_eq!(report.max_out_of_pool, 1);
}

/// Same seed, same trace: every event, in order, identical.
#[test]
fn a_seed_replays_to_the_same_event_trace() {
    for seed in [1u64, 7, 42, 1_000_003, u64::MAX] {
        let trace = |seed| {
            let mut lines = Vec::new();
            let report = random_scenario(seed, MAX_SERVERS)
                .run_with(|ev: &Event, at| {
                    lines.push(format!("{:?} {}", at, serde_json::to_string(ev).unwrap()))
                })
                .unwrap();
            (lines, format!("{:?}", report.report))
        };
        let (a, ra) = trace(seed);
        let (b, rb) = trace(seed);
        assert!(!a.is_empty());
        assert_eq!(a, b, "seed {seed} gave two traces");
        assert_eq!(ra, rb, "seed {seed} gave two reports");
    }
}

/// Different seeds explore different runs (the generator is not stuck on one scenario).
#[test]
fn different_seeds_give_different_runs() {
    let summaries: std::collections::HashSet<String> = (0..20u64)
        .map(|seed| {
            let r = random_scenario(seed, MAX_SERVERS).run().unwrap();
            format!("{} {:?} {:?}", r.servers, r.summary, r.virtual_duration)
        })
        .collect();
    assert!(
        summaries.len() > 15,
        "only {} distinct runs",
        summaries.len()
    );
}
