//! The sans-IO rollout machine.
//!
//! [`Rollout`] decides, for every server, what happens next. It does no IO, reads no
//! clock and starts no thread: time comes in as an argument, ports' answers come in
//! through [`Rollout::handle_completion`], the operator's through
//! [`Rollout::handle_decision`]. Same inputs, same outputs.
//!
//! # The run loop
//!
//! ```text
//! let mut r = Rollout::new(plan, now)?;
//! loop {
//!     while let Some(ev) = r.poll_event() { journal(ev) }      // events first: pool intents
//!     while let Some(a) = r.poll_action() { start(a) }         //   are written ahead
//!     if r.is_finished() { break }
//!     wait for: a completion, a decision, or r.poll_timeout()
//!     r.handle_completion(now, id, outcome) | r.handle_decision(now, d) | r.handle_timeout(now)
//! }
//! ```
//!
//! After every `handle_*` call, drain `poll_event` and then `poll_action`. Each action
//! carries a deadline; the machine times it out on its own when the deadline passes
//! (through `handle_timeout`), and a late completion is then ignored.
//!
//! The work done per call does not depend on the size of the fleet: servers wait in
//! queues, counters replace scans, timers sit in a heap.

mod cycle;
mod manual;
mod prep;
mod room;
mod schedule;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::action::{Action, ActionId, ActionKind, Decision, Outcome, StopReason, Target};
use crate::error::PlanError;
use crate::event::{Event, ServerStatus, Summary, Verdict};
use crate::model::{Health, HookPoint, ReleaseId, ServerId};
use crate::plan::Plan;
use crate::ports::Note;

/// Where a server is in its cycle: the step running or awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Pending,
    Copy,
    PostCopy,
    /// Copied (or, in place, started): waiting for room under `max_unavailable`.
    Ready,
    PreDepool,
    Depool,
    VerifyOut,
    Activate,
    PostActivate,
    Canary,
    CanaryPause,
    VerifyIn,
    Repool,
    PostRepool,
    Bake,
    /// The error gate failed: waiting for room to take it out again.
    GateReady,
    GateDepool,
    Rollback,
    /// Depool was not confirmed: put it back as it was.
    Restore,
    Final,
    /// The operator's pool menu, once the server's cycle is over (it stays final).
    ManualDepool,
    ManualCanary,
    ManualCanaryPause,
    ManualRepool,
}

impl Step {
    /// Whether the server's cycle is over (a manual pool step may run after it).
    fn is_final(self) -> bool {
        matches!(
            self,
            Step::Final
                | Step::ManualDepool
                | Step::ManualCanary
                | Step::ManualCanaryPause
                | Step::ManualRepool
        )
    }
}

/// Why a server is on its way back: it changes the state it ends in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Deploying the new release.
    Forward,
    /// The new release failed; the previous one is live again.
    RolledBack,
    /// Something failed before the new release went live (release layout: the old release
    /// is still live): it goes back after its canary, but counts as failed.
    Failed,
    /// `--force` pushed it through a failing canary.
    Warned,
}

#[derive(Debug, Clone)]
struct Slot {
    stage: u32,
    step: Step,
    mode: Mode,
    status: ServerStatus,
    /// Counted in `Rollout::out` (it is, or may be, out of the pool because of us).
    out: bool,
    /// It was out of the pool before the deploy (forced through): never depooled or repooled.
    pre_out: bool,
    /// The operator took it out (pool menu): it holds room until put back.
    manual_out: bool,
    /// In `kept_out`: failed and kept out, or out before a forced deploy. It holds room
    /// for the rest of the deploy, unless the operator puts it back (pool menu).
    kept: bool,
    /// Its `pre_depool` hook ran: a depool that waits for room again does not rerun it.
    hooked: bool,
    activated: bool,
    attempt: u32,
    verify_tries: u8,
    /// Transfers tried again after a transient failure.
    retries: u32,
    /// Repools sent again after a transient failure.
    pool_retries: u32,
    /// The release live again after a rollback, when the transfer said which.
    rolled_back_to: Option<ReleaseId>,
    action: Option<ActionId>,
    /// Why it failed, kept for the final state's detail.
    why: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Deadline(ActionId),
    CanaryRetry(u32),
    ManualRetry(u32),
    StagingRetry,
    StageBake(u32),
    Prompt(u64),
    /// Read the pool again: servers out for other reasons left no room.
    RoomRetry,
}

/// The pool read before a depool (`Policy::reread_pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    /// None since the last depool: read before the next.
    Stale,
    Reading,
    /// Read just now: good for the schedule that follows it only.
    Fresh,
    /// Read, no room: read again at `Timer::RoomRetry`.
    Waiting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Staging,
    Preflight,
    Running,
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PromptKind {
    Failure,
    Stage(u32),
}

#[derive(Debug, Clone)]
struct OpenPrompt {
    seq: u64,
    kind: PromptKind,
    question: String,
}

/// What stands between the end of one stage and the start of the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Open,
    Bake(u32),
    Approval(u32),
}

/// A read-only view of the machine, cheap to take.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// 1-based current stage (0 before the first).
    pub stage: u32,
    /// Number of stages.
    pub stages: u32,
    /// Servers started and not yet final.
    pub in_flight: u32,
    /// Servers counted out of the pool (ours, failed ones kept out, others already out).
    pub out_of_pool: u32,
    /// The most that were out at once.
    pub max_out_of_pool: u32,
    /// Failures so far (failed and rolled back).
    pub failures: u32,
    /// Failures tolerated now (grows by one with each "yes" at a failure prompt).
    pub budget: u32,
    /// Whether new servers are held.
    pub paused: bool,
    /// Why the deploy is stopping, if it is.
    pub stopping: Option<StopReason>,
    /// The open prompt's question.
    pub prompt: Option<String>,
    /// Counts by final state so far.
    pub summary: Summary,
}

/// How a deploy ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// Counts by final state; each server counted once.
    pub summary: Summary,
    /// Why it was refused before touching production, if it was.
    pub refused: Option<String>,
    /// Why it stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// Servers left out of the pool, with why: every one of them is reported here.
    pub left_out: Vec<(ServerId, String)>,
    /// The most servers out of the pool at once (as the machine counted them).
    pub max_out_of_pool: u32,
    /// From `Rollout::new` to the last completion.
    pub duration: Duration,
    /// How it ended, as a whole.
    pub verdict: Verdict,
}

/// The rollout state machine. See the [module docs](self) for the run loop.
///
/// ```
/// use std::time::{Instant, UNIX_EPOCH};
/// use mwdeploy_core::{Plan, Rollout, Server, ServerId, ReleaseId, Layout, Outcome, ActionKind, PoolState};
///
/// let servers = vec![Server::new(ServerId::new("mw1").unwrap())];
/// let mut plan = Plan::new("d1", ReleaseId::at(UNIX_EPOCH, "a").unwrap(), Layout::Inplace, servers);
/// plan.preflight = false;
/// let now = Instant::now();
/// let mut r = Rollout::new(plan, now).unwrap();
/// // Answer every action with success (canaries healthy).
/// while !r.is_finished() {
///     while r.poll_event().is_some() {}
///     let a = r.poll_action().expect("the machine waits only on actions here");
///     let outcome = match a.kind {
///         ActionKind::Canary { .. } => Outcome::Health(mwdeploy_core::Health::Healthy),
///         ActionKind::QueryPool => Outcome::State(PoolState::Maint),
///         _ => Outcome::Done,
///     };
///     r.handle_completion(now, a.id, outcome);
/// }
/// assert_eq!(r.report().summary.succeeded, 1);
/// ```
#[derive(Debug)]
pub struct Rollout {
    plan: Plan,
    stages: Vec<Vec<u32>>,
    slots: Vec<Slot>,
    /// Balancer name -> slot, to read pool answers.
    by_backend_name: HashMap<ServerId, u32>,
    failures: u32,
    budget: u32,
    paused: bool,
    stopping: Option<StopReason>,
    prompt: Option<OpenPrompt>,
    refused: Option<String>,
    summary: Summary,
    finals: usize,
    started_at: Instant,
    last_at: Instant,
    /// What the machine owes its driver: actions and events to poll, timers.
    queue: Queue,
    /// Where the deploy is: phase, stage, the servers ready to start.
    course: Course,
    /// Rule 1's accounting: servers out of the pool, and the room to take another.
    capacity: Capacity,
}

/// What the machine owes its driver: actions to poll, events to poll, timers.
#[derive(Debug)]
struct Queue {
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Outstanding actions -> the slot they concern (`None`: staging or fleet) and their name.
    inflight: HashMap<ActionId, (Option<u32>, &'static str)>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    next_action: u64,
}

/// Where the deploy is: its phase, its stage, the servers ready to start.
#[derive(Debug)]
struct Course {
    phase: Phase,
    staging_attempt: u32,
    /// Index of the current stage.
    stage: usize,
    /// Next server of the current stage to start.
    cursor: usize,
    /// Servers of the current stage not yet final.
    stage_left: usize,
    gate: Gate,
    ready: VecDeque<u32>,
    gate_ready: VecDeque<u32>,
    in_flight: u32,
}

/// Rule 1's accounting: every server out of the pool for any reason, and the room to
/// take one more.
#[derive(Debug)]
struct Capacity {
    out: u32,
    max_out: u32,
    /// Slots holding an `out` count that they will give back (not kept out for good).
    held: u32,
    /// Manual pool steps under way.
    manual: u32,
    kept_out: Vec<(ServerId, String)>,
    /// Out of the pool at the preflight, not ours: counted in `out` already.
    outsiders: HashSet<ServerId>,
    /// `Policy::reread_pool`: where the read before the next depool is.
    room: Room,
    /// What the last such read showed out that `out` does not count ("mw3 DOWN").
    extra: Vec<String>,
    /// Since when servers ready to be depooled wait for `extra` to come back.
    room_since: Option<Instant>,
}

impl Rollout {
    /// Checks `plan` and prepares the machine; nothing happens until the first poll.
    pub fn new(plan: Plan, now: Instant) -> Result<Rollout, PlanError> {
        let stages = plan.stages()?;
        let mut slots = vec![
            Slot {
                stage: 0,
                step: Step::Pending,
                mode: Mode::Forward,
                status: ServerStatus::Pending,
                out: false,
                pre_out: false,
                manual_out: false,
                kept: false,
                hooked: false,
                activated: false,
                attempt: 0,
                verify_tries: 0,
                retries: 0,
                pool_retries: 0,
                rolled_back_to: None,
                action: None,
                why: None,
            };
            plan.servers.len()
        ];
        for (k, stage) in stages.iter().enumerate() {
            for &i in stage {
                slots[i as usize].stage = k as u32;
            }
        }
        let by_backend_name = plan
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.backend_name().clone(), i as u32))
            .collect();
        let budget = plan.policy.failure_budget.resolve(plan.servers.len());
        let mut r = Rollout {
            stages,
            slots,
            by_backend_name,
            failures: 0,
            budget,
            paused: false,
            stopping: None,
            prompt: None,
            refused: None,
            summary: Summary::default(),
            finals: 0,
            started_at: now,
            last_at: now,
            plan,
            queue: Queue {
                actions: VecDeque::new(),
                events: VecDeque::new(),
                inflight: HashMap::new(),
                timers: BinaryHeap::new(),
                timer_seq: 0,
                next_action: 0,
            },
            course: Course {
                phase: Phase::Staging,
                staging_attempt: 0,
                stage: 0,
                cursor: 0,
                stage_left: 0,
                gate: Gate::Open,
                ready: VecDeque::new(),
                gate_ready: VecDeque::new(),
                in_flight: 0,
            },
            capacity: Capacity {
                out: 0,
                max_out: 0,
                held: 0,
                manual: 0,
                kept_out: Vec::new(),
                outsiders: HashSet::new(),
                room: Room::Stale,
                extra: Vec::new(),
                room_since: None,
            },
        };
        r.queue.events.push_back(Event::started(&r.plan));
        r.notify(
            now,
            Note::Started {
                deploy: r.plan.deploy_id.clone(),
                servers: r.plan.servers.len(),
            },
        );
        r.begin(now);
        Ok(r)
    }

    /// The plan this machine runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The next action to run, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.queue.actions.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.queue.events.pop_front()
    }

    /// When [`Rollout::handle_timeout`] should be called next, if ever.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop timers that no longer matter so the driver does not wake for nothing.
        while let Some(Reverse((at, _, timer))) = self.queue.timers.peek().copied() {
            if self.timer_live(timer) {
                return Some(at);
            }
            self.queue.timers.pop();
        }
        None
    }

    /// Whether the machine still waits for the answer to action `id` (it stops waiting
    /// when the action's deadline passes; a driver then cancels the step).
    pub fn is_waiting_for(&self, id: ActionId) -> bool {
        self.queue.inflight.contains_key(&id)
    }

    /// Whether the deploy has ended (every server final, the last event queued).
    pub fn is_finished(&self) -> bool {
        self.course.phase == Phase::Finished
    }

    /// A port finished the action `id`. Unknown or already timed-out ids are ignored.
    pub fn handle_completion(&mut self, now: Instant, id: ActionId, outcome: Outcome) {
        self.touch(now);
        let Some((slot, _)) = self.queue.inflight.remove(&id) else {
            return;
        };
        match slot {
            None => self.fleet_completion(now, outcome),
            Some(i) => {
                if self.slots[i as usize].action != Some(id) {
                    return;
                }
                self.slots[i as usize].action = None;
                self.server_completion(now, i, outcome);
            }
        }
        self.schedule(now);
    }

    /// The operator decided something. A stray answer (no prompt open) is ignored.
    pub fn handle_decision(&mut self, now: Instant, decision: Decision) {
        self.touch(now);
        match decision {
            Decision::Answer(yes) => self.answer(now, if yes { "yes" } else { "no" }, yes),
            Decision::Pause => self.paused = true,
            Decision::Resume => self.paused = false,
            Decision::Stop(reason) => {
                let detail = match reason {
                    StopReason::Interrupted => "interrupted by a signal",
                    _ => "the operator asked to stop",
                };
                self.stop(now, reason, detail.into());
            }
            Decision::Abort => {
                self.stop(now, StopReason::Operator, "the operator aborted".into());
            }
        }
        self.schedule(now);
    }

    /// The operator asks to take `server` out of the pool (`depool`) or to put it back
    /// (its canary first). Only a server whose cycle is over, within `max_unavailable`; a
    /// request that cannot be done is a warning event. The deploy ends after the change.
    pub fn handle_pool_request(&mut self, now: Instant, server: &ServerId, depool: bool) {
        self.touch(now);
        self.manual_pool(now, server, depool);
        self.schedule(now);
    }

    /// Time passed: fires every timer due at `now`. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _, timer))) = self.queue.timers.peek().copied() {
            if at > now {
                break;
            }
            self.queue.timers.pop();
            if !self.timer_live(timer) {
                continue;
            }
            self.touch(now.max(self.last_at));
            self.fire(now, timer);
        }
        self.schedule(now);
    }

    /// A view of the counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            stage: if self.course.phase == Phase::Running || self.course.phase == Phase::Finished {
                self.course.stage as u32 + 1
            } else {
                0
            },
            stages: self.stages.len() as u32,
            in_flight: self.course.in_flight,
            out_of_pool: self.capacity.out,
            max_out_of_pool: self.capacity.max_out,
            failures: self.failures,
            budget: self.budget,
            paused: self.paused,
            stopping: self.stopping,
            prompt: self.prompt.as_ref().map(|p| p.question.clone()),
            summary: self.summary,
        }
    }

    /// A server's current state.
    pub fn server_status(&self, server: &ServerId) -> Option<ServerStatus> {
        let i = self.plan.servers.iter().position(|s| &s.id == server)?;
        Some(self.slots[i].status)
    }

    /// Every server with its current state, in plan order.
    pub fn statuses(&self) -> impl Iterator<Item = (&ServerId, ServerStatus)> {
        self.plan
            .servers
            .iter()
            .zip(&self.slots)
            .map(|(s, slot)| (&s.id, slot.status))
    }

    /// How the deploy ended (or stands, if it has not ended).
    pub fn report(&self) -> Report {
        Report {
            summary: self.summary,
            refused: self.refused.clone(),
            stopped: self.stopping,
            left_out: self.capacity.kept_out.clone(),
            max_out_of_pool: self.capacity.max_out,
            duration: self.last_at.saturating_duration_since(self.started_at),
            verdict: self.verdict(),
        }
    }

    fn verdict(&self) -> Verdict {
        match self.stopping {
            _ if self.refused.is_some() => Verdict::Refused,
            Some(StopReason::Interrupted) => Verdict::Interrupted,
            Some(reason) => Verdict::Stopped(reason),
            None if self.summary.failed + self.summary.rolled_back + self.summary.skipped > 0 => {
                Verdict::Failed
            }
            None => Verdict::Done,
        }
    }

    // ---- plumbing -------------------------------------------------------------------

    fn touch(&mut self, now: Instant) {
        if now > self.last_at {
            self.last_at = now;
        }
    }

    fn timer(&mut self, at: Instant, timer: Timer) {
        self.queue.timer_seq += 1;
        self.queue
            .timers
            .push(Reverse((at, self.queue.timer_seq, timer)));
    }

    fn timer_live(&self, timer: Timer) -> bool {
        match timer {
            Timer::Deadline(id) => self.queue.inflight.contains_key(&id),
            Timer::CanaryRetry(i) => self.slots[i as usize].step == Step::CanaryPause,
            Timer::ManualRetry(i) => self.slots[i as usize].step == Step::ManualCanaryPause,
            Timer::StagingRetry => {
                self.course.phase == Phase::Staging && self.course.staging_attempt > 0
            }
            Timer::StageBake(k) => self.course.gate == Gate::Bake(k),
            Timer::Prompt(seq) => self.prompt.as_ref().is_some_and(|p| p.seq == seq),
            Timer::RoomRetry => self.capacity.room == Room::Waiting,
        }
    }

    fn deadline_for(&self, kind: &ActionKind) -> Duration {
        let t = &self.plan.policy.timeouts;
        match kind {
            ActionKind::QueryPool => t.query,
            ActionKind::Copy => t.copy,
            ActionKind::Depool => t.depool,
            ActionKind::Activate => t.activate,
            ActionKind::RunHook(_) => t.hook,
            ActionKind::Canary { .. } => self.plan.policy.canary.timeout,
            ActionKind::Rollback => t.rollback,
            ActionKind::Repool | ActionKind::RepoolForced => t.repool,
            // The gate's own window, and as long again to report.
            ActionKind::Bake { window } => *window * 2 + t.query,
            ActionKind::Notify(_) => t.notify,
        }
    }

    fn issue(&mut self, now: Instant, slot: Option<u32>, target: Target, kind: ActionKind) {
        self.queue.next_action += 1;
        let id = ActionId(self.queue.next_action);
        let deadline = now + self.deadline_for(&kind);
        self.queue.inflight.insert(id, (slot, kind.name()));
        if let Some(i) = slot {
            self.slots[i as usize].action = Some(id);
        }
        self.timer(deadline, Timer::Deadline(id));
        // After a rollback, the server's steps concern the release live again.
        let release = slot
            .and_then(|i| self.slots[i as usize].rolled_back_to.clone())
            .unwrap_or_else(|| self.plan.release.clone());
        self.queue.actions.push_back(Action {
            id,
            target,
            kind,
            release,
            deadline,
        });
    }

    fn issue_for(&mut self, now: Instant, i: u32, kind: ActionKind) {
        let target = Target::Server(self.id(i).clone());
        self.issue(now, Some(i), target, kind);
    }

    /// A notification: not tracked, its answer changes nothing.
    fn notify(&mut self, now: Instant, note: Note) {
        self.queue.next_action += 1;
        let kind = ActionKind::Notify(note);
        let deadline = now + self.deadline_for(&kind);
        self.queue.actions.push_back(Action {
            id: ActionId(self.queue.next_action),
            target: Target::Fleet,
            kind,
            release: self.plan.release.clone(),
            deadline,
        });
    }

    fn id(&self, i: u32) -> &ServerId {
        &self.plan.servers[i as usize].id
    }

    fn set_status(&mut self, i: u32, status: ServerStatus, detail: Option<String>) {
        let slot = &mut self.slots[i as usize];
        if slot.status == status && detail.is_none() {
            return;
        }
        slot.status = status;
        self.queue.events.push_back(Event::ServerState {
            server: self.plan.servers[i as usize].id.clone(),
            state: status,
            detail,
        });
    }

    fn warn(&mut self, server: Option<u32>, detail: String) {
        self.queue.events.push_back(Event::Warning {
            server: server.map(|i| self.id(i).clone()),
            detail,
        });
    }

    fn pooled(&self, i: u32) -> bool {
        let s = &self.slots[i as usize];
        self.plan.servers[i as usize].pooled && !s.pre_out
    }

    fn has_hook(&self, i: u32, point: HookPoint) -> bool {
        self.plan.servers[i as usize].hooks.contains(point)
    }

    fn take_out(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        if !slot.out {
            slot.out = true;
            self.capacity.out += 1;
            self.capacity.held += 1;
            self.capacity.max_out = self.capacity.max_out.max(self.capacity.out);
        }
    }

    fn give_back(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        if slot.out {
            slot.out = false;
            self.capacity.out -= 1;
            self.capacity.held -= 1;
        }
    }
}

pub(super) fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed(e) => e.to_string(),
        Outcome::Health(Health::Unknown { reason }) => format!("unknown: {reason}"),
        Outcome::Health(Health::Unhealthy { reason, .. }) => reason.clone(),
        other => format!("unexpected answer {other:?}"),
    }
}

/// Whether a canary outcome passed, and what it said.
impl Rollout {
    /// Records server `i`'s canary attempt from its outcome; returns the attempt's
    /// number, whether it passed and what it said.
    pub(super) fn canary_event(&mut self, i: u32, outcome: &Outcome) -> (u32, bool, String) {
        let attempt = self.slots[i as usize].attempt;
        let (ok, detail) = health_of(outcome);
        let status = match outcome {
            Outcome::Health(Health::Unhealthy { status, .. }) => *status,
            _ => None,
        };
        self.queue.events.push_back(Event::Canary {
            server: self.id(i).clone(),
            attempt,
            ok,
            status,
            detail: detail.clone(),
        });
        (attempt, ok, detail)
    }
}

pub(super) fn health_of(outcome: &Outcome) -> (bool, String) {
    match outcome {
        Outcome::Health(Health::Healthy) => (true, "healthy".to_string()),
        other => (false, describe(other)),
    }
}
