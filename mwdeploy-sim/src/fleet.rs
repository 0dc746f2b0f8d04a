//! A fake fleet: every port, backed by one in-memory model with seeded faults.
//!
//! The model is stepped in two halves so it serves both the direct simulation and
//! async drivers: [`FleetModel::start`] decides (with the seeded generator) what a step
//! will do and how long it takes; [`FleetModel::finish`] applies it when that time has
//! passed and gives the answer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use async_trait::async_trait;

use crate::faults::Faults;
use crate::rng::Rng;
use mwdeploy_core::action::{ActionKind, Outcome, Target};
use mwdeploy_core::error::PortError;
use mwdeploy_core::model::{Health, HookPoint, Layout, PoolState, ReleaseId, Server, ServerId};
use mwdeploy_core::ports::{
    HealthCheck, Hook, Note, Notifier, PoolControl, Progress, ProgressUpdate, Transfer,
};

/// What a simulated server's live tree serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The release that was live before the deploy.
    Old,
    /// The new release, working.
    New,
    /// The new release, broken: its canary fails.
    Broken,
    /// An in-place copy cut halfway: broken, and nothing to go back to.
    Half,
}

impl Code {
    /// Whether a canary passes on it.
    pub fn healthy(self) -> bool {
        matches!(self, Code::Old | Code::New)
    }
}

#[derive(Debug, Clone)]
struct SimServer {
    id: ServerId,
    pooled: bool,
    pool: PoolState,
    live: Code,
    copied: bool,
    /// The release before the current one, for rollback.
    previous: Option<Code>,
}

/// A step decided by [`FleetModel::start`], applied by [`FleetModel::finish`].
#[derive(Debug, Clone)]
pub struct Planned {
    /// How long the step takes (virtual time).
    pub after: Duration,
    /// `false`: the step never answers.
    pub answers: bool,
    step: Step,
    /// The server it concerns, named in its errors.
    server: Option<ServerId>,
}

#[derive(Debug, Clone)]
enum Step {
    Fail(PortError),
    ReadFleet,
    ReadServer(u32),
    Depool(u32),
    PartialDepool(u32, PortError),
    Repool(u32),
    Copy(u32),
    Activate(u32, bool),
    HalfActivate(u32, PortError),
    Rollback(u32),
    Canary(u32, bool),
    Staging(bool),
    Bake(bool),
    Done,
}

/// The fleet's state and its seeded fault generator.
#[derive(Debug)]
pub struct FleetModel {
    rng: Rng,
    layout: Layout,
    faults: Faults,
    servers: Vec<SimServer>,
    index: HashMap<ServerId, u32>,
    outsiders: Vec<(ServerId, PoolState)>,
    /// Pooled servers of ours that the balancer does not serve.
    out: BTreeSet<u32>,
    reloads: u64,
    /// Outages begun so far ([`Faults::outage`]); each outsider down by one holds the
    /// count it began as.
    outages: u64,
    outage_of: HashMap<usize, u64>,
    staging: Option<ServerId>,
    staging_broken: bool,
    /// Servers whose new release is broken whatever the seed draws.
    broken: BTreeSet<u32>,
    /// Factor on every step's duration (1.0: the durations below).
    pace: f64,
}

/// Virtual durations of each step (before jitter).
const QUERY: Duration = Duration::from_millis(20);
const DRAIN: Duration = Duration::from_millis(800);
const COPY: Duration = Duration::from_secs(8);
const SWITCH: Duration = Duration::from_millis(40);
const HOOK: Duration = Duration::from_secs(2);
const CANARY: Duration = Duration::from_millis(300);
const REPOOL: Duration = Duration::from_millis(400);
const NOTIFY: Duration = Duration::from_millis(100);

impl FleetModel {
    /// A fleet of `servers` (all UP, serving the old release), plus `outsiders`: servers
    /// of the same backend that are not deployed, with their states.
    pub fn new(
        seed: u64,
        layout: Layout,
        faults: Faults,
        servers: &[Server],
        outsiders: Vec<(ServerId, PoolState)>,
        staging: Option<ServerId>,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let staging_broken = rng.chance(faults.staging_fail);
        let servers: Vec<SimServer> = servers
            .iter()
            .map(|s| SimServer {
                id: s.backend_name().clone(),
                pooled: s.pooled,
                pool: PoolState::Up,
                live: Code::Old,
                copied: false,
                previous: None,
            })
            .collect();
        let index = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i as u32))
            .collect();
        FleetModel {
            rng,
            layout,
            faults,
            servers,
            index,
            outsiders,
            out: BTreeSet::new(),
            reloads: 0,
            outages: 0,
            outage_of: HashMap::new(),
            staging,
            staging_broken,
            broken: BTreeSet::new(),
            pace: 1.0,
        }
    }

    /// Scales every step's duration by `factor` (1.0 keeps them; 0.25 makes a copy take
    /// about 2 s instead of 8 s). Bake windows are the plan's and stay as they are.
    ///
    /// For a fleet run in real time (`mwdeploy demo`); the seeded draws do not change.
    ///
    /// ```
    /// use mwdeploy_sim::{Faults, FleetModel};
    /// use mwdeploy_core::{ActionKind, Layout, Server, ServerId, Target};
    /// let mw1 = ServerId::new("mw1").unwrap();
    /// let servers = [Server::new(mw1.clone())];
    /// let mut m = FleetModel::new(1, Layout::Releases, Faults::none(), &servers, vec![], None)
    ///     .with_pace(0.25);
    /// let copy = m.start(&ActionKind::Copy, &Target::Server(mw1));
    /// assert!(copy.after < std::time::Duration::from_secs(3));
    /// ```
    pub fn with_pace(mut self, factor: f64) -> Self {
        assert!(
            factor.is_finite() && factor > 0.0,
            "a pace is a positive factor, not {factor}"
        );
        self.pace = factor;
        self
    }

    /// Makes `server`'s new release broken: every canary on it fails once it is
    /// activated, whatever the seed draws (in the release layout it is rolled back).
    /// Returns `false` if the fleet has no such server.
    pub fn break_release(&mut self, server: &ServerId) -> bool {
        match self.index.get(server) {
            Some(&i) => {
                self.broken.insert(i);
                true
            }
            None => false,
        }
    }

    /// Sets a server's pool state before the deploy (a server already DOWN, say).
    pub fn set_pool(&mut self, server: &ServerId, state: PoolState) {
        if let Some(&i) = self.index.get(server) {
            self.set(i, state);
        }
    }

    /// The index of a server by its balancer name.
    pub fn index_of(&self, server: &ServerId) -> Option<u32> {
        self.index.get(server).copied()
    }

    /// Its pool state.
    pub fn pool(&self, i: u32) -> PoolState {
        self.servers[i as usize].pool
    }

    /// What its live tree serves.
    pub fn live(&self, i: u32) -> Code {
        self.servers[i as usize].live
    }

    /// Whether the new release was copied to it.
    pub fn copied(&self, i: u32) -> bool {
        self.servers[i as usize].copied
    }

    /// Whether it is behind the balancer.
    pub fn pooled(&self, i: u32) -> bool {
        self.servers[i as usize].pooled
    }

    /// Servers of the backend the balancer does not serve, ours and others'.
    pub fn out_of_pool(&self) -> u32 {
        self.out.len() as u32
            + self
                .outsiders
                .iter()
                .filter(|(_, s)| !s.is_serving())
                .count() as u32
    }

    /// How many times the balancer reloaded.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// How many outages ([`Faults::outage`]) began so far.
    pub fn outages(&self) -> u64 {
        self.outages
    }

    /// Servers down now by an outage that began after the first `since` outages.
    pub fn out_by_outage_since(&self, since: u64) -> u32 {
        self.outage_of.values().filter(|&&n| n > since).count() as u32
    }

    /// An outsider UP goes DOWN, or one an outage took down comes back.
    fn outage(&mut self) {
        if self.outsiders.is_empty() {
            return;
        }
        let k = self.rng.below(self.outsiders.len() as u64) as usize;
        let state = &mut self.outsiders[k].1;
        if self.outage_of.remove(&k).is_some() {
            *state = PoolState::Up;
        } else if state.is_serving() {
            *state = PoolState::Down;
            self.outages += 1;
            self.outage_of.insert(k, self.outages);
        }
    }

    /// Our servers the balancer does not serve, in index order.
    pub fn out_servers(&self) -> impl Iterator<Item = (&ServerId, PoolState)> {
        self.out
            .iter()
            .map(|&i| (&self.servers[i as usize].id, self.servers[i as usize].pool))
    }

    fn set(&mut self, i: u32, state: PoolState) {
        let s = &mut self.servers[i as usize];
        s.pool = state;
        if s.pooled && !state.is_serving() {
            self.out.insert(i);
        } else {
            self.out.remove(&i);
        }
    }

    fn jitter(&mut self, base: Duration) -> Duration {
        // +-20%, and ten times as long when slow.
        let f = 0.8 + 0.4 * self.rng.unit();
        let mut d = base.mul_f64(f);
        if self.rng.chance(self.faults.slow) {
            d *= 10;
        }
        // Whole milliseconds: tokio's timers tick in milliseconds, and a driver under a
        // paused tokio clock must see exactly the times the direct simulation sees.
        Duration::from_millis((d.as_millis() as u64).max(1))
    }

    /// Decides what `kind` on `target` will do. `bake` steps take their window.
    pub fn start(&mut self, kind: &ActionKind, target: &Target) -> Planned {
        if self.rng.chance(self.faults.reload) {
            self.reload();
        }
        if self.rng.chance(self.faults.outage) {
            self.outage();
        }
        let hang = !matches!(kind, ActionKind::Notify(_)) && self.rng.chance(self.faults.hang);
        let i = match target {
            Target::Server(id) => self.index.get(id).copied(),
            _ => None,
        };
        if matches!(target, Target::Server(_)) && i.is_none() {
            // What HAProxy answers, with exit status 0, for a name it does not know.
            let step = Step::Fail(PortError::permanent("No such server.").on_proxy("lb1"));
            return Planned {
                after: QUERY,
                answers: true,
                step,
                server: None,
            };
        }
        let f = self.faults.clone();
        let unreachable = |rng: &mut Rng| {
            rng.chance(f.proxy_down)
                .then(|| PortError::transient("connection refused").on_proxy("lb2"))
        };
        let (base, step) = match (kind, i) {
            (ActionKind::QueryPool, None) => match unreachable(&mut self.rng) {
                Some(e) => (QUERY, Step::Fail(e)),
                None => (QUERY, Step::ReadFleet),
            },
            (ActionKind::QueryPool, Some(i)) => match unreachable(&mut self.rng) {
                Some(e) => (QUERY, Step::Fail(e)),
                None => (QUERY, Step::ReadServer(i)),
            },
            (ActionKind::Depool, Some(i)) => match unreachable(&mut self.rng) {
                // The first proxy took it, the second could not be reached.
                Some(e) if self.rng.chance(0.5) => (DRAIN, Step::PartialDepool(i, e)),
                Some(e) => (DRAIN, Step::Fail(e)),
                None => (DRAIN, Step::Depool(i)),
            },
            (ActionKind::Repool | ActionKind::RepoolForced, Some(i)) => {
                match unreachable(&mut self.rng) {
                    Some(e) => (REPOOL, Step::Fail(e)),
                    None => (REPOOL, Step::Repool(i)),
                }
            }
            (ActionKind::Copy, Some(i)) => {
                if self.rng.chance(f.transfer_fail) {
                    (
                        COPY,
                        Step::Fail(PortError::transient(
                            "rsync: connection unexpectedly closed (code 12)",
                        )),
                    )
                } else {
                    (COPY, Step::Copy(i))
                }
            }
            (ActionKind::Activate, Some(i)) => {
                let inplace = self.layout == Layout::Inplace;
                let base = if inplace { COPY } else { SWITCH };
                if inplace && self.rng.chance(f.transfer_fail) {
                    let e = PortError::transient("rsync: connection unexpectedly closed (code 12)");
                    (base, Step::HalfActivate(i, e))
                } else {
                    // Drawn first, so that a forced break leaves the seed's stream as it was.
                    let broken = self.rng.chance(f.canary_fail) || self.broken.contains(&i);
                    (base, Step::Activate(i, broken))
                }
            }
            (ActionKind::Rollback, Some(i)) => {
                if self.rng.chance(f.rollback_fail) {
                    (
                        SWITCH,
                        Step::Fail(PortError::permanent("no previous release to switch to")),
                    )
                } else {
                    (SWITCH, Step::Rollback(i))
                }
            }
            (ActionKind::RunHook(point), Some(_)) => {
                if self.rng.chance(f.hook_fail) {
                    let e = PortError::permanent(format!(
                        "{point}: php-fpm reload exited with status 1"
                    ));
                    (HOOK, Step::Fail(e))
                } else {
                    (HOOK, Step::Done)
                }
            }
            (ActionKind::Canary { .. }, Some(i)) => {
                let flap = self.rng.chance(f.flap);
                (CANARY, Step::Canary(i, flap))
            }
            (ActionKind::Canary { .. }, None) => (CANARY, Step::Staging(self.staging_broken)),
            (ActionKind::Bake { window }, _) => {
                let fail = self.rng.chance(f.gate_fail);
                (*window, Step::Bake(fail))
            }
            (ActionKind::Notify(_), _) => (NOTIFY, Step::Done),
            (kind, _) => (
                QUERY,
                Step::Fail(PortError::misconfigured(format!(
                    "{} on {target} is not a step of this fleet",
                    kind.name()
                ))),
            ),
        };
        let base = match kind {
            ActionKind::Bake { .. } => base,
            _ if self.pace != 1.0 => base.mul_f64(self.pace),
            _ => base,
        };
        let after = self.jitter(base);
        let server = match target {
            Target::Server(id) => Some(id.clone()),
            _ => None,
        };
        Planned {
            after,
            answers: !hang,
            step,
            server,
        }
    }

    /// Applies a step decided by [`FleetModel::start`] and gives its answer.
    pub fn finish(&mut self, planned: Planned) -> Outcome {
        match (self.apply(planned.step), planned.server) {
            (Outcome::Failed(e), Some(server)) if e.server.is_none() => {
                Outcome::Failed(e.for_server(&server))
            }
            (outcome, _) => outcome,
        }
    }

    fn apply(&mut self, step: Step) -> Outcome {
        match step {
            Step::Fail(e) => Outcome::Failed(e),
            Step::ReadFleet => {
                let mut v: Vec<(ServerId, PoolState)> = self
                    .servers
                    .iter()
                    .filter(|s| s.pooled)
                    .map(|s| (s.id.clone(), s.pool))
                    .collect();
                v.extend(self.outsiders.iter().cloned());
                Outcome::Pool(v)
            }
            Step::ReadServer(i) => Outcome::State(self.pool(i)),
            Step::Depool(i) => {
                self.set(i, PoolState::Maint);
                Outcome::Done
            }
            Step::PartialDepool(i, e) => {
                self.set(i, PoolState::Maint);
                Outcome::Failed(e)
            }
            Step::Repool(i) => {
                self.set(i, PoolState::Up);
                Outcome::Done
            }
            Step::Copy(i) => {
                self.servers[i as usize].copied = true;
                Outcome::Done
            }
            Step::Activate(i, broken) => {
                let s = &mut self.servers[i as usize];
                s.previous = Some(s.live);
                s.live = if broken { Code::Broken } else { Code::New };
                Outcome::Done
            }
            Step::HalfActivate(i, e) => {
                self.servers[i as usize].live = Code::Half;
                Outcome::Failed(e)
            }
            Step::Rollback(i) => {
                let s = &mut self.servers[i as usize];
                match s.previous.take() {
                    Some(prev) => {
                        s.live = prev;
                        Outcome::RolledBackTo(
                            ReleaseId::parse("20230101T000000Z-old").expect("valid id"),
                        )
                    }
                    None => {
                        Outcome::Failed(PortError::permanent("no previous release to switch to"))
                    }
                }
            }
            Step::Canary(i, flap) => {
                let live = self.servers[i as usize].live;
                if !live.healthy() {
                    Outcome::Health(Health::Unhealthy {
                        reason: "HTTP 500, body lacks \"wikioasis\"".into(),
                        status: Some(500),
                    })
                } else if flap {
                    Outcome::Health(Health::Unhealthy {
                        reason: "curl: (28) Operation timed out".into(),
                        status: None,
                    })
                } else {
                    Outcome::Health(Health::Healthy)
                }
            }
            Step::Staging(broken) => Outcome::Health(if broken {
                Health::Unhealthy {
                    reason: "HTTP 503 on staging".into(),
                    status: Some(503),
                }
            } else {
                Health::Healthy
            }),
            Step::Bake(fail) => Outcome::Health(if fail {
                Health::unhealthy("14 lines matching \"PHP (Fatal|Warning)\" in 20s")
            } else {
                Health::Healthy
            }),
            Step::Done => Outcome::Done,
        }
    }

    /// The balancer reloads: runtime maintenance is forgotten, every server comes back UP.
    pub fn reload(&mut self) {
        self.reloads += 1;
        let out: Vec<u32> = self.out.iter().copied().collect();
        for i in out {
            if self.servers[i as usize].pool == PoolState::Maint
                || self.servers[i as usize].pool == PoolState::Drain
            {
                self.set(i, PoolState::Up);
            }
        }
    }

    fn is_staging(&self, server: &Server) -> bool {
        self.staging.as_ref() == Some(&server.id)
    }
}

/// The fake fleet as ports, for drivers: one shared model behind every port.
///
/// Steps take their virtual duration with `tokio::time::sleep`, so a paused tokio clock
/// runs them instantly and exactly; a hanging step never returns.
#[derive(Debug, Clone)]
pub struct SimFleet {
    model: Arc<Mutex<FleetModel>>,
    /// Report a transfer's progress this often (off: `None`).
    progress_every: Option<Duration>,
}

impl SimFleet {
    /// Wraps `model`.
    pub fn new(model: FleetModel) -> Self {
        SimFleet {
            model: Arc::new(Mutex::new(model)),
            progress_every: None,
        }
    }

    /// Reports progress while a transfer runs (a copy, and an in-place activate): the
    /// percentage done every `every`, then 100%, as rsync's progress would be.
    ///
    /// Off by default: its sleeps are sliced, so under a paused tokio clock a step may
    /// end a few milliseconds off the direct simulation's instant. For real time
    /// (`mwdeploy demo`), where the progress is what a dashboard shows.
    pub fn with_progress(mut self, every: Duration) -> Self {
        assert!(!every.is_zero(), "progress needs an interval above zero");
        self.progress_every = Some(every);
        self
    }

    /// Reads or changes the model.
    pub fn with<R>(&self, f: impl FnOnce(&mut FleetModel) -> R) -> R {
        let mut m = self.model.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut m)
    }

    async fn step(&self, kind: ActionKind, target: Target) -> Outcome {
        self.step_reporting(kind, target, None).await
    }

    /// A step that reports its progress on `progress` when [`SimFleet::with_progress`]
    /// turned that on.
    async fn step_reporting(
        &self,
        kind: ActionKind,
        target: Target,
        progress: Option<&Progress>,
    ) -> Outcome {
        let planned = self.with(|m| m.start(&kind, &target));
        if !planned.answers {
            std::future::pending::<()>().await;
        }
        match (progress, self.progress_every) {
            (Some(p), Some(every)) => {
                let start = Instant::now();
                let end = start + planned.after;
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    // Tenths of a percent, as rsync shows whole ones.
                    let done = (now - start).as_secs_f64() / planned.after.as_secs_f64();
                    p.report(ProgressUpdate::percent(
                        ((done * 1000.0).round() / 10.0) as f32,
                    ));
                    tokio::time::sleep_until(end.min(now + every)).await;
                }
                p.report(ProgressUpdate::percent(100.0));
            }
            _ => tokio::time::sleep(planned.after).await,
        }
        self.with(|m| m.finish(planned))
    }

    fn target(&self, server: &Server) -> Target {
        if self.with(|m| m.is_staging(server)) {
            Target::Staging
        } else {
            Target::Server(server.id.clone())
        }
    }
}

fn unit(o: Outcome) -> Result<(), PortError> {
    match o {
        Outcome::Failed(e) => Err(e),
        _ => Ok(()),
    }
}

fn health(o: Outcome) -> Health {
    match o {
        Outcome::Health(h) => h,
        Outcome::Failed(e) => Health::unhealthy(e.to_string()),
        other => Health::Unknown {
            reason: format!("unexpected answer {other:?}"),
        },
    }
}

#[async_trait]
impl PoolControl for SimFleet {
    async fn depool(&self, server: &Server, _progress: &Progress) -> Result<(), PortError> {
        unit(self.step(ActionKind::Depool, self.target(server)).await)
    }

    async fn repool(&self, server: &Server, _progress: &Progress) -> Result<(), PortError> {
        unit(self.step(ActionKind::Repool, self.target(server)).await)
    }

    async fn state(&self, server: &Server) -> Result<PoolState, PortError> {
        match self.step(ActionKind::QueryPool, self.target(server)).await {
            Outcome::State(s) => Ok(s),
            Outcome::Failed(e) => Err(e),
            other => Err(PortError::permanent(format!("unexpected answer {other:?}"))),
        }
    }

    async fn states(&self) -> Result<Vec<(ServerId, PoolState)>, PortError> {
        match self.step(ActionKind::QueryPool, Target::Fleet).await {
            Outcome::Pool(v) => Ok(v),
            Outcome::Failed(e) => Err(e),
            other => Err(PortError::permanent(format!("unexpected answer {other:?}"))),
        }
    }
}

#[async_trait]
impl Transfer for SimFleet {
    async fn copy(
        &self,
        server: &Server,
        _release: &ReleaseId,
        p: &Progress,
    ) -> Result<(), PortError> {
        let step = self.step_reporting(ActionKind::Copy, self.target(server), Some(p));
        unit(step.await)
    }

    async fn activate(
        &self,
        server: &Server,
        _release: &ReleaseId,
        p: &Progress,
    ) -> Result<(), PortError> {
        // In place, the activate is the transfer; a release switch is too short to show.
        let inplace = self.with(|m| m.layout == Layout::Inplace);
        let p = inplace.then_some(p);
        unit(
            self.step_reporting(ActionKind::Activate, self.target(server), p)
                .await,
        )
    }

    async fn rollback(&self, server: &Server, _p: &Progress) -> Result<ReleaseId, PortError> {
        match self.step(ActionKind::Rollback, self.target(server)).await {
            Outcome::RolledBackTo(r) => Ok(r),
            Outcome::Failed(e) => Err(e),
            other => Err(PortError::permanent(format!("unexpected answer {other:?}"))),
        }
    }

    fn can_rollback(&self) -> bool {
        self.with(|m| m.layout == Layout::Releases)
    }
}

#[async_trait]
impl HealthCheck for SimFleet {
    async fn check(&self, server: &Server, _p: &Progress) -> Health {
        health(
            self.step(ActionKind::Canary { attempt: 1 }, self.target(server))
                .await,
        )
    }

    async fn watch(&self, server: &Server, window: Duration, _p: &Progress) -> Health {
        health(
            self.step(ActionKind::Bake { window }, self.target(server))
                .await,
        )
    }
}

#[async_trait]
impl Hook for SimFleet {
    async fn run(
        &self,
        server: &Server,
        point: HookPoint,
        _r: &ReleaseId,
        _p: &Progress,
    ) -> Result<(), PortError> {
        unit(
            self.step(ActionKind::RunHook(point), self.target(server))
                .await,
        )
    }
}

#[async_trait]
impl Notifier for SimFleet {
    async fn notify(&self, note: &Note) -> Result<(), PortError> {
        // Notifications never touch the fleet, nor its random choices: a run with or
        // without a notifier draws the same faults.
        let _ = note;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(layout: Layout) -> (FleetModel, Vec<ServerId>) {
        let ids: Vec<ServerId> = ["mw1", "mw2"]
            .iter()
            .map(|n| ServerId::new(n).unwrap())
            .collect();
        let servers: Vec<Server> = ids.iter().cloned().map(Server::new).collect();
        let model = FleetModel::new(7, layout, Faults::none(), &servers, Vec::new(), None);
        (model, ids)
    }

    fn run(m: &mut FleetModel, kind: ActionKind, id: &ServerId) -> (Duration, Outcome) {
        let p = m.start(&kind, &Target::Server(id.clone()));
        (p.after, m.finish(p))
    }

    fn canary(m: &mut FleetModel, id: &ServerId) -> bool {
        let (_, o) = run(m, ActionKind::Canary { attempt: 1 }, id);
        matches!(o, Outcome::Health(Health::Healthy))
    }

    #[test]
    fn a_broken_release_fails_only_its_server_and_rolls_back() {
        let (mut m, ids) = fleet(Layout::Releases);
        assert!(m.break_release(&ids[1]));
        assert!(!m.break_release(&ServerId::new("mw9").unwrap()));
        for id in &ids {
            run(&mut m, ActionKind::Copy, id);
            run(&mut m, ActionKind::Activate, id);
        }
        assert!(canary(&mut m, &ids[0]));
        assert!(!canary(&mut m, &ids[1]));
        assert_eq!(m.live(1), Code::Broken);
        let (_, o) = run(&mut m, ActionKind::Rollback, &ids[1]);
        assert!(matches!(o, Outcome::RolledBackTo(_)), "{o:?}");
        assert!(canary(&mut m, &ids[1]));
    }

    #[test]
    fn a_broken_release_leaves_the_seeded_draws_as_they_were() {
        let steps = |m: &mut FleetModel, ids: &[ServerId]| -> Vec<Duration> {
            ids.iter()
                .flat_map(|id| {
                    [ActionKind::Copy, ActionKind::Activate]
                        .map(|k| run(m, k, id).0)
                        .to_vec()
                })
                .collect()
        };
        let (mut plain, ids) = fleet(Layout::Releases);
        let (mut broken, _) = fleet(Layout::Releases);
        broken.break_release(&ids[0]);
        assert_eq!(steps(&mut plain, &ids), steps(&mut broken, &ids));
    }

    #[test]
    fn a_pace_scales_step_durations() {
        let (mut normal, ids) = fleet(Layout::Releases);
        let (fast, _) = fleet(Layout::Releases);
        let mut fast = fast.with_pace(0.25);
        let (slow_copy, _) = run(&mut normal, ActionKind::Copy, &ids[0]);
        let (fast_copy, _) = run(&mut fast, ActionKind::Copy, &ids[0]);
        // The same jitter drawn from the same seed, on a quarter of the base.
        let ratio = fast_copy.as_secs_f64() / slow_copy.as_secs_f64();
        assert!(
            (0.24..=0.26).contains(&ratio),
            "{fast_copy:?} vs {slow_copy:?}"
        );
        // A bake window is the plan's: not scaled.
        let window = Duration::from_secs(10);
        let bake = fast.start(
            &ActionKind::Bake { window },
            &Target::Server(ids[0].clone()),
        );
        assert!(bake.after >= Duration::from_secs(8), "{:?}", bake.after);
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_reports_its_progress_up_to_100_percent() {
        let (model, ids) = fleet(Layout::Releases);
        let sim = SimFleet::new(model).with_progress(Duration::from_millis(500));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let p = Progress::new(ids[0].clone(), "copy", move |_, _, u| {
            sink.lock().unwrap().push(u.percent.unwrap());
        });
        let server = Server::new(ids[0].clone());
        let release = ReleaseId::parse("20260101T000000Z-a").unwrap();
        sim.copy(&server, &release, &p).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        // About 8 s in steps of 0.5 s.
        assert!(seen.len() > 10, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&100.0));
        assert!(sim.with(|m| m.copied(0)));
        // Without with_progress, nothing is reported.
        let (model, _) = fleet(Layout::Releases);
        let quiet = SimFleet::new(model);
        let count = Arc::new(Mutex::new(0));
        let c = count.clone();
        let p = Progress::new(ids[0].clone(), "copy", move |_, _, _| {
            *c.lock().unwrap() += 1
        });
        quiet.copy(&server, &release, &p).await.unwrap();
        assert_eq!(*count.lock().unwrap(), 0);
    }
}
