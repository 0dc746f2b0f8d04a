//! The tokio driver: runs a [`Rollout`] against real (or simulated) ports.
//!
//! The machine decides; the driver makes it happen. Each action runs as a tokio task
//! against its port. Answers go back to the machine, timers sleep on `tokio::time` (so a
//! paused tokio clock runs a whole deploy instantly and exactly), events go to every
//! [`Subscriber`] (the journal first: a pool change's intent is on disk before the
//! command is sent), and decisions arrive through a [`DriverHandle`].
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
//! assert_eq!(report.summary.succeeded, 3);
//! # }
//! ```
//!
//! A step whose deadline passes becomes a timeout answer (the machine's own timer) and
//! its task is aborted: a port's future must clean up when dropped (child processes
//! spawned with `kill_on_drop`). A shutdown ([`DriverHandle::interrupt`], on SIGINT or
//! SIGTERM) stops the deploy gracefully: no new server starts, running servers finish
//! their cycle, every depooled server goes back after its canary passes or is reported.
//! Nothing here reacts to SIGHUP: losing the terminal does not stop a deploy.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use mwdeploy_core::action::{Action, ActionId, ActionKind, Decision, Outcome, StopReason, Target};
use mwdeploy_core::error::PortError;
use mwdeploy_core::event::{Event, PoolPhase, Record};
use mwdeploy_core::model::{Server, ServerId};
use mwdeploy_core::ports::{
    HealthCheck, Hook, Notifier, PoolControl, Progress, ProgressUpdate, Transfer,
};
use mwdeploy_core::rollout::{Report, Rollout};

/// How long notifications still posting when the deploy's last step ended may hold its
/// end: a webhook that refuses or hangs never delays a deploy by more than this. One
/// retry after a refused connection (1 s pause) fits in it.
pub const NOTIFY_GRACE: Duration = Duration::from_secs(2);

/// Progress events kept per server: at most one per this interval.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// The ports a deploy runs against.
#[derive(Clone)]
pub struct Ports {
    /// The balancer.
    pub pool: Arc<dyn PoolControl>,
    /// Copies and switches releases.
    pub transfer: Arc<dyn Transfer>,
    /// Canary and error gate.
    pub health: Arc<dyn HealthCheck>,
    /// Hooks.
    pub hooks: Arc<dyn Hook>,
    /// Webhooks and the like.
    pub notifier: Arc<dyn Notifier>,
}

impl Ports {
    /// Every port served by one value (the simulated fleet, say).
    pub fn all<T>(t: Arc<T>) -> Self
    where
        T: PoolControl + Transfer + HealthCheck + Hook + Notifier + 'static,
    {
        Ports {
            pool: t.clone(),
            transfer: t.clone(),
            health: t.clone(),
            hooks: t.clone(),
            notifier: t,
        }
    }
}

impl fmt::Debug for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// A subscriber could not take an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subscriber}: {detail}")]
pub struct SubscriberError {
    /// Which subscriber (`journal`).
    pub subscriber: String,
    /// What went wrong.
    pub detail: String,
}

/// Receives every event of a deploy, in order, with its time.
pub trait Subscriber: Send {
    /// Takes one record. An error from a subscriber that [`Subscriber::is_critical`]
    /// stops the deploy and no pool change is sent after it.
    fn record(&mut self, record: &Record) -> Result<(), SubscriberError>;

    /// Whether the deploy may not go on without this subscriber (the journal).
    fn is_critical(&self) -> bool {
        false
    }
}

/// A subscriber that forwards records into a channel (for UIs).
#[derive(Debug)]
pub struct ChannelSubscriber(pub mpsc::UnboundedSender<Record>);

impl Subscriber for ChannelSubscriber {
    fn record(&mut self, record: &Record) -> Result<(), SubscriberError> {
        // A UI that went away is not a reason to stop a deploy.
        let _ = self.0.send(record.clone());
        Ok(())
    }
}

/// What a [`DriverHandle`] sends to its driver.
#[derive(Debug)]
enum Msg {
    Decide(Decision),
    Pool(ServerId, bool),
}

/// Sends decisions to a running driver. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl DriverHandle {
    /// Sends `decision`; returns `false` if the deploy already ended.
    pub fn decide(&self, decision: Decision) -> bool {
        self.tx.send(Msg::Decide(decision)).is_ok()
    }

    /// The operator's pool menu: take `server` out of the pool (`depool`), or put it
    /// back after its canary, through the running deploy (see
    /// [`Rollout::handle_pool_request`]); returns `false` if the deploy already ended.
    pub fn pool(&self, server: ServerId, depool: bool) -> bool {
        self.tx.send(Msg::Pool(server, depool)).is_ok()
    }

    /// SIGINT or SIGTERM: stop gracefully (exit code 130 in the report).
    pub fn interrupt(&self) -> bool {
        self.decide(Decision::Stop(StopReason::Interrupted))
    }
}

/// Runs one rollout. See the [module docs](self).
pub struct Driver {
    ports: Ports,
    subscribers: Vec<Box<dyn Subscriber>>,
    decisions: mpsc::UnboundedReceiver<Msg>,
    clock: Box<dyn Fn() -> SystemTime + Send>,
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("subscribers", &self.subscribers.len())
            .finish_non_exhaustive()
    }
}

/// A finished step, as a task returns it.
type Done = (ActionId, Outcome);

impl Driver {
    /// A driver for `ports`, and the handle to steer it.
    pub fn new(ports: Ports) -> (Driver, DriverHandle) {
        let (tx, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            ports,
            subscribers: Vec::new(),
            decisions: rx,
            clock: Box::new(SystemTime::now),
        };
        (driver, DriverHandle { tx })
    }

    /// Adds a subscriber; subscribers see each record in the order they were added.
    pub fn subscribe(mut self, subscriber: impl Subscriber + 'static) -> Self {
        self.subscribers.push(Box::new(subscriber));
        self
    }

    /// Stamps records with `clock` instead of the system clock (simulations use a
    /// virtual wall clock).
    pub fn with_clock(mut self, clock: impl Fn() -> SystemTime + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Runs `rollout` to its end and returns its report.
    pub async fn run(mut self, mut rollout: Rollout) -> Report {
        let mut servers: HashMap<ServerId, Server> = rollout
            .plan()
            .servers
            .iter()
            .map(|s| (s.id.clone(), s.clone()))
            .collect();
        let staging = rollout.plan().staging.clone();
        if let Some(s) = &staging {
            servers.insert(s.id.clone(), s.clone());
        }
        let servers = Arc::new(servers);
        let deploy = rollout.plan().deploy_id.clone();
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        // Steps the machine waits for, by task, to abort those it gave up on.
        let mut running: HashMap<ActionId, tokio::task::AbortHandle> = HashMap::new();
        let mut last_progress: HashMap<ServerId, Instant> = HashMap::new();
        let mut notifies: HashSet<ActionId> = HashSet::new();
        let mut halted: Option<String> = None;
        loop {
            // Events first: a pool change's intent must be recorded before it is sent.
            halted = halted.or_else(|| self.publish(&deploy, &mut rollout));
            let mut refused = Vec::new();
            while let Some(action) = rollout.poll_action() {
                if let Some(why) = &halted {
                    if matches!(
                        action.kind,
                        ActionKind::Depool | ActionKind::Repool | ActionKind::RepoolForced
                    ) {
                        refused.push((action.id, why.clone()));
                        continue;
                    }
                }
                let id = action.id;
                let notify = matches!(action.kind, ActionKind::Notify(_));
                let fut = step(
                    self.ports.clone(),
                    servers.clone(),
                    staging.clone(),
                    action,
                    progress_tx.clone(),
                );
                let handle = tasks.spawn(async move { (id, fut.await) });
                if notify {
                    notifies.insert(id);
                } else {
                    running.insert(id, handle);
                }
            }
            if !refused.is_empty() {
                let now = now();
                for (id, why) in refused {
                    let e = PortError::permanent(format!(
                        "not sent: the journal could not record it ({why})"
                    ));
                    rollout.handle_completion(now, id, Outcome::Failed(e));
                }
                rollout.handle_decision(now, Decision::Stop(StopReason::Operator));
                continue;
            }
            // Steps past their deadline: the machine has its answer, the task goes.
            running.retain(|id, h| {
                let keep = rollout.is_waiting_for(*id);
                if !keep {
                    h.abort();
                }
                keep
            });
            if rollout.is_finished() {
                break;
            }
            let wake = rollout.poll_timeout();
            tokio::select! {
                biased;
                Some(first) = tasks.join_next(), if !tasks.is_empty() => {
                    // What a step reported before it ended is recorded before its end:
                    // a proxy's answer to a pool change comes before the server's result.
                    while let Ok((server, step, update)) = progress_rx.try_recv() {
                        self.progress(&deploy, &mut last_progress, server, step, update);
                    }
                    // Steps that end at the same instant are answered in action order,
                    // as the direct simulation does.
                    let mut done: Vec<Done> = first.into_iter().collect();
                    tokio::task::yield_now().await;
                    while let Some(more) = tasks.try_join_next() {
                        done.extend(more);
                    }
                    done.sort_by_key(|(id, _)| *id);
                    let now = now();
                    for (id, outcome) in done {
                        running.remove(&id);
                        if notifies.remove(&id) {
                            self.notify_result(&deploy, outcome);
                            continue;
                        }
                        rollout.handle_completion(now, id, outcome);
                    }
                }
                Some(msg) = self.decisions.recv() => match msg {
                    Msg::Decide(decision) => rollout.handle_decision(now(), decision),
                    Msg::Pool(server, depool) => {
                        rollout.handle_pool_request(now(), &server, depool)
                    }
                },
                Some((server, step, update)) = progress_rx.recv() => {
                    self.progress(&deploy, &mut last_progress, server, step, update);
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    rollout.handle_timeout(now());
                }
            }
        }
        self.publish(&deploy, &mut rollout);
        for h in running.values() {
            h.abort();
        }
        // Notifications still on their way get until their own deadline, within the
        // grace the end of a deploy gives them.
        let waited = tokio::time::timeout(NOTIFY_GRACE, async {
            while let Some(done) = tasks.join_next().await {
                if let Ok((id, outcome)) = done {
                    if notifies.remove(&id) {
                        self.notify_result(&deploy, outcome);
                    }
                }
            }
        })
        .await;
        if waited.is_err() && !notifies.is_empty() {
            tasks.abort_all();
            let record = Record {
                ts: (self.clock)(),
                deploy: deploy.to_string(),
                event: Event::Warning {
                    server: None,
                    detail: format!(
                        "{} still posting {}s after the deploy ended: given up (a notifier never holds a deploy longer)",
                        mwdeploy_core::text::count(notifies.len(), "notification"),
                        NOTIFY_GRACE.as_secs()
                    ),
                },
            };
            let _ = self.deliver(&record);
        }
        rollout.report()
    }

    /// Hands every pending event to the subscribers; returns why the deploy must halt,
    /// if a critical subscriber failed.
    fn publish(&mut self, deploy: &str, rollout: &mut Rollout) -> Option<String> {
        let mut halt = None;
        while let Some(event) = rollout.poll_event() {
            let record = Record {
                ts: (self.clock)(),
                deploy: deploy.to_string(),
                event,
            };
            if let Some(why) = self.deliver(&record) {
                halt = halt.or(Some(why));
            }
        }
        halt
    }

    fn deliver(&mut self, record: &Record) -> Option<String> {
        let mut halt = None;
        for s in &mut self.subscribers {
            if let Err(e) = s.record(record) {
                if s.is_critical() && halt.is_none() {
                    halt = Some(e.to_string());
                }
            }
        }
        halt
    }

    /// A notifier's failure is shown and never fails the deploy.
    fn notify_result(&mut self, deploy: &str, outcome: Outcome) {
        if let Outcome::Failed(e) = outcome {
            let record = Record {
                ts: (self.clock)(),
                deploy: deploy.to_string(),
                event: Event::Warning {
                    server: None,
                    detail: format!("notification not delivered: {e}"),
                },
            };
            let _ = self.deliver(&record);
        }
    }

    fn progress(
        &mut self,
        deploy: &str,
        last: &mut HashMap<ServerId, Instant>,
        server: ServerId,
        step: &'static str,
        mut update: ProgressUpdate,
    ) {
        if let Some(answer) = update.pool.take() {
            // A proxy's answer is a record of the journal, never thinned out.
            let record = Record {
                ts: (self.clock)(),
                deploy: deploy.to_string(),
                event: Event::Pool {
                    server: server.clone(),
                    proxy: Some(answer.proxy),
                    backend: Some(answer.backend),
                    action: answer.action,
                    phase: PoolPhase::Result,
                    ok: Some(answer.ok),
                    detail: answer.answer,
                },
            };
            let _ = self.deliver(&record);
            if update.line.is_none() && update.percent.is_none() {
                return;
            }
        }
        let now = now();
        let finished = update.percent.is_some_and(|p| p >= 100.0);
        if let Some(at) = last.get(&server) {
            if now.saturating_duration_since(*at) < PROGRESS_EVERY && !finished {
                return;
            }
        }
        last.insert(server.clone(), now);
        let record = Record {
            ts: (self.clock)(),
            deploy: deploy.to_string(),
            event: Event::Progress {
                server,
                step: step.to_string(),
                percent: update.percent,
                rate: update.rate,
                line: update.line,
            },
        };
        // Progress is never a reason to halt.
        let _ = self.deliver(&record);
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Whether a pool event is an intent (written ahead of the command).
pub fn is_pool_intent(event: &Event) -> bool {
    matches!(
        event,
        Event::Pool {
            phase: PoolPhase::Intent,
            ..
        }
    )
}

type ProgressTx = mpsc::UnboundedSender<(ServerId, &'static str, ProgressUpdate)>;

/// Runs one action against its port.
async fn step(
    ports: Ports,
    servers: Arc<HashMap<ServerId, Server>>,
    staging: Option<Server>,
    action: Action,
    progress_tx: ProgressTx,
) -> Outcome {
    let server = match &action.target {
        Target::Server(id) => servers.get(id).cloned(),
        Target::Staging => staging,
        Target::Fleet => None,
    };
    let name = action.kind.name();
    let progress = |server: &Server| {
        let tx = progress_tx.clone();
        Progress::new(server.id.clone(), name, move |s, _, update| {
            let _ = tx.send((s.clone(), name, update));
        })
    };
    let release = &action.release;
    match (&action.kind, server) {
        (ActionKind::Notify(note), _) => {
            let left = action.deadline.saturating_duration_since(now());
            match tokio::time::timeout(left, ports.notifier.notify(note)).await {
                Ok(r) => r.into(),
                Err(_) => Outcome::Failed(PortError::timeout("notifier ran past its deadline")),
            }
        }
        (ActionKind::QueryPool, None) => ports.pool.states().await.into(),
        (_, None) => Outcome::Failed(PortError::misconfigured(format!(
            "{name} on {}: no such server in the plan",
            action.target
        ))),
        (kind, Some(server)) => {
            let p = progress(&server);
            match kind {
                ActionKind::QueryPool => ports.pool.state(&server).await.into(),
                ActionKind::Copy => ports.transfer.copy(&server, release, &p).await.into(),
                ActionKind::Depool => ports.pool.depool(&server, &p).await.into(),
                ActionKind::Activate => ports.transfer.activate(&server, release, &p).await.into(),
                ActionKind::RunHook(point) => {
                    ports.hooks.run(&server, *point, release, &p).await.into()
                }
                ActionKind::Canary { .. } => ports.health.check(&server, &p).await.into(),
                ActionKind::Rollback => ports.transfer.rollback(&server, &p).await.into(),
                ActionKind::Repool => ports.pool.repool(&server, &p).await.into(),
                ActionKind::RepoolForced => ports.pool.repool_forced(&server, &p).await.into(),
                ActionKind::Bake { window } => {
                    ports.health.watch(&server, *window, &p).await.into()
                }
                ActionKind::Notify(_) => Outcome::Done,
                // An action kind a newer core added and this driver does not run yet.
                other => Outcome::Failed(PortError::misconfigured(format!(
                    "{name}: {other:?} is not an action this driver runs"
                ))),
            }
        }
    }
}
