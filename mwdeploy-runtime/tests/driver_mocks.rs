//! The driver against mocked ports: a step that never answers hits its deadline and is
//! cancelled; a shutdown mid-stage puts the depooled server back; decisions arrive while
//! steps run.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mockall::mock;
use mockall::predicate::function;
use mwdeploy_core::ports::{HealthCheck, Hook, Note, Notifier, PoolControl, Progress, Transfer};
use mwdeploy_core::{
    Decision, Health, HookPoint, Layout, Plan, PoolState, PortError, ReleaseId, Rollout, Server,
    ServerId, ServerStatus,
};
use mwdeploy_runtime::driver::{Driver, DriverHandle, Ports};

mock! {
    Pool {}
    #[async_trait]
    impl PoolControl for Pool {
        async fn depool(&self, server: &Server, progress: &Progress) -> Result<(), PortError>;
        async fn repool(&self, server: &Server, progress: &Progress) -> Result<(), PortError>;
        async fn state(&self, server: &Server) -> Result<PoolState, PortError>;
        async fn states(&self) -> Result<Vec<(ServerId, PoolState)>, PortError>;
    }
}

mock! {
    Health {}
    #[async_trait]
    impl HealthCheck for Health {
        async fn check(&self, server: &Server, progress: &Progress) -> Health;
    }
}

mock! {
    Hooks {}
    #[async_trait]
    impl Hook for Hooks {
        async fn run(&self, server: &Server, point: HookPoint, release: &ReleaseId, progress: &Progress) -> Result<(), PortError>;
    }
}

mock! {
    Notes {}
    #[async_trait]
    impl Notifier for Notes {
        async fn notify(&self, note: &Note) -> Result<(), PortError>;
    }
}

/// A transfer whose in-place copy takes `copy_time`, counting calls.
struct SlowTransfer {
    copy_time: Duration,
    activations: AtomicU32,
}

#[async_trait]
impl Transfer for SlowTransfer {
    async fn copy(&self, _: &Server, _: &ReleaseId, _: &Progress) -> Result<(), PortError> {
        Ok(())
    }
    async fn activate(&self, _: &Server, _: &ReleaseId, _: &Progress) -> Result<(), PortError> {
        self.activations.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.copy_time).await;
        Ok(())
    }
    async fn rollback(&self, _: &Server, _: &Progress) -> Result<ReleaseId, PortError> {
        Err(PortError::permanent("in place: nothing to roll back to"))
    }
    fn can_rollback(&self) -> bool {
        false
    }
}

fn ids(n: usize) -> Vec<ServerId> {
    (1..=n)
        .map(|i| ServerId::new(&format!("mw{i}")).unwrap())
        .collect()
}

fn plan(n: usize) -> Plan {
    let servers = ids(n).into_iter().map(Server::new).collect();
    Plan::new(
        "20261122T050000Z-t1",
        ReleaseId::parse("20261122T050000Z-r1").unwrap(),
        Layout::Inplace,
        servers,
    )
}

fn is(name: &'static str) -> impl Fn(&Server) -> bool {
    move |s: &Server| s.id.as_str() == name
}

/// A pool where every server is UP, reads show servers out after a depool, and
/// `depooled` names the servers that may be depooled (once each, then repooled once).
fn pool(n: usize, depooled: &[&'static str]) -> MockPool {
    let out: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut pool = MockPool::new();
    pool.expect_states()
        .returning(move || Ok(ids(n).into_iter().map(|i| (i, PoolState::Up)).collect()));
    let o = out.clone();
    pool.expect_state().returning(move |s| {
        let out = o.lock().unwrap().contains(&s.id.to_string());
        Ok(if out { PoolState::Maint } else { PoolState::Up })
    });
    for name in depooled {
        let o = out.clone();
        pool.expect_depool()
            .with(function(is(name)), mockall::predicate::always())
            .times(1)
            .returning(move |s, _| {
                o.lock().unwrap().push(s.id.to_string());
                Ok(())
            });
        let o = out.clone();
        pool.expect_repool()
            .with(function(is(name)), mockall::predicate::always())
            .times(1)
            .returning(move |s, _| {
                o.lock().unwrap().retain(|x| x != s.id.as_str());
                Ok(())
            });
    }
    pool
}

fn quiet_ports(pool: MockPool, transfer: Arc<dyn Transfer>, health: Arc<dyn HealthCheck>) -> Ports {
    let mut hooks = MockHooks::new();
    hooks.expect_run().never();
    let mut notes = MockNotes::new();
    notes.expect_notify().returning(|_| Ok(()));
    Ports {
        pool: Arc::new(pool),
        transfer,
        health,
        hooks: Arc::new(hooks),
        notifier: Arc::new(notes),
    }
}

fn healthy() -> Arc<dyn HealthCheck> {
    let mut h = MockHealth::new();
    h.expect_check().returning(|_, _| Health::Healthy);
    Arc::new(h)
}

fn slow(copy: Duration) -> Arc<SlowTransfer> {
    Arc::new(SlowTransfer {
        copy_time: copy,
        activations: AtomicU32::new(0),
    })
}

async fn run(ports: Ports, plan: Plan, steer: impl FnOnce(DriverHandle)) -> mwdeploy_core::Report {
    let (driver, handle) = Driver::new(ports);
    steer(handle);
    let rollout = Rollout::new(plan, tokio::time::Instant::now().into_std()).unwrap();
    driver.run(rollout).await
}

/// A canary that never answers; dropping its future (cancelling it) is recorded.
struct HangingCanary {
    cancelled: Arc<AtomicU32>,
}

/// Counts drops; the canary's future never completes, so a drop is a cancellation.
struct OnDrop(Arc<AtomicU32>);
impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl HealthCheck for HangingCanary {
    async fn check(&self, _: &Server, _: &Progress) -> Health {
        let _guard = OnDrop(self.cancelled.clone());
        std::future::pending::<()>().await;
        Health::Healthy
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_that_never_answers_times_out_at_its_deadline_and_is_cancelled() {
    let cancelled = Arc::new(AtomicU32::new(0));
    let health = Arc::new(HangingCanary {
        cancelled: cancelled.clone(),
    });
    // In place: the server is depooled and, its canary never answering, kept out.
    let mut p = MockPool::new();
    p.expect_states()
        .returning(|| Ok(ids(1).into_iter().map(|i| (i, PoolState::Up)).collect()));
    p.expect_state().returning(|_| Ok(PoolState::Maint));
    p.expect_depool().times(1).returning(|_, _| Ok(()));
    p.expect_repool().never();
    let mut plan = plan(1);
    plan.policy.canary.timeout = Duration::from_secs(15);
    let start = tokio::time::Instant::now();
    let report = run(
        quiet_ports(p, slow(Duration::from_secs(1)), health),
        plan,
        |_| {},
    )
    .await;
    assert_eq!(report.summary.failed, 1);
    assert_eq!(report.left_out.len(), 1);
    assert!(
        report.left_out[0].1.contains("ran past its deadline"),
        "{:?}",
        report.left_out
    );
    // Three attempts, each cut at 15 s, with 3 s pauses between them.
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(3 * 15 + 2 * 3), "{took:?}");
    assert_eq!(
        cancelled.load(Ordering::SeqCst),
        3,
        "every hung attempt was cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_mid_stage_lets_the_running_server_finish_and_repools_it() {
    // mw1 is depooled and copying when SIGINT arrives: it finishes, is canaried and
    // repooled; mw2 and mw3 never start.
    let transfer = slow(Duration::from_secs(30));
    let ports = quiet_ports(pool(3, &["mw1"]), transfer.clone(), healthy());
    let report = run(ports, plan(3), |h| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            h.interrupt();
        });
    })
    .await;
    assert_eq!(report.verdict, mwdeploy_core::Verdict::Interrupted);
    assert_eq!(report.summary.succeeded, 1);
    assert_eq!(report.summary.skipped, 2);
    assert!(report.left_out.is_empty());
    assert_eq!(transfer.activations.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pause_while_a_step_runs_holds_the_next_server_until_resume() {
    let transfer = slow(Duration::from_secs(30));
    let ports = quiet_ports(pool(2, &["mw1", "mw2"]), transfer.clone(), healthy());
    let t0 = tokio::time::Instant::now();
    let mut p = plan(2);
    p.policy.parallel = 1;
    let (driver, handle) = Driver::new(ports);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Records carry virtual time, so gaps measure the paused clock.
    let epoch = std::time::SystemTime::UNIX_EPOCH;
    let driver = driver
        .subscribe(mwdeploy_runtime::driver::ChannelSubscriber(tx))
        .with_clock(move || epoch + t0.elapsed());
    let steer = handle.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        steer.decide(Decision::Pause);
        tokio::time::sleep(Duration::from_secs(600)).await;
        steer.decide(Decision::Resume);
    });
    let rollout = Rollout::new(p, t0.into_std()).unwrap();
    let report = driver.run(rollout).await;
    assert_eq!(report.summary.succeeded, 2);
    // mw2 started only after the resume at 605 s, although mw1 was done long before.
    let mut mw2_started = None;
    let mut mw1_done = None;
    while let Ok(r) = rx.try_recv() {
        if let mwdeploy_core::Event::ServerState { server, state, .. } = &r.event {
            let at = r.ts;
            match (server.as_str(), state) {
                ("mw1", ServerStatus::Done) => mw1_done = Some(at),
                ("mw2", ServerStatus::Depooling) if mw2_started.is_none() => mw2_started = Some(at),
                _ => {}
            }
        }
    }
    let (done, started) = (mw1_done.unwrap(), mw2_started.unwrap());
    let gap = started.duration_since(done).unwrap();
    assert!(
        gap >= Duration::from_secs(500),
        "mw2 started {gap:?} after mw1 was done"
    );
    drop(handle);
}

/// A copy that reports its progress 1,000 times in two seconds.
struct ChattyTransfer;

#[async_trait]
impl Transfer for ChattyTransfer {
    async fn copy(&self, _: &Server, _: &ReleaseId, _: &Progress) -> Result<(), PortError> {
        Ok(())
    }
    async fn activate(&self, _: &Server, _: &ReleaseId, p: &Progress) -> Result<(), PortError> {
        for i in 1..=1000u32 {
            p.report(mwdeploy_core::ports::ProgressUpdate::percent(
                i as f32 / 10.0,
            ));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
    async fn rollback(&self, _: &Server, _: &Progress) -> Result<ReleaseId, PortError> {
        Err(PortError::permanent("in place"))
    }
    fn can_rollback(&self) -> bool {
        false
    }
}

#[tokio::test(start_paused = true)]
async fn progress_is_thinned_to_a_few_events_a_second_per_server() {
    let ports = quiet_ports(pool(1, &["mw1"]), Arc::new(ChattyTransfer), healthy());
    let (driver, _handle) = Driver::new(ports);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rollout = Rollout::new(plan(1), tokio::time::Instant::now().into_std()).unwrap();
    let report = driver
        .subscribe(mwdeploy_runtime::driver::ChannelSubscriber(tx))
        .run(rollout)
        .await;
    assert_eq!(report.summary.succeeded, 1);
    let mut percents = Vec::new();
    while let Ok(r) = rx.try_recv() {
        if let mwdeploy_core::Event::Progress { percent, .. } = r.event {
            percents.push(percent.unwrap());
        }
    }
    // Two seconds at one event per 250 ms, plus the final 100%.
    assert!(
        (5..=12).contains(&percents.len()),
        "{} progress events: {percents:?}",
        percents.len()
    );
    assert_eq!(percents.last(), Some(&100.0));
}
