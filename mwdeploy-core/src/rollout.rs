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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::action::{Action, ActionId, ActionKind, Decision, Outcome, StopReason, Target};
use crate::error::{PlanError, PortError};
use crate::event::{Event, PoolAction, PoolPhase, PrepStatus, ServerStatus, Summary};
use crate::model::{Health, HookPoint, Layout, ServerId};
use crate::plan::{OnFailure, OnUnknown, Plan};
use crate::ports::Note;

/// Exit code: every selected server succeeded.
pub const EXIT_OK: i32 = 0;
/// Exit code: failed, rolled-back or skipped servers, or the operator stopped it.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: refused before touching production.
pub const EXIT_REFUSED: i32 = 3;
/// Exit code: interrupted by SIGINT or SIGTERM, after putting depooled servers back.
pub const EXIT_INTERRUPTED: i32 = 130;

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
    activated: bool,
    attempt: u32,
    verify_tries: u8,
    action: Option<ActionId>,
    /// Why it failed, kept for the final state's detail.
    why: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Deadline(ActionId),
    CanaryRetry(u32),
    StagingRetry,
    StageBake(u32),
    Prompt(u64),
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
    /// The command's exit code for this outcome.
    pub exit_code: i32,
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
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Outstanding actions -> the slot they concern (`None`: staging or fleet) and their name.
    inflight: HashMap<ActionId, (Option<u32>, &'static str)>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    next_action: u64,
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
    out: u32,
    max_out: u32,
    /// Slots holding an `out` count that they will give back (not kept out for good).
    held: u32,
    kept_out: Vec<(ServerId, String)>,
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
                activated: false,
                attempt: 0,
                verify_tries: 0,
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
            actions: VecDeque::new(),
            events: VecDeque::new(),
            inflight: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            next_action: 0,
            phase: Phase::Staging,
            staging_attempt: 0,
            stage: 0,
            cursor: 0,
            stage_left: 0,
            gate: Gate::Open,
            ready: VecDeque::new(),
            gate_ready: VecDeque::new(),
            in_flight: 0,
            out: 0,
            max_out: 0,
            held: 0,
            kept_out: Vec::new(),
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
        };
        r.events.push_back(Event::DeployStarted {
            servers: r.plan.servers.iter().map(|s| s.id.clone()).collect(),
            release: r.plan.release.clone(),
            layout: r.plan.layout,
            flags: r.plan.meta.flags.clone(),
            message: r.plan.meta.message.clone(),
            user: r.plan.meta.user.clone(),
        });
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
        self.actions.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Rollout::handle_timeout`] should be called next, if ever.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        // Drop timers that no longer matter so the driver does not wake for nothing.
        while let Some(Reverse((at, _, timer))) = self.timers.peek().copied() {
            if self.timer_live(timer) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Whether the deploy has ended (every server final, the last event queued).
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// A port finished the action `id`. Unknown or already timed-out ids are ignored.
    pub fn handle_completion(&mut self, now: Instant, id: ActionId, outcome: Outcome) {
        self.touch(now);
        let Some((slot, _)) = self.inflight.remove(&id) else {
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
        }
        self.schedule(now);
    }

    /// Time passed: fires every timer due at `now`. Spurious calls are no-ops.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, _, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
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
            stage: if self.phase == Phase::Running || self.phase == Phase::Finished {
                self.stage as u32 + 1
            } else {
                0
            },
            stages: self.stages.len() as u32,
            in_flight: self.in_flight,
            out_of_pool: self.out,
            max_out_of_pool: self.max_out,
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
            left_out: self.kept_out.clone(),
            max_out_of_pool: self.max_out,
            duration: self.last_at.saturating_duration_since(self.started_at),
            exit_code: self.exit_code(),
        }
    }

    fn exit_code(&self) -> i32 {
        if self.refused.is_some() {
            EXIT_REFUSED
        } else if self.stopping == Some(StopReason::Interrupted) {
            EXIT_INTERRUPTED
        } else if self.stopping.is_some()
            || self.summary.failed + self.summary.rolled_back + self.summary.skipped > 0
        {
            EXIT_FAILED
        } else {
            EXIT_OK
        }
    }

    // ---- plumbing -------------------------------------------------------------------

    fn touch(&mut self, now: Instant) {
        if now > self.last_at {
            self.last_at = now;
        }
    }

    fn timer(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, timer)));
    }

    fn timer_live(&self, timer: Timer) -> bool {
        match timer {
            Timer::Deadline(id) => self.inflight.contains_key(&id),
            Timer::CanaryRetry(i) => self.slots[i as usize].step == Step::CanaryPause,
            Timer::StagingRetry => self.phase == Phase::Staging && self.staging_attempt > 0,
            Timer::StageBake(k) => self.gate == Gate::Bake(k),
            Timer::Prompt(seq) => self.prompt.as_ref().is_some_and(|p| p.seq == seq),
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
            ActionKind::Repool => t.repool,
            // The gate's own window, and as long again to report.
            ActionKind::Bake { window } => *window * 2 + t.query,
            ActionKind::Notify(_) => t.notify,
        }
    }

    fn issue(&mut self, now: Instant, slot: Option<u32>, target: Target, kind: ActionKind) {
        self.next_action += 1;
        let id = ActionId(self.next_action);
        let deadline = now + self.deadline_for(&kind);
        self.inflight.insert(id, (slot, kind.name()));
        if let Some(i) = slot {
            self.slots[i as usize].action = Some(id);
        }
        self.timer(deadline, Timer::Deadline(id));
        self.actions.push_back(Action {
            id,
            target,
            kind,
            release: self.plan.release.clone(),
            deadline,
        });
    }

    fn issue_for(&mut self, now: Instant, i: u32, kind: ActionKind) {
        let target = Target::Server(self.id(i).clone());
        self.issue(now, Some(i), target, kind);
    }

    /// A notification: not tracked, its answer changes nothing.
    fn notify(&mut self, now: Instant, note: Note) {
        self.next_action += 1;
        let kind = ActionKind::Notify(note);
        let deadline = now + self.deadline_for(&kind);
        self.actions.push_back(Action {
            id: ActionId(self.next_action),
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
        self.events.push_back(Event::ServerState {
            server: self.plan.servers[i as usize].id.clone(),
            state: status,
            detail,
        });
    }

    fn warn(&mut self, server: Option<u32>, detail: String) {
        self.events.push_back(Event::Warning {
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
            self.out += 1;
            self.held += 1;
            self.max_out = self.max_out.max(self.out);
        }
    }

    fn give_back(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        if slot.out {
            slot.out = false;
            self.out -= 1;
            self.held -= 1;
        }
    }

    // ---- the deploy's phases ----------------------------------------------------------

    fn begin(&mut self, now: Instant) {
        if self.plan.staging.is_some() {
            self.phase = Phase::Staging;
            self.events.push_back(Event::PrepStep {
                step: "staging_canary".into(),
                status: PrepStatus::Running,
                detail: None,
            });
            self.staging_attempt = 1;
            self.issue(
                now,
                None,
                Target::Staging,
                ActionKind::Canary { attempt: 1 },
            );
        } else {
            self.after_staging(now);
        }
    }

    fn after_staging(&mut self, now: Instant) {
        if self.plan.preflight && self.plan.servers.iter().any(|s| s.pooled) {
            self.phase = Phase::Preflight;
            self.events.push_back(Event::PrepStep {
                step: "pool_preflight".into(),
                status: PrepStatus::Running,
                detail: None,
            });
            self.issue(now, None, Target::Fleet, ActionKind::QueryPool);
        } else {
            self.start_running(now);
        }
    }

    fn start_running(&mut self, now: Instant) {
        self.phase = Phase::Running;
        self.open_stage(0);
        self.schedule(now);
    }

    fn open_stage(&mut self, k: usize) {
        self.stage = k;
        self.cursor = 0;
        self.stage_left = self.stages[k].len();
        self.gate = Gate::Open;
        let servers = self.stages[k].iter().map(|&i| self.id(i).clone()).collect();
        self.events.push_back(Event::StageStarted {
            stage: k as u32 + 1,
            servers,
        });
    }

    fn fleet_completion(&mut self, now: Instant, outcome: Outcome) {
        match self.phase {
            Phase::Staging => self.staging_result(now, outcome),
            Phase::Preflight => self.preflight_result(now, outcome),
            _ => {}
        }
    }

    fn staging_result(&mut self, now: Instant, outcome: Outcome) {
        let (ok, detail) = health_of(&outcome);
        if ok {
            self.staging_attempt = 0;
            self.events.push_back(Event::PrepStep {
                step: "staging_canary".into(),
                status: PrepStatus::Ok,
                detail: None,
            });
            return self.after_staging(now);
        }
        let attempts = self.plan.policy.canary.attempts;
        if self.staging_attempt < attempts {
            self.events.push_back(Event::PrepStep {
                step: "staging_canary".into(),
                status: PrepStatus::Running,
                detail: Some(format!(
                    "attempt {}/{attempts} failed: {detail}",
                    self.staging_attempt
                )),
            });
            let at = now + self.plan.policy.canary.retry_pause;
            self.timer(at, Timer::StagingRetry);
            return;
        }
        self.staging_attempt = 0;
        let detail = format!("staging canary failed after {attempts} attempts: {detail}");
        if self.plan.policy.force {
            self.events.push_back(Event::PrepStep {
                step: "staging_canary".into(),
                status: PrepStatus::Warned,
                detail: Some(format!("{detail} (--force: going on)")),
            });
            self.after_staging(now);
        } else {
            self.events.push_back(Event::PrepStep {
                step: "staging_canary".into(),
                status: PrepStatus::Failed,
                detail: Some(detail.clone()),
            });
            self.refuse(now, detail);
        }
    }

    fn preflight_result(&mut self, now: Instant, outcome: Outcome) {
        let states = match outcome {
            Outcome::Pool(states) => states,
            Outcome::Failed(e) => {
                let detail = format!("could not read the pool: {e}");
                self.events.push_back(Event::PrepStep {
                    step: "pool_preflight".into(),
                    status: PrepStatus::Failed,
                    detail: Some(detail.clone()),
                });
                return self.refuse(now, detail);
            }
            other => {
                let detail = format!("the pool read answered {other:?}, not a pool");
                return self.refuse(now, detail);
            }
        };
        let mut not_up = Vec::new();
        let mut outsiders = Vec::new();
        let mut seen = vec![false; self.slots.len()];
        for (name, state) in &states {
            match self.by_backend_name.get(name).copied() {
                Some(i) if self.plan.servers[i as usize].pooled => {
                    seen[i as usize] = true;
                    if !state.is_serving() {
                        not_up.push((i, *state));
                    }
                }
                Some(_) => {}
                None if !state.is_serving() => outsiders.push(format!("{name} {state}")),
                None => {}
            }
        }
        let missing: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.plan.servers[i as usize].pooled && !seen[i as usize])
            .collect();
        let force = self.plan.policy.force;
        if !force && (!not_up.is_empty() || !missing.is_empty()) {
            let mut parts: Vec<String> = not_up
                .iter()
                .map(|(i, s)| format!("{} is {s}", self.id(*i)))
                .collect();
            parts.extend(
                missing
                    .iter()
                    .map(|i| format!("{} is not in the balancer's backend", self.id(*i))),
            );
            let detail = format!(
                "not every target is UP: {} (fix it, or deploy with --force)",
                parts.join(", ")
            );
            self.events.push_back(Event::PrepStep {
                step: "pool_preflight".into(),
                status: PrepStatus::Failed,
                detail: Some(detail.clone()),
            });
            return self.refuse(now, detail);
        }
        // Others' servers already out take room under max_unavailable for the whole deploy.
        self.out += outsiders.len() as u32;
        for (i, state) in &not_up {
            // Forced: it is deployed, but it was out before us, so it stays out after.
            // It counts like others' servers that are out: for the whole deploy.
            self.slots[*i as usize].pre_out = true;
            self.out += 1;
            self.kept_out.push((
                self.plan.servers[*i as usize].id.clone(),
                format!("was {state} before the deploy; left as it was"),
            ));
        }
        self.max_out = self.max_out.max(self.out);
        let detail = if outsiders.is_empty() && not_up.is_empty() {
            None
        } else {
            let mut d: Vec<String> = outsiders;
            d.extend(
                not_up
                    .iter()
                    .map(|(i, s)| format!("{} {s} (--force)", self.id(*i))),
            );
            Some(format!("already out of the pool: {}", d.join(", ")))
        };
        let needs_room = self
            .slots
            .iter()
            .enumerate()
            .any(|(i, s)| !s.pre_out && self.plan.servers[i].pooled);
        if needs_room && self.out >= self.plan.policy.max_unavailable {
            let detail = format!(
                "{} server(s) are already out of the pool and max_unavailable is {}: no server could be depooled ({})",
                self.out,
                self.plan.policy.max_unavailable,
                detail.unwrap_or_default()
            );
            self.events.push_back(Event::PrepStep {
                step: "pool_preflight".into(),
                status: PrepStatus::Failed,
                detail: Some(detail.clone()),
            });
            return self.refuse(now, detail);
        }
        self.events.push_back(Event::PrepStep {
            step: "pool_preflight".into(),
            status: if force && detail.is_some() {
                PrepStatus::Warned
            } else {
                PrepStatus::Ok
            },
            detail,
        });
        self.start_running(now);
    }

    fn refuse(&mut self, now: Instant, detail: String) {
        self.refused = Some(detail.clone());
        for i in 0..self.slots.len() as u32 {
            self.finalize(
                now,
                i,
                ServerStatus::Skipped,
                Some(format!("refused: {detail}")),
            );
        }
        self.finish(now);
    }

    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Deadline(id) => {
                // Through the normal path, as if the port had answered "timed out".
                if let Some((slot, kind)) = self.inflight.remove(&id) {
                    let e = PortError::timeout(format!("{kind} ran past its deadline"));
                    match slot {
                        None => self.fleet_completion(now, Outcome::Failed(e)),
                        Some(i) => {
                            let e = e.for_server(self.id(i));
                            self.slots[i as usize].action = None;
                            self.server_completion(now, i, Outcome::Failed(e));
                        }
                    }
                }
            }
            Timer::CanaryRetry(i) => {
                let attempt = self.slots[i as usize].attempt + 1;
                self.canary(now, i, attempt);
            }
            Timer::StagingRetry => {
                self.staging_attempt += 1;
                let attempt = self.staging_attempt;
                self.issue(now, None, Target::Staging, ActionKind::Canary { attempt });
            }
            Timer::StageBake(k) => {
                self.gate = Gate::Open;
                self.next_stage_gate(now, k);
            }
            Timer::Prompt(_) => self.answer(now, "timeout", false),
        }
    }

    // ---- scheduling ------------------------------------------------------------------

    fn schedule(&mut self, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        let max = self.plan.policy.max_unavailable;
        self.check_room(now);
        // Starting never takes room (in place, a started server waits in `ready`).
        while self.can_start() {
            let i = self.stages[self.stage][self.cursor];
            if self.pooled(i) && self.out >= max && self.held == 0 {
                // It could never be depooled: stop now rather than copy for nothing.
                self.no_room(now);
                break;
            }
            self.cursor += 1;
            self.start(now, i);
        }
        // An error gate failure waits for room first: it is serving errors.
        while self.out < max {
            let Some(i) = self.gate_ready.pop_front() else {
                break;
            };
            self.take_out(i);
            self.depool(now, i, Step::GateDepool);
        }
        while !self.paused && self.prompt.is_none() && self.stopping.is_none() && self.out < max {
            let Some(i) = self.ready.pop_front() else {
                break;
            };
            self.take_out(i);
            if self.has_hook(i, HookPoint::PreDepool) {
                self.run_hook(now, i, HookPoint::PreDepool, Step::PreDepool);
            } else {
                self.depool(now, i, Step::Depool);
            }
        }
        self.check_room(now);
        if self.stage_left == 0 && self.gate == Gate::Open && self.prompt.is_none() {
            let k = self.stage as u32 + 1;
            if self.stage + 1 < self.stages.len() && self.stopping.is_none() {
                self.events.push_back(Event::StageFinished { stage: k });
                let bake = self.plan.policy.bake;
                if bake > Duration::ZERO {
                    self.gate = Gate::Bake(k);
                    self.timer(now + bake, Timer::StageBake(k));
                } else {
                    self.next_stage_gate(now, k);
                }
            } else if self.finals == self.slots.len() {
                self.events.push_back(Event::StageFinished { stage: k });
                self.finish(now);
            }
        }
    }

    /// Stops the deploy when servers wait for room that nothing in flight will give back
    /// (failed servers kept out fill `max_unavailable`).
    fn check_room(&mut self, now: Instant) {
        let max = self.plan.policy.max_unavailable;
        if self.out < max || self.held > 0 {
            return;
        }
        if !self.ready.is_empty() {
            self.no_room(now);
        }
        // An error-gate failure that can never get room stays in the pool: say so.
        while let Some(i) = self.gate_ready.pop_front() {
            let why = self.slots[i as usize].why.take().unwrap_or_default();
            self.finalize(
                now,
                i,
                ServerStatus::Failed,
                Some(format!(
                    "{why}; still in the pool: no room under max_unavailable to depool it"
                )),
            );
        }
    }

    /// Stops the deploy: servers wait for room under `max_unavailable` that servers kept
    /// out for good will never give back.
    fn no_room(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        let detail = format!(
            "{} server(s) out of the pool for good and max_unavailable is {}: {}",
            self.out,
            self.plan.policy.max_unavailable,
            self.kept_out
                .iter()
                .map(|(s, why)| format!("{s} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.stop(now, StopReason::NoRoom, detail);
    }

    /// Stage `k` (1-based) is done and baked: ask, or open the next.
    fn next_stage_gate(&mut self, now: Instant, k: u32) {
        if self.stopping.is_some() {
            return self.schedule(now);
        }
        if self.plan.policy.approve_stages && !self.plan.policy.force {
            self.gate = Gate::Approval(k + 1);
            let n = self.stages[k as usize].len();
            self.open_prompt(
                now,
                PromptKind::Stage(k + 1),
                format!("Stage {k} done. Start stage {} ({n} servers)?", k + 1),
            );
        } else {
            self.open_stage(k as usize);
            self.schedule(now);
        }
    }

    fn can_start(&self) -> bool {
        self.phase == Phase::Running
            && !self.paused
            && self.stopping.is_none()
            && self.prompt.is_none()
            && self.gate == Gate::Open
            && self.in_flight < self.plan.policy.parallel
            && self.cursor < self.stages[self.stage].len()
    }

    fn start(&mut self, now: Instant, i: u32) {
        self.in_flight += 1;
        match self.plan.layout {
            Layout::Releases => {
                self.slots[i as usize].step = Step::Copy;
                self.set_status(i, ServerStatus::Copying, None);
                self.issue_for(now, i, ActionKind::Copy);
            }
            Layout::Inplace => self.to_ready(now, i),
        }
    }

    fn to_ready(&mut self, now: Instant, i: u32) {
        if self.stopping.is_some() {
            return self.finalize(
                now,
                i,
                ServerStatus::Skipped,
                Some("not deployed: the deploy stopped first".into()),
            );
        }
        if !self.pooled(i) {
            return self.activate(now, i);
        }
        self.slots[i as usize].step = Step::Ready;
        self.ready.push_back(i);
    }

    // ---- the per-server cycle ----------------------------------------------------------

    fn run_hook(&mut self, now: Instant, i: u32, point: HookPoint, step: Step) {
        self.slots[i as usize].step = step;
        self.set_status(i, ServerStatus::Hooks, Some(point.as_str().to_string()));
        self.issue_for(now, i, ActionKind::RunHook(point));
    }

    fn depool(&mut self, now: Instant, i: u32, step: Step) {
        self.slots[i as usize].step = step;
        self.set_status(i, ServerStatus::Depooling, None);
        self.pool_event(i, PoolAction::Depool, PoolPhase::Intent, None);
        self.issue_for(now, i, ActionKind::Depool);
    }

    fn repool(&mut self, now: Instant, i: u32, step: Step) {
        self.slots[i as usize].step = step;
        self.set_status(i, ServerStatus::Repooling, None);
        self.pool_event(i, PoolAction::Repool, PoolPhase::Intent, None);
        self.issue_for(now, i, ActionKind::Repool);
    }

    fn pool_event(
        &mut self,
        i: u32,
        action: PoolAction,
        phase: PoolPhase,
        result: Option<&Outcome>,
    ) {
        let (ok, detail) = match result {
            None => (None, None),
            Some(Outcome::Failed(e)) => (Some(false), Some(e.to_string())),
            Some(_) => (Some(true), None),
        };
        self.events.push_back(Event::Pool {
            server: self.id(i).clone(),
            proxy: None,
            backend: None,
            action,
            phase,
            ok,
            detail,
        });
    }

    fn activate(&mut self, now: Instant, i: u32) {
        self.slots[i as usize].step = Step::Activate;
        let status = match self.plan.layout {
            Layout::Releases => ServerStatus::Activating,
            Layout::Inplace => ServerStatus::Transferring,
        };
        self.set_status(i, status, None);
        self.issue_for(now, i, ActionKind::Activate);
    }

    fn canary(&mut self, now: Instant, i: u32, attempt: u32) {
        let slot = &mut self.slots[i as usize];
        slot.step = Step::Canary;
        slot.attempt = attempt;
        if attempt == 1 {
            self.set_status(i, ServerStatus::Canary, None);
        }
        self.issue_for(now, i, ActionKind::Canary { attempt });
    }

    /// The new code (or the restored old code) is live: hooks, then the canary.
    fn after_switch(&mut self, now: Instant, i: u32) {
        if self.has_hook(i, HookPoint::PostActivate) {
            self.run_hook(now, i, HookPoint::PostActivate, Step::PostActivate);
        } else {
            self.canary(now, i, 1);
        }
    }

    /// The canary passed (or was forced through): back into the pool.
    fn toward_repool(&mut self, now: Instant, i: u32) {
        if self.pooled(i) {
            self.slots[i as usize].step = Step::VerifyIn;
            self.issue_for(now, i, ActionKind::QueryPool);
        } else {
            self.after_repool(now, i);
        }
    }

    fn after_repool(&mut self, now: Instant, i: u32) {
        let mode = self.slots[i as usize].mode;
        // Servers outside the pool (job runners) have no repool, so no post_repool.
        if mode == Mode::Forward && self.pooled(i) && self.has_hook(i, HookPoint::PostRepool) {
            return self.run_hook(now, i, HookPoint::PostRepool, Step::PostRepool);
        }
        self.after_post_repool(now, i);
    }

    fn after_post_repool(&mut self, now: Instant, i: u32) {
        let mode = self.slots[i as usize].mode;
        if mode == Mode::Forward && self.pooled(i) {
            if let Some(gate) = &self.plan.policy.error_gate {
                let window = gate.window;
                self.slots[i as usize].step = Step::Bake;
                self.set_status(i, ServerStatus::Baking, None);
                return self.issue_for(now, i, ActionKind::Bake { window });
            }
        }
        self.complete(now, i);
    }

    /// The cycle ended with the server back where it belongs: its final state by mode.
    fn complete(&mut self, now: Instant, i: u32) {
        let slot = &self.slots[i as usize];
        let why = slot.why.clone();
        let (status, detail) = match slot.mode {
            Mode::Forward if slot.pre_out => (
                ServerStatus::Done,
                Some("deployed; it was out of the pool before and stays out".to_string()),
            ),
            Mode::Forward => (ServerStatus::Done, None),
            Mode::Warned => (ServerStatus::Warned, why),
            Mode::RolledBack => (ServerStatus::RolledBack, why),
            Mode::Failed => (
                ServerStatus::Failed,
                why.map(|w| format!("{w}; the previous release serves, back in the pool")),
            ),
        };
        self.finalize(now, i, status, detail);
    }

    /// The server cannot be made whole here: it stays out of the pool, reported.
    fn keep_out(&mut self, now: Instant, i: u32, why: String) {
        let slot = &mut self.slots[i as usize];
        let id = self.plan.servers[i as usize].id.clone();
        if slot.out {
            // It keeps its place in `out` for the rest of the deploy.
            self.held -= 1;
            slot.out = false;
            self.kept_out.push((id, why.clone()));
            self.finalize(
                now,
                i,
                ServerStatus::Failed,
                Some(format!("{why}; kept out of the pool")),
            );
        } else {
            self.finalize(now, i, ServerStatus::Failed, Some(why));
        }
    }

    /// The step failed with `why`; put the server in the safest state reachable.
    fn failed_after_switch(&mut self, now: Instant, i: u32, why: String) {
        let layout = self.plan.layout;
        let slot = &mut self.slots[i as usize];
        match slot.mode {
            Mode::Forward
                if self.plan.policy.force && slot.activated && why.starts_with("canary") =>
            {
                slot.mode = Mode::Warned;
                slot.why = Some(format!("{why} (--force: back in the pool)"));
                self.toward_repool(now, i);
            }
            Mode::Forward if layout == Layout::Releases && slot.activated => {
                slot.why = Some(why);
                slot.step = Step::Rollback;
                self.set_status(i, ServerStatus::RollingBack, None);
                self.issue_for(now, i, ActionKind::Rollback);
            }
            Mode::Forward if layout == Layout::Inplace => {
                self.keep_out(
                    now,
                    i,
                    format!("{why}; the in-place tree has no previous copy"),
                );
            }
            Mode::RolledBack => {
                let first = slot.why.clone().unwrap_or_default();
                self.keep_out(
                    now,
                    i,
                    format!("{first}; rolled back, but the previous release fails too: {why}"),
                );
            }
            _ => {
                let first = slot.why.clone();
                let why = match first {
                    Some(f) if f != why => format!("{f}; then {why}"),
                    _ => why,
                };
                self.keep_out(now, i, why);
            }
        }
    }

    fn server_completion(&mut self, now: Instant, i: u32, outcome: Outcome) {
        let step = self.slots[i as usize].step;
        let failed = match &outcome {
            Outcome::Failed(e) => Some(e.to_string()),
            _ => None,
        };
        match step {
            Step::Copy => match failed {
                None => {
                    if self.has_hook(i, HookPoint::PostCopy) {
                        self.run_hook(now, i, HookPoint::PostCopy, Step::PostCopy);
                    } else {
                        self.to_ready(now, i);
                    }
                }
                Some(e) => self.finalize(
                    now,
                    i,
                    ServerStatus::Failed,
                    Some(format!(
                        "copy failed: {e}; never depooled, the live release serves"
                    )),
                ),
            },
            Step::PostCopy => {
                self.hook_event(i, HookPoint::PostCopy, &failed);
                match failed {
                    None => self.to_ready(now, i),
                    Some(e) => self.finalize(
                        now,
                        i,
                        ServerStatus::Failed,
                        Some(format!(
                            "post_copy hook failed: {e}; never depooled, the live release serves"
                        )),
                    ),
                }
            }
            Step::PreDepool => {
                self.hook_event(i, HookPoint::PreDepool, &failed);
                match failed {
                    None => self.depool(now, i, Step::Depool),
                    Some(e) => {
                        self.give_back(i);
                        self.finalize(
                            now,
                            i,
                            ServerStatus::Failed,
                            Some(format!("pre_depool hook failed: {e}; never depooled")),
                        )
                    }
                }
            }
            Step::Depool => {
                self.pool_event(i, PoolAction::Depool, PoolPhase::Result, Some(&outcome));
                match failed {
                    None => {
                        self.slots[i as usize].step = Step::VerifyOut;
                        self.issue_for(now, i, ActionKind::QueryPool);
                    }
                    Some(e) => self.restore(now, i, format!("depool not confirmed: {e}")),
                }
            }
            Step::VerifyOut => match outcome {
                Outcome::State(s) if !s.is_serving() => {
                    self.slots[i as usize].verify_tries = 0;
                    self.activate(now, i)
                }
                Outcome::State(s) => {
                    let tries = self.slots[i as usize].verify_tries + 1;
                    self.slots[i as usize].verify_tries = tries;
                    self.warn(
                        Some(i),
                        format!("the balancer shows it {s} after the depool (a reload?)"),
                    );
                    if tries < 2 {
                        self.depool(now, i, Step::Depool);
                    } else {
                        self.restore(
                            now,
                            i,
                            format!("the balancer keeps it {s} after depooling twice"),
                        );
                    }
                }
                other => {
                    let e = describe(&other);
                    self.restore(
                        now,
                        i,
                        format!("could not read its pool state after the depool: {e}"),
                    )
                }
            },
            Step::Activate => {
                self.slots[i as usize].activated = failed.is_none();
                match failed {
                    None => self.after_switch(now, i),
                    Some(e) => match self.plan.layout {
                        // The switch is one rename: it did not happen, the old release serves.
                        Layout::Releases => {
                            let slot = &mut self.slots[i as usize];
                            slot.mode = Mode::Failed;
                            slot.why = Some(format!("activate failed: {e}"));
                            self.canary(now, i, 1);
                        }
                        Layout::Inplace => self.keep_out(
                            now,
                            i,
                            format!("in-place copy failed: {e}; the live tree may be half copied"),
                        ),
                    },
                }
            }
            Step::PostActivate => {
                self.hook_event(i, HookPoint::PostActivate, &failed);
                match failed {
                    None => self.canary(now, i, 1),
                    Some(e) => {
                        self.failed_after_switch(now, i, format!("post_activate hook failed: {e}"))
                    }
                }
            }
            Step::Canary => {
                let attempt = self.slots[i as usize].attempt;
                let (ok, detail) = health_of(&outcome);
                let status = match &outcome {
                    Outcome::Health(Health::Unhealthy { status, .. }) => *status,
                    _ => None,
                };
                self.events.push_back(Event::Canary {
                    server: self.id(i).clone(),
                    attempt,
                    ok,
                    status,
                    detail: detail.clone(),
                });
                let attempts = self.plan.policy.canary.attempts;
                if ok {
                    self.toward_repool(now, i);
                } else if attempt < attempts {
                    self.slots[i as usize].step = Step::CanaryPause;
                    let at = now + self.plan.policy.canary.retry_pause;
                    self.timer(at, Timer::CanaryRetry(i));
                } else {
                    self.failed_after_switch(
                        now,
                        i,
                        format!("canary failed after {attempts} attempts: {detail}"),
                    );
                }
            }
            Step::VerifyIn => {
                if let Outcome::State(s) = &outcome {
                    if s.is_serving() {
                        self.warn(
                            Some(i),
                            format!("the balancer already serves it ({s}) before the repool (a reload?)"),
                        );
                    }
                }
                self.repool(now, i, Step::Repool);
            }
            Step::Repool => {
                self.pool_event(i, PoolAction::Repool, PoolPhase::Result, Some(&outcome));
                match failed {
                    None => {
                        self.give_back(i);
                        self.after_repool(now, i);
                    }
                    Some(e) => {
                        let why = format!("repool not confirmed: {e}");
                        let slot = &mut self.slots[i as usize];
                        let why = match slot.why.take() {
                            Some(w) => format!("{w}; {why}"),
                            None => why,
                        };
                        self.keep_out(now, i, why);
                    }
                }
            }
            Step::PostRepool => {
                self.hook_event(i, HookPoint::PostRepool, &failed);
                match failed {
                    None => self.after_post_repool(now, i),
                    Some(e) => self.gate_failed(i, format!("post_repool hook failed: {e}")),
                }
            }
            Step::Bake => {
                let pass = match &outcome {
                    Outcome::Health(Health::Healthy) => Ok(()),
                    Outcome::Health(Health::Unhealthy { reason, .. }) => Err(reason.clone()),
                    other => match self.plan.policy.error_gate.as_ref().map(|g| g.on_unknown) {
                        Some(OnUnknown::Pass) => {
                            let d = describe(other);
                            self.warn(
                                Some(i),
                                format!("error gate could not tell ({d}); on_unknown: pass"),
                            );
                            Ok(())
                        }
                        _ => Err(format!("could not tell ({})", describe(other))),
                    },
                };
                match pass {
                    Ok(()) => self.complete(now, i),
                    Err(e) => self.gate_failed(i, format!("error gate failed: {e}")),
                }
            }
            Step::GateDepool => {
                self.pool_event(i, PoolAction::Depool, PoolPhase::Result, Some(&outcome));
                match failed {
                    None => match self.plan.layout {
                        Layout::Releases => {
                            self.slots[i as usize].step = Step::Rollback;
                            self.set_status(i, ServerStatus::RollingBack, None);
                            self.issue_for(now, i, ActionKind::Rollback);
                        }
                        Layout::Inplace => {
                            let why = self.slots[i as usize].why.clone().unwrap_or_default();
                            self.keep_out(
                                now,
                                i,
                                format!("{why}; the in-place tree has no previous copy"),
                            )
                        }
                    },
                    Some(e) => {
                        // Not confirmed: some proxies may serve it, some not. It is
                        // counted out and reported, the safe side of both rules.
                        let why = self.slots[i as usize].why.clone().unwrap_or_default();
                        self.keep_out(
                            now,
                            i,
                            format!("{why}; depool not confirmed ({e}): it may still serve on some proxies"),
                        );
                    }
                }
            }
            Step::Rollback => {
                let from = self.plan.release.clone();
                let to = match &outcome {
                    Outcome::RolledBackTo(r) => Some(r.clone()),
                    _ => None,
                };
                self.events.push_back(Event::Rollback {
                    server: self.id(i).clone(),
                    from,
                    to,
                    ok: failed.is_none(),
                });
                match failed {
                    None => {
                        let slot = &mut self.slots[i as usize];
                        slot.mode = Mode::RolledBack;
                        slot.activated = false;
                        self.after_switch(now, i);
                    }
                    Some(e) => {
                        let why = self.slots[i as usize].why.clone().unwrap_or_default();
                        self.keep_out(now, i, format!("{why}; rollback failed: {e}"))
                    }
                }
            }
            Step::Restore => {
                self.pool_event(i, PoolAction::Repool, PoolPhase::Result, Some(&outcome));
                let why = self.slots[i as usize].why.clone().unwrap_or_default();
                match failed {
                    None => {
                        self.give_back(i);
                        self.finalize(
                            now,
                            i,
                            ServerStatus::Failed,
                            Some(format!("{why}; put back in the pool unchanged")),
                        );
                    }
                    Some(e) => {
                        self.keep_out(now, i, format!("{why}; putting it back failed too: {e}"))
                    }
                }
            }
            Step::Pending | Step::Ready | Step::CanaryPause | Step::GateReady | Step::Final => {}
        }
    }

    /// Depool was not confirmed: nothing changed on the server, so it goes back as it was.
    fn restore(&mut self, now: Instant, i: u32, why: String) {
        self.slots[i as usize].why = Some(why);
        self.repool(now, i, Step::Restore);
    }

    /// The server serves in the pool but must come out (error gate, post_repool hook).
    fn gate_failed(&mut self, i: u32, why: String) {
        self.warn(
            Some(i),
            format!("{why}; to be depooled as soon as there is room"),
        );
        let slot = &mut self.slots[i as usize];
        slot.why = Some(why);
        slot.step = Step::GateReady;
        self.gate_ready.push_back(i);
    }

    fn hook_event(&mut self, i: u32, hook: HookPoint, failed: &Option<String>) {
        self.events.push_back(Event::Hook {
            server: self.id(i).clone(),
            hook,
            ok: failed.is_none(),
            detail: failed.clone(),
        });
    }

    fn finalize(&mut self, now: Instant, i: u32, status: ServerStatus, detail: Option<String>) {
        let slot = &mut self.slots[i as usize];
        if slot.step == Step::Final {
            return;
        }
        let started = slot.step != Step::Pending;
        slot.step = Step::Final;
        if started {
            self.in_flight -= 1;
        }
        if self.phase == Phase::Running && slot.stage as usize == self.stage {
            self.stage_left -= 1;
        }
        self.finals += 1;
        self.summary.count(status);
        self.set_status(i, status, detail.clone());
        if matches!(status, ServerStatus::Failed | ServerStatus::RolledBack) {
            self.failures += 1;
            self.notify(
                now,
                Note::ServerFailed {
                    server: self.id(i).clone(),
                    detail: detail.unwrap_or_default(),
                },
            );
            self.over_budget(now);
        }
    }

    fn over_budget(&mut self, now: Instant) {
        if self.failures <= self.budget || self.stopping.is_some() || self.refused.is_some() {
            return;
        }
        let mut policy = self.plan.policy.on_failure;
        if self.plan.policy.force && policy == OnFailure::Prompt {
            policy = OnFailure::Continue;
        }
        match policy {
            OnFailure::Continue => {}
            OnFailure::Abort => self.stop(
                now,
                StopReason::FailureBudget,
                format!(
                    "{} failure(s), budget {}; on_failure: abort",
                    self.failures, self.budget
                ),
            ),
            OnFailure::Prompt => {
                if self.prompt.is_none() {
                    let question = format!(
                        "{} server(s) failed, the budget is {}. Continue with the next server?",
                        self.failures, self.budget
                    );
                    self.open_prompt(now, PromptKind::Failure, question);
                }
            }
        }
    }

    fn open_prompt(&mut self, now: Instant, kind: PromptKind, question: String) {
        self.timer_seq += 1;
        let seq = self.timer_seq;
        self.events.push_back(Event::Prompt {
            question: question.clone(),
            answer: None,
        });
        self.prompt = Some(OpenPrompt {
            seq,
            kind,
            question,
        });
        let at = now + self.plan.policy.prompt_timeout;
        self.timer(at, Timer::Prompt(seq));
    }

    fn answer(&mut self, now: Instant, word: &str, yes: bool) {
        let Some(p) = self.prompt.take() else {
            return;
        };
        self.events.push_back(Event::Prompt {
            question: p.question,
            answer: Some(word.to_string()),
        });
        let reason = if word == "timeout" {
            StopReason::PromptTimeout
        } else {
            StopReason::Operator
        };
        match (p.kind, yes) {
            (PromptKind::Failure, true) => {
                self.budget += 1;
                // Failures that came while the prompt was open may need another answer.
                self.over_budget(now);
            }
            (PromptKind::Failure, false) => self.stop(
                now,
                reason,
                format!("the operator answered {word} after a failure"),
            ),
            (PromptKind::Stage(k), true) => {
                self.open_stage(k as usize - 1);
            }
            (PromptKind::Stage(k), false) => {
                self.gate = Gate::Open;
                self.stop(
                    now,
                    reason,
                    format!("the operator answered {word} before stage {k}"),
                )
            }
        }
    }

    fn stop(&mut self, now: Instant, reason: StopReason, detail: String) {
        if self.stopping.is_some() || self.phase == Phase::Finished {
            return;
        }
        self.stopping = Some(reason);
        self.events.push_back(Event::Stopping { reason, detail });
        if self.prompt.is_some() {
            self.answer(now, "stop", false);
        }
        if self.phase != Phase::Running {
            // Staging or preflight still running: nothing was touched.
            for i in 0..self.slots.len() as u32 {
                self.finalize(
                    now,
                    i,
                    ServerStatus::Skipped,
                    Some(format!("not started: {reason}")),
                );
            }
            return self.finish(now);
        }
        let skip = || Some(format!("not started: {reason}"));
        // Copied ahead but never depooled.
        while let Some(i) = self.ready.pop_front() {
            self.finalize(now, i, ServerStatus::Skipped, skip());
        }
        // The rest of this stage, and every later stage.
        let k = self.stage;
        while self.cursor < self.stages[k].len() {
            let i = self.stages[k][self.cursor];
            self.cursor += 1;
            self.finalize(now, i, ServerStatus::Skipped, skip());
        }
        for later in k + 1..self.stages.len() {
            for n in 0..self.stages[later].len() {
                let i = self.stages[later][n];
                self.finalize(now, i, ServerStatus::Skipped, skip());
            }
        }
        self.gate = Gate::Open;
    }

    fn finish(&mut self, now: Instant) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        self.touch(now);
        let report = self.report();
        self.notify(
            now,
            Note::Finished {
                deploy: self.plan.deploy_id.clone(),
                summary: report.summary,
            },
        );
        self.events.push_back(Event::DeployFinished {
            summary: report.summary,
            duration_s: report.duration.as_secs_f64(),
            exit_code: report.exit_code,
        });
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Failed(e) => e.to_string(),
        Outcome::Health(Health::Unknown { reason }) => format!("unknown: {reason}"),
        Outcome::Health(Health::Unhealthy { reason, .. }) => reason.clone(),
        other => format!("unexpected answer {other:?}"),
    }
}

/// Whether a canary outcome passed, and what it said.
fn health_of(outcome: &Outcome) -> (bool, String) {
    match outcome {
        Outcome::Health(Health::Healthy) => (true, "healthy".to_string()),
        other => (false, describe(other)),
    }
}
