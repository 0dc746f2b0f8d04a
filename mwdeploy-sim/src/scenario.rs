//! Random scenarios: a whole simulated deploy (fleet, policy, faults, operator) drawn
//! from one seed, so `MWDEPLOY_SIM_SEED=<seed>` replays any of them exactly.

use std::time::Duration;

use crate::{Faults, Operator, Rng, Simulation};
use mwdeploy_core::action::{Decision, StopReason};
use mwdeploy_core::model::{HookPoint, HookPoints, Layout, PoolState, Server};
use mwdeploy_core::plan::{ErrorGatePolicy, FailureBudget, OnFailure, OnUnknown, StageSize};

/// A deploy of 1..=`max_servers` servers with every knob drawn from `seed`: layout,
/// stages, `parallel`, `max_unavailable`, budget and `on_failure`, `--force`, hooks, the
/// error gate, job runners (`pooled: false`), servers of others already out, a staging
/// canary, the operator's answers, a stop or a pause, and every kind of fault.
///
/// ```
/// let report = mwdeploy_sim::random_scenario(12345, 40).run().unwrap();
/// report.assert_ok();
/// ```
pub fn random_scenario(seed: u64, max_servers: usize) -> Simulation {
    let mut rng = Rng::new(seed ^ 0x5ce0_a210);
    let n = 1 + rng.below(max_servers.max(1) as u64) as usize;
    let rate = |rng: &mut Rng, max: f64| {
        if rng.chance(0.5) {
            0.0
        } else {
            rng.unit() * max
        }
    };
    let faults = Faults {
        canary_fail: rate(&mut rng, 0.3),
        transfer_fail: rate(&mut rng, 0.2),
        flap: rate(&mut rng, 0.3),
        hang: rate(&mut rng, 0.05),
        slow: rate(&mut rng, 0.2),
        proxy_down: rate(&mut rng, 0.15),
        reload: rate(&mut rng, 0.05),
        hook_fail: rate(&mut rng, 0.1),
        gate_fail: rate(&mut rng, 0.2),
        rollback_fail: rate(&mut rng, 0.2),
        staging_fail: rate(&mut rng, 0.3),
        // Drawn at the end (below), so older seeds keep their runs.
        outage: 0.0,
    };
    let layout = if rng.chance(0.5) {
        Layout::Releases
    } else {
        Layout::Inplace
    };
    let parallel = 1 + rng.below(5) as u32;
    let max_unavailable = 1 + rng.below(4) as u32;
    let stages = match rng.below(5) {
        0 => vec![StageSize::Percent(100)],
        1 => vec![
            StageSize::Count(1),
            StageSize::Percent(10),
            StageSize::Percent(100),
        ],
        2 => vec![StageSize::Count(2), StageSize::Percent(50)],
        3 => vec![StageSize::Count(1 + rng.below(4) as u32)],
        // Group stages need a server in each group.
        _ if n >= 2 => vec![
            StageSize::Group("canary".into()),
            StageSize::Group("main".into()),
        ],
        _ => vec![StageSize::Count(1)],
    };
    let grouped = matches!(stages[0], StageSize::Group(_));
    let budget = if rng.chance(0.5) {
        FailureBudget::Count(rng.below(4) as u32)
    } else {
        FailureBudget::Percent(rng.below(30) as u32)
    };
    let on_failure = match rng.below(3) {
        0 => OnFailure::Prompt,
        1 => OnFailure::Abort,
        _ => OnFailure::Continue,
    };
    let force = rng.chance(0.15);
    let gate = rng.chance(0.4).then(|| {
        let on_unknown = if rng.chance(0.5) {
            OnUnknown::Fail
        } else {
            OnUnknown::Pass
        };
        ErrorGatePolicy::new(Duration::from_secs(5 + rng.below(30)), on_unknown)
    });
    let approve = rng.chance(0.2);
    let bake = Duration::from_secs(if rng.chance(0.3) { rng.below(120) } else { 0 });
    let hooks = if rng.chance(0.5) {
        HookPoints::of(&HookPoint::ALL)
    } else {
        HookPoints::NONE
    };
    let unpooled_rate = if rng.chance(0.3) { 0.2 } else { 0.0 };
    let staging = rng.chance(0.3);
    let operator = match rng.below(4) {
        0 => Operator::Yes,
        1 => Operator::No,
        2 => Operator::Silent,
        _ => Operator::Random,
    };
    let think = Duration::from_secs(1 + rng.below(60));

    let mut sim = Simulation::new(n, seed)
        .layout(layout)
        .faults(faults)
        .operator(operator, think)
        .policy(|p| {
            p.parallel = parallel;
            p.max_unavailable = max_unavailable;
            p.stages = stages;
            p.failure_budget = budget;
            p.on_failure = on_failure;
            p.force = force;
            p.error_gate = gate;
            p.approve_stages = approve;
            p.bake = bake;
        });
    // Per-server draws after the policy, in server order.
    let mut unpooled = Vec::with_capacity(n);
    for i in 0..n {
        unpooled.push(i > 0 && rng.chance(unpooled_rate));
    }
    sim = sim.plan(|p| {
        for (i, s) in p.servers.iter_mut().enumerate() {
            s.hooks = hooks;
            if grouped {
                s.group = Some(if i == 0 { "canary" } else { "main" }.into());
            }
            if unpooled[i] {
                let id = s.id.clone();
                *s = Server::new(id)
                    .unpooled(vec![
                        "systemctl".into(),
                        "is-active".into(),
                        "jobrunner".into(),
                    ])
                    .with_hooks(hooks);
                if grouped {
                    s.group = Some("main".into());
                }
            }
        }
        if staging {
            p.staging = Some(Server::new(crate::ServerId::new("staging").expect("valid")));
        }
    });
    for k in 0..rng.below(3) {
        let state = match rng.below(3) {
            0 => PoolState::Up,
            1 => PoolState::Maint,
            _ => PoolState::Down,
        };
        sim = sim.outsider(&format!("other{k}"), state);
    }
    if rng.chance(0.1) {
        let victim = format!("mw{:05}", 1 + rng.below(n as u64));
        sim = sim.down(&victim, PoolState::Down);
    }
    match rng.below(6) {
        0 => {
            let at = Duration::from_secs(rng.below(600));
            sim = sim.decide_at(at, Decision::Stop(StopReason::Operator));
        }
        1 => {
            let at = Duration::from_secs(rng.below(600));
            sim = sim.decide_at(at, Decision::Stop(StopReason::Interrupted));
        }
        2 => {
            let at = Duration::from_secs(rng.below(300));
            sim = sim
                .decide_at(at, Decision::Pause)
                .decide_at(at + Duration::from_secs(rng.below(300)), Decision::Resume);
        }
        _ => {}
    }
    // Drawn last, so the draws above (and the runs of older seeds) stay as they were.
    if rng.chance(0.5) {
        sim = sim.policy(|p| p.reread_pool = true);
    }
    // Servers not deployed that go down and come back on their own, now and then.
    if rng.chance(0.3) {
        let rate = 0.005 + 0.03 * rng.unit();
        sim = sim.outsider("other9", PoolState::Up).outage_rate(rate);
    }
    sim
}
