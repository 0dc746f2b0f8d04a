//! The simulated fleet run through the tokio driver under a paused clock gives the
//! same event trace as the direct simulation of the same seed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mwdeploy_core::event::{Event, Record};
use mwdeploy_core::plan::{ErrorGatePolicy, FailureBudget, OnFailure, OnUnknown, StageSize};
use mwdeploy_core::{HookPoint, HookPoints, Layout, Rollout};
use mwdeploy_runtime::driver::{Driver, Ports, Subscriber, SubscriberError};
use mwdeploy_sim::{Faults, SimFleet, Simulation};

#[derive(Clone, Default)]
struct Trace(Arc<Mutex<Vec<String>>>);

impl Subscriber for Trace {
    fn record(&mut self, record: &Record) -> Result<(), SubscriberError> {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::to_string(&record.event).unwrap());
        Ok(())
    }
}

fn scenario(seed: u64, layout: Layout) -> Simulation {
    Simulation::new(25, seed)
        .layout(layout)
        .faults(Faults::chaos(0.08))
        .policy(|p| {
            p.parallel = 3;
            p.max_unavailable = 2;
            p.stages = vec![StageSize::Count(1), StageSize::Percent(40)];
            p.failure_budget = FailureBudget::Count(4);
            p.on_failure = OnFailure::Abort;
            p.error_gate = Some(ErrorGatePolicy::new(
                Duration::from_secs(10),
                OnUnknown::Fail,
            ));
        })
        .plan(|p| {
            for s in p.servers.iter_mut() {
                s.hooks = HookPoints::of(&HookPoint::ALL);
            }
        })
}

fn direct(sim: Simulation) -> Vec<String> {
    let mut lines = Vec::new();
    sim.run_with(|ev: &Event, _| lines.push(serde_json::to_string(ev).unwrap()))
        .unwrap()
        .assert_ok();
    lines
}

async fn driven(sim: Simulation) -> Vec<String> {
    let fleet = Arc::new(SimFleet::new(sim.fleet_model()));
    let plan = sim.into_plan();
    let trace = Trace::default();
    let (driver, _handle) = Driver::new(Ports::all(fleet));
    let rollout = Rollout::new(plan, tokio::time::Instant::now().into_std()).unwrap();
    driver.subscribe(trace.clone()).run(rollout).await;
    let lines = trace.0.lock().unwrap().clone();
    lines
}

#[tokio::test(start_paused = true)]
async fn driver_and_direct_simulation_agree_event_for_event() {
    for seed in [1u64, 2, 3, 5, 8, 13, 21, 34] {
        for layout in [Layout::Inplace, Layout::Releases] {
            let a = direct(scenario(seed, layout));
            let b = driven(scenario(seed, layout)).await;
            let first = a.iter().zip(&b).position(|(x, y)| x != y);
            assert!(
                a == b,
                "seed {seed} {layout}: traces differ at event {first:?} ({} vs {} events)\ndirect: {:?}\ndriven: {:?}",
                a.len(),
                b.len(),
                first.map(|i| &a[i]),
                first.map(|i| &b[i]),
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_paused_clock_runs_hours_of_deploy_instantly() {
    let wall = Instant::now();
    let virt = tokio::time::Instant::now();
    let trace = driven(scenario(99, Layout::Releases)).await;
    assert!(trace.last().unwrap().contains("deploy_finished"));
    assert!(
        virt.elapsed() > Duration::from_secs(60),
        "virtual time passed"
    );
    assert!(wall.elapsed() < Duration::from_secs(60));
}
