//! The port conformance suite, run against the fake fleet. The adapter crates run the
//! same functions against HAProxy, rsync and curl.

use std::time::Duration;

use mwdeploy_core::{Layout, ReleaseId, Server, ServerId};
use mwdeploy_sim::conformance;
use mwdeploy_sim::{Faults, FleetModel, SimFleet};

fn fleet(faults: Faults, layout: Layout) -> (SimFleet, Vec<Server>) {
    let servers: Vec<Server> = ["mw1", "mw2"]
        .iter()
        .map(|n| Server::new(ServerId::new(n).unwrap()))
        .collect();
    let model = FleetModel::new(1, layout, faults, &servers, Vec::new(), None);
    (SimFleet::new(model), servers)
}

#[tokio::test(start_paused = true)]
async fn sim_pool_control_conforms() {
    let (fleet, servers) = fleet(Faults::none(), Layout::Releases);
    conformance::pool_round_trip(&fleet, &servers[0])
        .await
        .unwrap();
    let unknown = Server::new(ServerId::new("not-in-backend").unwrap());
    conformance::pool_unknown_server_fails(&fleet, &unknown)
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn sim_health_check_conforms() {
    let (fleet, servers) = fleet(Faults::none(), Layout::Releases);
    conformance::health_healthy(&fleet, &servers[0])
        .await
        .unwrap();
    // Every new release broken: after activation the canary must fail, with a reason.
    let (broken, servers) = fleet_with_broken_release();
    let release = ReleaseId::parse("20260101T000000Z-a1").unwrap();
    let p = mwdeploy_core::ports::Progress::discard(servers[0].id.clone());
    use mwdeploy_core::ports::Transfer;
    broken.copy(&servers[0], &release, &p).await.unwrap();
    broken.activate(&servers[0], &release, &p).await.unwrap();
    conformance::health_unhealthy(&broken, &servers[0])
        .await
        .unwrap();
}

fn fleet_with_broken_release() -> (SimFleet, Vec<Server>) {
    fleet(Faults::canary(1.0), Layout::Releases)
}

#[tokio::test(start_paused = true)]
async fn sim_transfer_conforms() {
    let (fleet, servers) = fleet(Faults::none(), Layout::Releases);
    let release = ReleaseId::parse("20260101T000000Z-a1").unwrap();
    conformance::transfer_copy_activate_rollback(&fleet, &servers[1], &release)
        .await
        .unwrap();
}

/// Steps take their virtual time: a depool waits for its drain under a paused clock.
#[tokio::test(start_paused = true)]
async fn sim_steps_take_virtual_time() {
    use mwdeploy_core::ports::{PoolControl, Progress};
    let (fleet, servers) = fleet(Faults::none(), Layout::Inplace);
    let start = tokio::time::Instant::now();
    fleet
        .depool(&servers[0], &Progress::discard(servers[0].id.clone()))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(500), "depool took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn sim_hook_and_notifier_conform() {
    use mwdeploy_core::HookPoint;
    let release = ReleaseId::parse("20260101T000000Z-a1").unwrap();
    let (sim, servers) = fleet(Faults::none(), Layout::Releases);
    conformance::hook_without_commands_is_a_no_op(
        &sim,
        &servers[0],
        HookPoint::PostRepool,
        &release,
    )
    .await
    .unwrap();
    let mut failing = Faults::none();
    failing.hook_fail = 1.0;
    let (broken, servers) = fleet(failing, Layout::Releases);
    conformance::hook_failure_names_its_point(
        &broken,
        &servers[0],
        HookPoint::PostActivate,
        &release,
    )
    .await
    .unwrap();
    conformance::notifier_is_bounded_and_discreet(&sim, &servers[0], Duration::from_secs(30), "")
        .await
        .unwrap();
}
