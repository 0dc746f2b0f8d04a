//! After a rollback, the server's next steps (post_activate hooks, the canary) are
//! about the release that is live again, not the one that failed.

use std::time::{Duration, Instant};

use mwdeploy_core::{
    ActionKind, Health, HookPoint, HookPoints, Layout, Outcome, Plan, PoolState, ReleaseId,
    Rollout, Server, ServerId, ServerStatus,
};

#[test]
fn steps_after_a_rollback_name_the_release_live_again() {
    let new = ReleaseId::parse("20261122T050000Z-new").unwrap();
    let old = ReleaseId::parse("20261121T050000Z-old").unwrap();
    let server = Server::new(ServerId::new("mw1").unwrap())
        .with_hooks(HookPoints::of(&[HookPoint::PostActivate]));
    let mut plan = Plan::new("d1", new.clone(), Layout::Releases, vec![server]);
    plan.preflight = false;
    let mut now = Instant::now();
    let mut r = Rollout::new(plan, now).unwrap();
    let mut hooks = Vec::new();
    let mut rolled_back = false;
    while !r.is_finished() {
        while r.poll_event().is_some() {}
        let Some(a) = r.poll_action() else {
            now = r.poll_timeout().expect("a timer is pending");
            r.handle_timeout(now);
            continue;
        };
        let outcome = match &a.kind {
            ActionKind::Notify(_) => continue,
            ActionKind::QueryPool => Outcome::State(PoolState::Maint),
            ActionKind::RunHook(HookPoint::PostActivate) => {
                hooks.push(a.release.clone());
                Outcome::Done
            }
            ActionKind::Canary { .. } if !rolled_back => Outcome::Health(Health::unhealthy("500")),
            ActionKind::Canary { .. } => Outcome::Health(Health::Healthy),
            ActionKind::Rollback => {
                rolled_back = true;
                Outcome::RolledBackTo(old.clone())
            }
            _ => Outcome::Done,
        };
        now += Duration::from_millis(10);
        r.handle_completion(now, a.id, outcome);
    }
    assert_eq!(hooks, vec![new, old]);
    assert_eq!(
        r.statuses().next().map(|(_, s)| s),
        Some(ServerStatus::RolledBack)
    );
}
