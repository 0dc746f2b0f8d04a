//! Scenario tests: the `Rollout` machine driven by a scripted fleet on a virtual clock.
//!
//! A [`Script`] owns the machine and answers its actions from a table of rules (by server,
//! step and attempt), tracks the pool state of each server, answers prompts as the test
//! says, lets time jump to the next answer or timer, and records everything in one log.
//! Every run ends with checks that hold in any scenario (design.md, section 3): the
//! harness's own count of servers out of the pool matches the machine's and stays under
//! `max_unavailable`, and every server depooled and never repooled is in `left_out`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant, UNIX_EPOCH};

use mwdeploy_core::event::PrepStatus;
use mwdeploy_core::plan::{ErrorGatePolicy, FailureBudget, OnFailure, OnUnknown, StageSize};
use mwdeploy_core::{
    Action, ActionKind, Decision, Event, Health, HookPoint, HookPoints, Layout, Outcome, Plan,
    PlanError, PoolState, PortError, ReleaseId, Rollout, Server, ServerId, ServerStatus,
    StopReason, Target, Verdict,
};
use ServerStatus::{Done, Failed, RolledBack, Skipped, Warned};

// ---- the harness ------------------------------------------------------------------------

/// A verdict as the status number the journal records for it (`deploy_finished.exit_code`:
/// 0 done, 1 failed or stopped, 3 refused, 130 interrupted): one number per outcome keeps
/// the assertions below short.
fn code(v: Verdict) -> i32 {
    match v {
        Verdict::Done => 0,
        Verdict::Refused => 3,
        Verdict::Interrupted => 130,
        _ => 1,
    }
}

const SEC: Duration = Duration::from_secs(1);

/// How the scripted fleet answers one action.
#[derive(Debug, Clone)]
enum Reply {
    /// Works, after the step's usual latency (a copy 3 s, anything else 1 s).
    Ok,
    /// A canary or error gate answers unhealthy; any other step, a permanent error.
    Fail,
    /// Never answered: the machine's deadline must fire.
    Hang,
    /// Works, but answers after this long.
    Late(Duration),
    /// Answers exactly this.
    With(Outcome),
}

/// What the operator does when a trigger fires.
#[derive(Debug, Clone)]
enum Act {
    Decide(Decision),
    /// The pool menu: this server, depool (`true`) or repool.
    Pool(String, bool),
}

/// One line of the log, in the order things happened, at the virtual time since the start.
#[derive(Debug)]
enum Rec {
    Issue(Duration, Box<Action>),
    Done(Duration, Box<Action>),
    Ev(Duration, Event),
}

/// `kind` actions on server `who` whose count is in the range get the reply.
type Rule = (String, &'static str, RangeInclusive<u32>, Reply);

struct Script {
    r: Rollout,
    t0: Instant,
    now: Instant,
    rules: Vec<Rule>,
    /// What the preflight pool read answers.
    fleet: Vec<(ServerId, PoolState)>,
    /// The answers to the prompts, in order; `None` leaves a prompt open.
    answers: VecDeque<Option<bool>>,
    /// When the first such action is issued, the operator decides.
    triggers: Vec<(String, &'static str, Act)>,
    pending: Vec<(Instant, Action, Outcome)>,
    log: Vec<Rec>,
    pool: BTreeMap<String, PoolState>,
    /// Depool issued and no repool done, plus those the pool read showed out.
    out: BTreeSet<String>,
    max_out: usize,
    max_in_flight: u32,
    /// Pool changes that are nobody's deploy (a server goes down, someone depools one),
    /// at these virtual times since the start.
    changes: Vec<(Duration, String, PoolState)>,
}

fn who(a: &Action) -> String {
    match &a.target {
        Target::Server(s) => s.to_string(),
        Target::Staging => "staging".into(),
        Target::Fleet => "fleet".into(),
    }
}

impl Script {
    fn new(plan: Plan) -> Script {
        let entry = |s: &Server| (s.backend_name().clone(), PoolState::Up);
        let fleet = plan.servers.iter().filter(|s| s.pooled);
        let fleet = fleet.map(entry).collect();
        let t0 = Instant::now();
        let r = Rollout::new(plan, t0).expect("a valid plan");
        let (rules, answers, triggers, pending, log, pool, out) = Default::default();
        let (now, max_out, max_in_flight) = (t0, 0, 0);
        let changes = Vec::new();
        Script {
            r,
            t0,
            now,
            rules,
            fleet,
            answers,
            triggers,
            pending,
            log,
            pool,
            out,
            max_out,
            max_in_flight,
            changes,
        }
    }

    /// At `at` since the start, `who` (in the plan or not) turns `state`, by no one's deploy.
    fn change_at(mut self, at: Duration, who: &str, state: PoolState) -> Script {
        self.changes.push((at, who.to_string(), state));
        self.changes.sort_by_key(|c| std::cmp::Reverse(c.0));
        self
    }

    fn apply_change(&mut self) {
        let (at, name, state) = self.changes.pop().expect("a change");
        self.now = self.now.max(self.t0 + at);
        self.pool.insert(name.clone(), state);
        self.fleet.retain(|(s, _)| s.as_str() != name);
        self.fleet.push((id(&name), state));
        if state.is_serving() {
            self.out.remove(&name);
        } else {
            self.out.insert(name);
            self.max_out = self.max_out.max(self.out.len());
        }
    }

    fn on(self, who: &str, kind: &'static str, reply: Reply) -> Script {
        self.on_nth(who, kind, 1..=u32::MAX, reply)
    }

    fn on_nth(mut self, who: &str, kind: &'static str, n: RangeInclusive<u32>, r: Reply) -> Self {
        self.rules.push((who.to_string(), kind, n, r));
        self
    }

    /// The preflight pool read shows `who` (in the plan or not) in `state`.
    fn pool_state(mut self, who: &str, state: PoolState) -> Script {
        self.fleet.retain(|(s, _)| s.as_str() != who);
        self.fleet.push((id(who), state));
        self
    }

    fn answer(mut self, answer: Option<bool>) -> Script {
        self.answers.push_back(answer);
        self
    }

    fn decide_on(mut self, who: &str, kind: &'static str, decision: Decision) -> Script {
        self.triggers
            .push((who.to_string(), kind, Act::Decide(decision)));
        self
    }

    /// When the first `kind` action of `who` is issued, the operator asks the pool menu to
    /// depool (or repool) `server`.
    fn pool_on(mut self, who: &str, kind: &'static str, server: &str, depool: bool) -> Script {
        self.triggers
            .push((who.to_string(), kind, Act::Pool(server.to_string(), depool)));
        self
    }

    fn t(&self) -> Duration {
        self.now - self.t0
    }

    /// Runs the deploy to its end: answers, or lets time jump to the next answer or timer.
    fn run(mut self) -> Script {
        for _ in 0..100_000 {
            self.drain();
            if self.r.is_finished() {
                self.checks();
                return self;
            }
            let due = self.pending.iter().map(|p| p.0).min();
            let change = self.changes.last().map(|c| self.t0 + c.0);
            if change.is_some_and(|c| due.is_none_or(|d| c <= d))
                && change.is_some_and(|c| self.r.poll_timeout().is_none_or(|t| c <= t))
            {
                self.apply_change();
                continue;
            }
            match (due, self.r.poll_timeout()) {
                (Some(d), Some(t)) if t < d => self.tick(t),
                (Some(_), _) => self.deliver(),
                (None, Some(t)) => self.tick(t),
                (None, None) => panic!("stuck, nothing to wait for: {:#?}", self.r.snapshot()),
            }
        }
        panic!("the deploy did not finish: {:#?}", self.r.snapshot());
    }

    fn tick(&mut self, at: Instant) {
        self.now = self.now.max(at);
        self.r.handle_timeout(self.now);
    }

    /// Delivers the earliest answer, keeping the pool state and the out-of-pool count.
    fn deliver(&mut self) {
        self.pending.sort_by_key(|p| (p.0, p.1.id));
        let (at, action, outcome) = self.pending.remove(0);
        self.now = self.now.max(at);
        let (name, ok) = (who(&action), !matches!(outcome, Outcome::Failed(_)));
        let state = match action.kind {
            ActionKind::Depool if ok => Some(PoolState::Maint),
            ActionKind::Repool if ok => Some(PoolState::Up),
            ActionKind::RepoolForced if ok => match &outcome {
                Outcome::State(s) => Some(*s),
                _ => Some(PoolState::Up),
            },
            _ => None,
        };
        if let Some(state) = state {
            self.pool.insert(name.clone(), state);
            if state == PoolState::Up {
                self.out.remove(&name);
            }
        }
        if let Outcome::Pool(states) = &outcome {
            // As the fleet is now: a change may have landed since the read was answered.
            let now_out = |id: &ServerId| match self.pool.get(id.as_str()) {
                Some(s) => !s.is_serving(),
                None => true,
            };
            let down = states
                .iter()
                .filter(|(id, s)| !s.is_serving() && now_out(id));
            let down: Vec<String> = down.map(|(id, _)| id.to_string()).collect();
            self.out.extend(down);
            self.max_out = self.max_out.max(self.out.len());
        }
        self.log.push(Rec::Done(self.t(), Box::new(action.clone())));
        self.r.handle_completion(self.now, action.id, outcome);
    }

    /// Drains events and actions, answers prompts and fires triggers, until nothing is left.
    fn drain(&mut self) {
        loop {
            self.max_in_flight = self.max_in_flight.max(self.r.snapshot().in_flight);
            let mut decisions = Vec::new();
            while let Some(ev) = self.r.poll_event() {
                if let Event::Prompt { answer: None, .. } = &ev {
                    match self.answers.pop_front() {
                        Some(Some(yes)) => decisions.push(Act::Decide(Decision::Answer(yes))),
                        Some(None) => {}
                        None => panic!("unexpected prompt: {ev:?}"),
                    }
                }
                self.log.push(Rec::Ev(self.t(), ev));
            }
            while let Some(a) = self.r.poll_action() {
                if !matches!(a.kind, ActionKind::Notify(_)) {
                    self.issue(a, &mut decisions);
                }
            }
            if decisions.is_empty() {
                return;
            }
            for d in decisions {
                match d {
                    Act::Decide(d) => self.r.handle_decision(self.now, d),
                    Act::Pool(server, depool) => {
                        self.r.handle_pool_request(self.now, &id(&server), depool)
                    }
                }
            }
        }
    }

    /// Logs an action and schedules its answer, by the first rule that matches.
    fn issue(&mut self, a: Action, decisions: &mut Vec<Act>) {
        let (w, kind) = (who(&a), a.kind.name());
        let n = 1 + self.kinds(&w).iter().filter(|k| **k == kind).count() as u32;
        if let Some(k) = self.triggers.iter().position(|t| t.0 == w && t.1 == kind) {
            decisions.push(self.triggers.remove(k).2);
        }
        if kind == "depool" {
            self.out.insert(w.clone());
            self.max_out = self.max_out.max(self.out.len());
        }
        let hit = |r: &&Rule| r.0 == w && r.1 == kind && r.2.contains(&n);
        let rule = self.rules.iter().find(hit);
        let health = matches!(a.kind, ActionKind::Canary { .. } | ActionKind::Bake { .. });
        let state = self.pool.get(&w).copied().unwrap_or(PoolState::Up);
        let ok = match &a.kind {
            ActionKind::QueryPool if w == "fleet" => Outcome::Pool(
                self.fleet
                    .iter()
                    .map(|(s, st)| (s.clone(), self.pool.get(s.as_str()).copied().unwrap_or(*st)))
                    .collect(),
            ),
            ActionKind::QueryPool => Outcome::State(state),
            _ if health => Outcome::Health(Health::Healthy),
            ActionKind::Rollback => Outcome::RolledBackTo(release("old")),
            _ => Outcome::Done,
        };
        let fail = match health {
            true => Outcome::Health(Health::unhealthy("scripted: HTTP 500")),
            false => Outcome::Failed(PortError::permanent("scripted failure")),
        };
        let usual = SEC * if a.kind == ActionKind::Copy { 3 } else { 1 };
        let answer = match rule.map_or(Reply::Ok, |r| r.3.clone()) {
            Reply::Ok => Some((usual, ok)),
            Reply::Fail => Some((usual, fail)),
            Reply::Hang => None,
            Reply::Late(d) => Some((d, ok)),
            Reply::With(o) => Some((usual, o)),
        };
        if let Some((after, outcome)) = answer {
            self.pending.push((self.now + after, a.clone(), outcome));
        }
        self.log.push(Rec::Issue(self.t(), Box::new(a)));
    }

    /// What holds at the end of every scenario.
    fn checks(&self) {
        let rep = self.r.report();
        let max = self.r.plan().policy.max_unavailable as usize;
        if rep.refused.is_none() {
            let counted = rep.max_out_of_pool as usize;
            assert_eq!(counted, self.max_out, "max out of pool: machine vs harness");
            assert!(self.max_out <= max, "rule 1: {} out at once", self.max_out);
        }
        // Rule 3: every server depooled and never put back is reported.
        let depooled = |s: &&String| self.kinds(s).contains(&"depool");
        for s in self.out.iter().filter(depooled) {
            let reported = rep.left_out.iter().any(|(id, _)| id.as_str() == s);
            assert!(reported, "rule 3: {s} left out, not reported: {rep:?}");
        }
        for (s, status) in self.r.statuses() {
            assert!(status.is_final(), "{s} ended in {status:?}");
        }
        assert_eq!(rep.summary.total() as usize, self.r.plan().servers.len());
        match self.events().last() {
            Some(Event::DeployFinished { verdict, .. }) => assert_eq!(*verdict, rep.verdict),
            other => panic!("the last event is not deploy_finished: {other:?}"),
        }
    }

    // ---- reading the log ----

    /// The step names of the actions issued for `who`, in order.
    fn kinds(&self, name: &str) -> Vec<&'static str> {
        let issued = self.log.iter().filter_map(|r| match r {
            Rec::Issue(_, a) if who(a) == name => Some(a.kind.name()),
            _ => None,
        });
        issued.collect()
    }

    /// Where in the log, and when, the `nth` (from 1) `kind` action on `who` was issued (or
    /// answered, with `done`).
    fn find(&self, name: &str, kind: &str, nth: usize, done: bool) -> (usize, Duration) {
        let mut hits = self.log.iter().enumerate().filter_map(|(k, r)| match r {
            Rec::Issue(t, a) if !done && who(a) == name && a.kind.name() == kind => Some((k, *t)),
            Rec::Done(t, a) if done && who(a) == name && a.kind.name() == kind => Some((k, *t)),
            _ => None,
        });
        let hit = hits.nth(nth - 1);
        hit.unwrap_or_else(|| panic!("no {kind} #{nth} on {name} (done: {done})"))
    }

    /// Where in the log, and when, the first event matching `f` is.
    fn event(&self, f: impl Fn(&Event) -> bool) -> Option<(usize, Duration)> {
        self.log.iter().enumerate().find_map(|(k, r)| match r {
            Rec::Ev(t, e) if f(e) => Some((k, *t)),
            _ => None,
        })
    }

    fn events(&self) -> impl Iterator<Item = &Event> {
        self.log.iter().filter_map(|r| match r {
            Rec::Ev(_, e) => Some(e),
            _ => None,
        })
    }

    fn statuses(&self) -> Vec<ServerStatus> {
        self.r.statuses().map(|(_, s)| s).collect()
    }

    fn left_out(&self) -> Vec<String> {
        let rep = self.r.report();
        rep.left_out.iter().map(|(s, _)| s.to_string()).collect()
    }

    fn stage_sizes(&self) -> Vec<usize> {
        let sizes = self.events().filter_map(|e| match e {
            Event::StageStarted { servers, .. } => Some(servers.len()),
            _ => None,
        });
        sizes.collect()
    }

    /// Whether any action was issued for a server of the plan.
    fn touched_a_server(&self) -> bool {
        let server = |r: &Rec| matches!(r, Rec::Issue(_, a) if a.server().is_some());
        self.log.iter().any(server)
    }
}

// ---- plans ------------------------------------------------------------------------------

fn id(name: &str) -> ServerId {
    ServerId::new(name).unwrap()
}

fn release(suffix: &str) -> ReleaseId {
    ReleaseId::at(UNIX_EPOCH + Duration::from_secs(1_700_000_000), suffix).unwrap()
}

/// A plan for `servers`, the default policy.
fn plan_of(layout: Layout, servers: Vec<Server>) -> Plan {
    Plan::new("d1", release("new"), layout, servers)
}

/// A plan for mw1..mwN, the default policy.
fn plan(layout: Layout, n: usize) -> Plan {
    plan_of(
        layout,
        (1..=n)
            .map(|k| Server::new(id(&format!("mw{k}"))))
            .collect(),
    )
}

/// Three servers, one failure tolerated (abort beyond), room for a failed server kept out.
fn failing(layout: Layout) -> Plan {
    let mut p = plan(layout, 3);
    p.policy.failure_budget = FailureBudget::Count(1);
    p.policy.on_failure = OnFailure::Abort;
    p.policy.max_unavailable = 2;
    p
}

const LAYOUTS: [Layout; 2] = [Layout::Inplace, Layout::Releases];
const CYCLE: [&str; 6] = [
    "depool",
    "query_pool",
    "activate",
    "canary",
    "query_pool",
    "repool",
];

/// The steps after the first `after` step, leaving out pool reads.
fn steps_after(kinds: &[&'static str], after: &str) -> Vec<&'static str> {
    let k = kinds
        .iter()
        .position(|k| *k == after)
        .unwrap_or_else(|| panic!("no {after} in {kinds:?}"));
    kinds[k + 1..]
        .iter()
        .copied()
        .filter(|k| *k != "query_pool")
        .collect()
}

// ---- 1. the happy path -----------------------------------------------------------------

#[test]
fn happy_path_inplace_deploys_every_server_one_out_at_a_time() {
    let s = Script::new(plan(Layout::Inplace, 4)).run();
    assert_eq!(s.statuses(), [Done; 4]);
    for k in 1..=4 {
        assert_eq!(s.kinds(&format!("mw{k}")), CYCLE);
    }
    let rep = s.r.report();
    assert_eq!((code(rep.verdict), rep.summary.succeeded), (0, 4));
    assert!(rep.left_out.is_empty() && rep.stopped.is_none() && rep.refused.is_none());
    assert_eq!((s.max_out, rep.max_out_of_pool), (1, 1));
    // One server at a time: mw(k+1) is depooled only after mw(k) is back.
    for k in 1..4 {
        assert!(
            s.find(&format!("mw{k}"), "repool", 1, true).0
                < s.find(&format!("mw{}", k + 1), "depool", 1, false).0
        );
    }
}

#[test]
fn happy_path_releases_copies_run_ahead_while_previous_server_is_out() {
    let mut p = plan(Layout::Releases, 4);
    p.policy.parallel = 2;
    let s = Script::new(p).run();
    assert_eq!(s.statuses(), [Done; 4]);
    for k in 1..=4 {
        let kinds = s.kinds(&format!("mw{k}"));
        assert_eq!(kinds[0], "copy");
        assert_eq!(kinds[1..], CYCLE);
    }
    let rep = s.r.report();
    assert_eq!((code(rep.verdict), rep.summary.succeeded), (0, 4));
    assert_eq!(
        (s.max_out, rep.max_out_of_pool),
        (1, 1),
        "parallel 2 never raises max_unavailable 1"
    );
    assert_eq!(s.max_in_flight, 2);
    // mw(k) is out of the pool while the copy to mw(k+1) runs (time intervals overlap).
    for k in 2..4 {
        let (cur, next) = (format!("mw{k}"), format!("mw{}", k + 1));
        let (out_from, out_to) = (
            s.find(&cur, "depool", 1, false).1,
            s.find(&cur, "repool", 1, true).1,
        );
        let (copy_from, copy_to) = (
            s.find(&next, "copy", 1, false).1,
            s.find(&next, "copy", 1, true).1,
        );
        assert!(
            out_from.max(copy_from) < out_to.min(copy_to),
            "{next} copy {copy_from:?}..{copy_to:?}, {cur} out {out_from:?}..{out_to:?}"
        );
    }
}

// ---- 2. each step failing --------------------------------------------------------------

#[test]
fn copy_failure_releases_fails_server_without_depooling_it() {
    let s = Script::new(failing(Layout::Releases))
        .on("mw2", "copy", Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, Failed, Done]);
    assert_eq!(s.kinds("mw2"), ["copy"]);
    let rep = s.r.report();
    assert_eq!((rep.summary.failed, code(rep.verdict)), (1, 1));
    assert!(rep.left_out.is_empty() && rep.stopped.is_none());
}

#[test]
fn depool_failure_puts_server_back_and_fails_it_in_both_layouts() {
    for layout in LAYOUTS {
        let s = Script::new(failing(layout))
            .on("mw2", "depool", Reply::Fail)
            .run();
        assert_eq!(s.statuses(), [Done, Failed, Done], "{layout}");
        let kinds = s.kinds("mw2");
        assert_eq!(
            steps_after(&kinds, "depool"),
            ["repool"],
            "{layout}: {kinds:?}"
        );
        assert!(s.left_out().is_empty(), "{layout}");
        assert!(!s.out.contains("mw2"), "{layout}: mw2 not repooled");
        assert_eq!(code(s.r.report().verdict), 1);
    }
}

#[test]
fn activate_failure_releases_canaries_old_release_repools_and_counts_failed() {
    let s = Script::new(failing(Layout::Releases))
        .on("mw2", "activate", Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, Failed, Done]);
    assert_eq!(
        steps_after(&s.kinds("mw2"), "activate"),
        ["canary", "repool"]
    );
    let rep = s.r.report();
    assert_eq!(
        (
            rep.summary.failed,
            rep.summary.rolled_back,
            code(rep.verdict)
        ),
        (1, 0, 1)
    );
    assert!(rep.left_out.is_empty());
}

#[test]
fn activate_failure_inplace_keeps_server_out_and_reports_it() {
    let s = Script::new(failing(Layout::Inplace))
        .on("mw2", "activate", Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, Failed, Done]);
    assert_eq!(s.kinds("mw2"), ["depool", "query_pool", "activate"]);
    assert_eq!(s.left_out(), ["mw2"]);
    assert_eq!(
        s.r.report().max_out_of_pool,
        2,
        "mw2 kept out while mw3 cycles"
    );
}

#[test]
fn post_activate_hook_failure_releases_rolls_back() {
    let mut p = failing(Layout::Releases);
    for srv in &mut p.servers {
        srv.hooks = HookPoints::of(&[HookPoint::PostActivate]);
    }
    let s = Script::new(p)
        .on_nth("mw2", "hook", 1..=1, Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, RolledBack, Done]);
    assert_eq!(
        steps_after(&s.kinds("mw2"), "activate"),
        ["hook", "rollback", "hook", "canary", "repool"]
    );
    assert!(s.left_out().is_empty());
    assert_eq!(s.r.report().summary.rolled_back, 1);
}

#[test]
fn post_activate_hook_failure_inplace_keeps_server_out() {
    let mut p = failing(Layout::Inplace);
    for srv in &mut p.servers {
        srv.hooks = HookPoints::of(&[HookPoint::PostActivate]);
    }
    let s = Script::new(p).on("mw2", "hook", Reply::Fail).run();
    assert_eq!(s.statuses(), [Done, Failed, Done]);
    assert_eq!(steps_after(&s.kinds("mw2"), "activate"), ["hook"]);
    assert_eq!(s.left_out(), ["mw2"]);
}

#[test]
fn canary_failure_releases_rolls_back_canaries_and_repools() {
    let s = Script::new(failing(Layout::Releases))
        .on_nth("mw2", "canary", 1..=3, Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, RolledBack, Done]);
    let after = steps_after(&s.kinds("mw2"), "activate");
    assert_eq!(
        after,
        ["canary", "canary", "canary", "rollback", "canary", "repool"]
    );
    assert!(s.events().any(
        |e| matches!(e, Event::Rollback { server, ok: true, .. } if server.as_str() == "mw2")
    ));
    let rep = s.r.report();
    assert_eq!((rep.summary.rolled_back, code(rep.verdict)), (1, 1));
    assert!(rep.left_out.is_empty());
}

#[test]
fn canary_failure_inplace_keeps_server_out_never_repooled() {
    let s = Script::new(failing(Layout::Inplace))
        .on("mw2", "canary", Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, Failed, Done]);
    assert_eq!(steps_after(&s.kinds("mw2"), "activate"), ["canary"; 3]);
    assert_eq!(s.left_out(), ["mw2"]);
}

#[test]
fn rollback_failure_keeps_server_out_and_reports_it() {
    let s = Script::new(failing(Layout::Releases))
        .on_nth("mw2", "canary", 1..=3, Reply::Fail)
        .on("mw2", "rollback", Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, Failed, Done]);
    assert_eq!(
        steps_after(&s.kinds("mw2"), "activate"),
        ["canary", "canary", "canary", "rollback"]
    );
    assert_eq!(s.left_out(), ["mw2"]);
}

#[test]
fn repool_failure_keeps_server_out_and_reports_it_in_both_layouts() {
    for layout in LAYOUTS {
        let s = Script::new(failing(layout))
            .on("mw2", "repool", Reply::Fail)
            .run();
        assert_eq!(s.statuses(), [Done, Failed, Done], "{layout}");
        assert_eq!(s.kinds("mw2").last(), Some(&"repool"), "{layout}");
        assert_eq!(s.left_out(), ["mw2"], "{layout}");
    }
}

fn with_gate(layout: Layout) -> Plan {
    let mut p = failing(layout);
    p.policy.error_gate = Some(ErrorGatePolicy::new(60 * SEC, OnUnknown::Fail));
    p
}

#[test]
fn error_gate_failure_releases_depools_rolls_back_canaries_and_repools() {
    let s = Script::new(with_gate(Layout::Releases))
        .on("mw2", "bake", Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, RolledBack, Done]);
    assert_eq!(
        steps_after(&s.kinds("mw2"), "bake"),
        ["depool", "rollback", "canary", "repool"]
    );
    assert_eq!(s.kinds("mw1").last(), Some(&"bake"));
    assert!(s.left_out().is_empty());
}

#[test]
fn error_gate_failure_inplace_depools_and_keeps_out() {
    let s = Script::new(with_gate(Layout::Inplace))
        .on("mw2", "bake", Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, Failed, Done]);
    assert_eq!(steps_after(&s.kinds("mw2"), "bake"), ["depool"]);
    assert_eq!(s.left_out(), ["mw2"]);
}

// ---- 3. canary retries -----------------------------------------------------------------

/// The canary events of `who`: (attempt, ok).
fn canary_attempts(s: &Script, who: &str) -> Vec<(u32, bool)> {
    let attempts = s.events().filter_map(|e| match e {
        Event::Canary {
            server,
            attempt,
            ok,
            ..
        } if server.as_str() == who => Some((*attempt, *ok)),
        _ => None,
    });
    attempts.collect()
}

#[test]
fn canary_passing_on_third_attempt_is_done_after_two_retry_pauses() {
    let mut p = plan(Layout::Releases, 2);
    p.policy.canary.retry_pause = 5 * SEC;
    let s = Script::new(p)
        .on_nth("mw1", "canary", 1..=2, Reply::Fail)
        .run();
    assert_eq!(s.statuses(), [Done, Done]);
    assert_eq!(
        steps_after(&s.kinds("mw1"), "activate"),
        ["canary", "canary", "canary", "repool"]
    );
    let first_failure = s.find("mw1", "canary", 1, true).1;
    assert!(s.find("mw1", "canary", 2, false).1 >= first_failure + 5 * SEC);
    assert!(s.find("mw1", "canary", 3, false).1 >= first_failure + 10 * SEC);
    assert_eq!(
        canary_attempts(&s, "mw1"),
        [(1, false), (2, false), (3, true)]
    );
    assert_eq!(code(s.r.report().verdict), 0);
}

#[test]
fn canary_attempts_setting_is_honoured() {
    let mut p = failing(Layout::Releases);
    p.policy.canary.attempts = 2;
    let s = Script::new(p)
        .on_nth("mw1", "canary", 1..=2, Reply::Fail)
        .run();
    assert_eq!(
        s.statuses()[0],
        RolledBack,
        "two failures are all the attempts there are"
    );
    assert_eq!(
        steps_after(&s.kinds("mw1"), "activate"),
        ["canary", "canary", "rollback", "canary", "repool"]
    );
    assert_eq!(
        canary_attempts(&s, "mw1"),
        [(1, false), (2, false), (1, true)]
    );
}

// ---- 4. prompts ------------------------------------------------------------------------

/// Releases, 3 servers, budget 0, on_failure prompt; mw1's canary fails: it is rolled back.
fn prompting() -> Script {
    Script::new(plan(Layout::Releases, 3)).on_nth("mw1", "canary", 1..=3, Reply::Fail)
}

fn prompt_event(s: &Script, answer: Option<&str>) -> (usize, Duration) {
    let found = s.event(|e| matches!(e, Event::Prompt { answer: a, .. } if a.as_deref() == answer));
    found.unwrap_or_else(|| panic!("no prompt event with answer {answer:?}"))
}

fn final_event(s: &Script, who: &str) -> (usize, Duration) {
    let found = s.event(|e| matches!(e, Event::ServerState { server, state, .. } if server.as_str() == who && state.is_final()));
    found.unwrap_or_else(|| panic!("no final state for {who}"))
}

#[test]
fn failure_prompt_answered_yes_goes_on_and_grows_the_budget() {
    let s = prompting().answer(Some(true)).run();
    assert_eq!(s.statuses(), [RolledBack, Done, Done]);
    let asked = prompt_event(&s, None).0;
    assert!(
        final_event(&s, "mw1").0 < asked,
        "release layout: rolled back before the prompt appears"
    );
    assert!(
        prompt_event(&s, Some("yes")).0 < s.find("mw2", "copy", 1, false).0,
        "mw2 starts after the answer"
    );
    assert_eq!(s.r.snapshot().budget, 1);
    let rep = s.r.report();
    assert_eq!((rep.stopped, code(rep.verdict)), (None, 1));
}

#[test]
fn failure_prompt_answered_no_stops_and_skips_pending_servers() {
    let s = prompting().answer(Some(false)).run();
    assert_eq!(s.statuses(), [RolledBack, Skipped, Skipped]);
    assert!(s.kinds("mw2").is_empty() && s.kinds("mw3").is_empty());
    prompt_event(&s, Some("no"));
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict)),
        (Some(StopReason::Operator), 1)
    );
    assert_eq!(rep.summary.skipped, 2);
}

#[test]
fn failure_prompt_unanswered_stops_after_300s_with_answer_timeout() {
    let s = prompting().answer(None).run();
    assert_eq!(s.statuses(), [RolledBack, Skipped, Skipped]);
    let (asked, answered) = (
        prompt_event(&s, None).1,
        prompt_event(&s, Some("timeout")).1,
    );
    assert_eq!(answered - asked, 300 * SEC);
    assert!(s.kinds("mw2").is_empty());
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict)),
        (Some(StopReason::PromptTimeout), 1)
    );
}

// ---- 5. the failure budget with on_failure abort ---------------------------------------

#[test]
fn abort_beyond_budget_lets_running_servers_finish_and_starts_no_new_one() {
    let mut p = plan(Layout::Releases, 6);
    p.policy.parallel = 2;
    p.policy.failure_budget = FailureBudget::Count(1);
    p.policy.on_failure = OnFailure::Abort;
    let s = Script::new(p)
        .on_nth("mw1", "canary", 1..=3, Reply::Fail)
        .on("mw3", "copy", Reply::Fail)
        .run();
    assert_eq!(
        s.statuses(),
        [RolledBack, Done, Failed, Skipped, Skipped, Skipped]
    );
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict)),
        (Some(StopReason::FailureBudget), 1)
    );
    let stop = s
        .event(|e| matches!(e, Event::Stopping { .. }))
        .expect("a stopping event")
        .0;
    // mw2 was out of the pool when the deploy stopped, and finished its cycle.
    assert!(
        s.find("mw2", "depool", 1, false).0 < stop && stop < s.find("mw2", "repool", 1, true).0
    );
    let started: BTreeSet<String> = s.log[..stop]
        .iter()
        .filter_map(|r| match r {
            Rec::Issue(_, a) if matches!(a.target, Target::Server(_)) => Some(who(a)),
            _ => None,
        })
        .collect();
    for r in &s.log[stop..] {
        if let Rec::Issue(_, a) = r {
            assert!(
                started.contains(&who(a)),
                "{} started after stopping: {a:?}",
                who(a)
            );
        }
    }
    assert!((4..=6).all(|k| s.kinds(&format!("mw{k}")).is_empty()));
}

// ---- 6. on_failure continue in the in-place layout -------------------------------------

fn continuing(max_unavailable: u32) -> Script {
    let mut p = plan(Layout::Inplace, 4);
    p.policy.on_failure = OnFailure::Continue;
    p.policy.max_unavailable = max_unavailable;
    Script::new(p).on("mw2", "canary", Reply::Fail)
}

#[test]
fn continue_inplace_with_room_goes_on_to_the_end() {
    let s = continuing(2).run();
    assert_eq!(s.statuses(), [Done, Failed, Done, Done]);
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict), rep.max_out_of_pool),
        (None, 1, 2)
    );
    assert_eq!(s.left_out(), ["mw2"]);
}

#[test]
fn continue_inplace_without_room_stops_with_no_room_and_says_why() {
    let s = continuing(1).run();
    assert_eq!(s.statuses(), [Done, Failed, Skipped, Skipped]);
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict)),
        (Some(StopReason::NoRoom), 1)
    );
    assert_eq!(s.left_out(), ["mw2"]);
    let detail = s.events().find_map(|e| match e {
        Event::Stopping {
            reason: StopReason::NoRoom,
            detail,
        } => Some(detail.clone()),
        _ => None,
    });
    let detail = detail.expect("a stopping event for no room");
    assert!(
        detail.contains("mw2") && detail.contains("max_unavailable"),
        "{detail}"
    );
    assert!(s.kinds("mw3").is_empty() && s.kinds("mw4").is_empty());
}

// ---- 7. --force --------------------------------------------------------------------------

#[test]
fn force_repools_a_server_whose_canary_fails_as_warned_exit_0() {
    for layout in LAYOUTS {
        let mut p = plan(layout, 3);
        p.policy.force = true;
        let s = Script::new(p).on("mw2", "canary", Reply::Fail).run();
        assert_eq!(s.statuses(), [Done, Warned, Done], "{layout}");
        assert_eq!(
            steps_after(&s.kinds("mw2"), "activate"),
            ["canary", "canary", "canary", "repool"],
            "{layout}"
        );
        let rep = s.r.report();
        assert_eq!((rep.summary.warned, code(rep.verdict)), (1, 0), "{layout}");
        assert!(rep.left_out.is_empty() && rep.stopped.is_none(), "{layout}");
    }
}

fn with_staging(force: bool) -> Script {
    let mut p = plan(Layout::Releases, 2);
    p.staging = Some(Server::new(id("deploy1")));
    p.policy.force = force;
    Script::new(p).on("staging", "canary", Reply::Fail)
}

#[test]
fn force_goes_on_after_a_failing_staging_canary() {
    let s = with_staging(true).run();
    assert!(s.events().any(|e| matches!(e, Event::PrepStep { step, status: PrepStatus::Warned, .. } if step == "staging_canary")));
    assert_eq!(s.kinds("staging"), ["canary"; 3]);
    assert_eq!(s.statuses(), [Done, Done]);
    assert_eq!(code(s.r.report().verdict), 0);
}

#[test]
fn failing_staging_canary_without_force_refuses_before_any_server_action() {
    let s = with_staging(false).run();
    assert!(!s.touched_a_server());
    assert!(
        s.kinds("fleet").is_empty(),
        "refused before the pool preflight"
    );
    assert_eq!(s.statuses(), [Skipped, Skipped]);
    let rep = s.r.report();
    assert_eq!(code(rep.verdict), 3);
    assert!(rep.refused.is_some());
}

// ---- 8. stop and interrupt mid-stage -----------------------------------------------------

#[test]
fn operator_stop_lets_the_depooled_server_finish_and_skips_pending() {
    let mut p = plan(Layout::Releases, 4);
    p.policy.parallel = 2;
    let s = Script::new(p)
        .decide_on("mw2", "activate", Decision::Stop(StopReason::Operator))
        .run();
    assert_eq!(s.statuses(), [Done, Done, Skipped, Skipped]);
    let stop = s.event(|e| matches!(e, Event::Stopping { .. })).unwrap().0;
    assert!(
        s.find("mw2", "depool", 1, false).0 < stop && stop < s.find("mw2", "repool", 1, true).0
    );
    assert_eq!(s.kinds("mw3"), ["copy"], "copied ahead, never depooled");
    assert!(s.kinds("mw4").is_empty());
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict)),
        (Some(StopReason::Operator), 1)
    );
    assert!(rep.left_out.is_empty());
}

#[test]
fn operator_abort_while_a_server_is_out_puts_it_back_before_ending() {
    let s = Script::new(plan(Layout::Inplace, 3))
        .decide_on("mw1", "activate", Decision::Abort)
        .run();
    assert_eq!(s.statuses(), [Done, Skipped, Skipped]);
    assert!(s.find("mw1", "repool", 1, true).0 > 0);
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict)),
        (Some(StopReason::Operator), 1)
    );
    assert!(rep.left_out.is_empty());
}

#[test]
fn interrupt_exits_130_after_repooling_the_depooled_server() {
    let s = Script::new(plan(Layout::Inplace, 3))
        .decide_on("mw1", "canary", Decision::Stop(StopReason::Interrupted))
        .run();
    assert_eq!(s.statuses(), [Done, Skipped, Skipped]);
    let stop = s
        .event(|e| {
            matches!(
                e,
                Event::Stopping {
                    reason: StopReason::Interrupted,
                    ..
                }
            )
        })
        .unwrap()
        .0;
    assert!(stop < s.find("mw1", "repool", 1, true).0);
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict)),
        (Some(StopReason::Interrupted), 130)
    );
    assert!(rep.left_out.is_empty() && s.out.is_empty());
}

#[test]
fn interrupt_keeps_out_and_reports_a_depooled_server_whose_canary_fails() {
    let stop = Decision::Stop(StopReason::Interrupted);
    let s = Script::new(plan(Layout::Inplace, 3)).decide_on("mw1", "canary", stop);
    let s = s.on("mw1", "canary", Reply::Fail).run();
    assert_eq!(s.statuses(), [Failed, Skipped, Skipped]);
    assert!(
        !s.kinds("mw1").contains(&"repool"),
        "rule 2: never back while its canary fails"
    );
    assert_eq!(s.left_out(), ["mw1"]);
    assert_eq!(code(s.r.report().verdict), 130);
}

// ---- 9. stage sizes and plan errors ----------------------------------------------------

fn sizes(p: &Plan) -> Vec<usize> {
    p.stages().unwrap().iter().map(Vec::len).collect()
}

#[test]
fn percent_stages_round_up_and_the_last_value_repeats() {
    let cases: [(usize, Vec<StageSize>, Vec<usize>); 3] = [
        (
            10,
            vec![
                StageSize::Count(1),
                StageSize::Percent(10),
                StageSize::Percent(100),
            ],
            vec![1, 1, 8],
        ),
        (10, vec![StageSize::Percent(30)], vec![3, 3, 3, 1]),
        (7, vec![StageSize::Percent(50)], vec![4, 3]),
    ];
    for (n, stages, want) in cases {
        let mut p = plan(Layout::Inplace, n);
        p.policy.stages = stages;
        assert_eq!(sizes(&p), want);
        let s = Script::new(p).run();
        assert_eq!(s.stage_sizes(), want);
        assert_eq!(s.statuses(), vec![Done; n]);
    }
}

#[test]
fn bad_plans_are_refused_with_the_matching_plan_error() {
    let err = |f: &dyn Fn(&mut Plan)| {
        let mut p = plan(Layout::Inplace, 3);
        f(&mut p);
        let e = p.stages().unwrap_err();
        assert_eq!(Rollout::new(p, Instant::now()).unwrap_err(), e);
        e
    };
    let stages = |v: Vec<StageSize>| move |p: &mut Plan| p.policy.stages = v.clone();
    let e = err(&stages(vec![StageSize::Count(1), StageSize::Percent(0)]));
    assert_eq!(
        e,
        PlanError::PercentOutOfRange {
            index: 2,
            percent: 0
        }
    );
    let e = err(&stages(vec![StageSize::Percent(101)]));
    assert_eq!(
        e,
        PlanError::PercentOutOfRange {
            index: 1,
            percent: 101
        }
    );
    assert_eq!(
        err(&stages(vec![StageSize::Count(0)])),
        PlanError::ZeroStage { index: 1 }
    );
    assert_eq!(err(&stages(vec![])), PlanError::NoStages);
    let mixed = vec![StageSize::Count(1), StageSize::Group("canary".into())];
    assert_eq!(err(&stages(mixed)), PlanError::MixedStages);
    let e = err(&stages(vec![StageSize::Group("nope".into())]));
    assert_eq!(
        e,
        PlanError::UnknownGroup {
            index: 1,
            group: "nope".into()
        }
    );
    let e = err(&|p: &mut Plan| p.servers.push(Server::new(id("mw2"))));
    assert_eq!(e, PlanError::DuplicateServer { server: id("mw2") });
    assert_eq!(
        err(&|p: &mut Plan| p.servers.clear()),
        PlanError::EmptySelection
    );
    assert_eq!(
        err(&|p: &mut Plan| p.policy.parallel = 0),
        PlanError::ZeroParallel
    );
    let e = err(&|p: &mut Plan| p.policy.max_unavailable = 0);
    assert_eq!(e, PlanError::ZeroMaxUnavailable { server: id("mw1") });
}

// ---- 10. group stages ------------------------------------------------------------------

fn grouped(groups: &[&str]) -> Plan {
    let servers = groups.iter().enumerate();
    let servers = servers.map(|(k, g)| Server::new(id(&format!("mw{}", k + 1))).in_group(*g));
    let mut p = plan_of(Layout::Inplace, servers.collect());
    p.policy.stages = vec![
        StageSize::Group("canary".into()),
        StageSize::Group("main".into()),
    ];
    p
}

#[test]
fn group_stages_run_the_canary_group_first() {
    let s = Script::new(grouped(&["main", "canary", "main", "canary"])).run();
    let stages: Vec<Vec<String>> = s
        .events()
        .filter_map(|e| match e {
            Event::StageStarted { servers, .. } => {
                Some(servers.iter().map(|s| s.to_string()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(stages, [["mw2", "mw4"], ["mw1", "mw3"]]);
    let canaries_back = s
        .find("mw2", "repool", 1, true)
        .0
        .max(s.find("mw4", "repool", 1, true).0);
    let main_starts = s
        .find("mw1", "depool", 1, false)
        .0
        .min(s.find("mw3", "depool", 1, false).0);
    assert!(canaries_back < main_starts);
    assert_eq!(s.statuses(), [Done; 4]);
}

#[test]
fn group_stages_refuse_a_server_in_no_listed_group() {
    let p = grouped(&["canary", "main", "other"]);
    let want = PlanError::ServerInNoStage {
        server: id("mw3"),
        group: Some("other".into()),
    };
    assert_eq!(p.stages().unwrap_err(), want);
    assert_eq!(Rollout::new(p, Instant::now()).unwrap_err(), want);
    let mut p = grouped(&["canary", "main"]);
    p.servers.push(Server::new(id("mw3")));
    assert_eq!(
        p.stages().unwrap_err(),
        PlanError::ServerInNoStage {
            server: id("mw3"),
            group: None
        }
    );
}

// ---- 11. servers not behind the balancer -----------------------------------------------

fn job(name: &str) -> Server {
    Server::new(id(name)).unpooled(vec!["systemctl".into(), "is-active".into(), "x".into()])
}

#[test]
fn unpooled_servers_are_never_depooled_and_take_no_room() {
    let mut p = plan_of(
        Layout::Inplace,
        vec![Server::new(id("mw1")), job("job1"), job("job2")],
    );
    p.policy.parallel = 3;
    let s = Script::new(p).run();
    assert_eq!(s.statuses(), [Done; 3]);
    assert_eq!(s.kinds("mw1"), CYCLE);
    for j in ["job1", "job2"] {
        assert_eq!(s.kinds(j), ["activate", "canary"]);
        // It ran while mw1 was out of the pool: it did not wait for room.
        assert!(s.find(j, "activate", 1, true).0 > s.find("mw1", "depool", 1, false).0);
        assert!(s.find(j, "activate", 1, false).0 < s.find("mw1", "repool", 1, true).0);
    }
    assert_eq!((s.max_in_flight, s.r.report().max_out_of_pool), (3, 1));
}

#[test]
fn only_unpooled_servers_need_no_pool_and_no_room() {
    let mut p = plan_of(Layout::Releases, vec![job("job1"), job("job2")]);
    p.policy.max_unavailable = 0;
    let s = Script::new(p).run();
    assert_eq!(s.statuses(), [Done; 2]);
    assert!(s.kinds("fleet").is_empty(), "no pool preflight");
    assert_eq!(s.kinds("job1"), ["copy", "activate", "canary"]);
    assert_eq!(s.r.report().max_out_of_pool, 0);
}

// ---- 12. the pool preflight ------------------------------------------------------------

#[test]
fn preflight_refuses_when_a_selected_server_is_down() {
    let s = Script::new(plan(Layout::Inplace, 3))
        .pool_state("mw2", PoolState::Down)
        .run();
    assert!(!s.touched_a_server());
    assert_eq!(s.statuses(), [Skipped; 3]);
    let rep = s.r.report();
    assert_eq!(code(rep.verdict), 3);
    assert!(
        rep.refused.as_deref().unwrap_or_default().contains("mw2"),
        "{:?}",
        rep.refused
    );
}

#[test]
fn preflight_with_force_deploys_a_down_server_without_pool_changes_and_reports_it() {
    let mut p = plan(Layout::Inplace, 3);
    p.policy.force = true;
    p.policy.max_unavailable = 2;
    let s = Script::new(p).pool_state("mw2", PoolState::Down).run();
    assert_eq!(s.statuses(), [Done; 3]);
    assert_eq!(s.kinds("mw2"), ["activate", "canary"]);
    assert_eq!(s.left_out(), ["mw2"]);
    assert_eq!(
        s.r.report().max_out_of_pool,
        2,
        "mw2 out all along, plus one of ours"
    );
    let warned = |e: &Event| matches!(e, Event::PrepStep { step, status: PrepStatus::Warned, .. } if step == "pool_preflight");
    assert!(s.events().any(warned));
    // With max_unavailable 1, mw2 being out leaves no room for anyone: refused even forced.
    let mut p = plan(Layout::Inplace, 3);
    p.policy.force = true;
    let s = Script::new(p).pool_state("mw2", PoolState::Down).run();
    assert_eq!(
        (code(s.r.report().verdict), s.touched_a_server()),
        (3, false)
    );
}

#[test]
fn preflight_counts_an_outsider_out_of_the_pool_against_max_unavailable() {
    let s = Script::new(plan(Layout::Inplace, 2))
        .pool_state("mw9", PoolState::Maint)
        .run();
    assert_eq!(
        (code(s.r.report().verdict), s.touched_a_server()),
        (3, false)
    );
    assert_eq!(s.statuses(), [Skipped; 2]);
    let mut p = plan(Layout::Inplace, 2);
    p.policy.max_unavailable = 2;
    let s = Script::new(p).pool_state("mw9", PoolState::Maint).run();
    assert_eq!(s.statuses(), [Done; 2]);
    assert_eq!(s.r.report().max_out_of_pool, 2, "mw9 plus one of ours");
}

#[test]
fn preflight_refuses_when_the_pool_cannot_be_read() {
    let s = Script::new(plan(Layout::Releases, 2))
        .on("fleet", "query_pool", Reply::Fail)
        .run();
    assert_eq!(
        (code(s.r.report().verdict), s.touched_a_server()),
        (3, false)
    );
    assert!(s.r.report().refused.is_some());
    assert_eq!(s.statuses(), [Skipped; 2]);
}

// ---- 13. a balancer reload that forgets a depool ---------------------------------------

#[test]
fn balancer_reload_after_depool_makes_the_machine_depool_again() {
    let up = Reply::With(Outcome::State(PoolState::Up));
    let s = Script::new(failing(Layout::Inplace))
        .on_nth("mw1", "query_pool", 1..=1, up)
        .run();
    assert_eq!(s.statuses(), [Done; 3]);
    assert_eq!(
        s.kinds("mw1"),
        [
            "depool",
            "query_pool",
            "depool",
            "query_pool",
            "activate",
            "canary",
            "query_pool",
            "repool"
        ]
    );
    assert!(s
        .events()
        .any(|e| matches!(e, Event::Warning { server: Some(w), .. } if w.as_str() == "mw1")));
}

#[test]
fn balancer_reload_twice_restores_and_fails_the_server() {
    let up = Reply::With(Outcome::State(PoolState::Up));
    let s = Script::new(failing(Layout::Inplace))
        .on_nth("mw1", "query_pool", 1..=2, up)
        .run();
    assert_eq!(s.statuses(), [Failed, Done, Done]);
    assert_eq!(
        s.kinds("mw1"),
        ["depool", "query_pool", "depool", "query_pool", "repool"]
    );
    assert!(s.left_out().is_empty());
}

// ---- 14. a hung step -------------------------------------------------------------------

#[test]
fn hung_step_times_out_at_its_deadline_and_a_late_completion_is_ignored() {
    let mut p = failing(Layout::Releases);
    p.policy.timeouts.activate = 60 * SEC;
    let late = Reply::Late(Duration::from_millis(60_500));
    let mut s = Script::new(p).on("mw1", "activate", late).run();
    assert_eq!(s.statuses(), [Failed, Done, Done]);
    assert_eq!(
        steps_after(&s.kinds("mw1"), "activate"),
        ["canary", "repool"]
    );
    let activate = s.log.iter().find_map(|r| match r {
        Rec::Issue(_, a) if who(a) == "mw1" && a.kind == ActionKind::Activate => {
            Some((**a).clone())
        }
        _ => None,
    });
    let activate = activate.unwrap();
    assert_eq!(
        s.t0 + s.find("mw1", "canary", 1, false).1,
        activate.deadline,
        "timed out exactly at the deadline"
    );
    // The late answer came while mw1's canary ran, and changed nothing.
    let late_at = s.find("mw1", "activate", 1, true).0;
    assert!(
        s.find("mw1", "canary", 1, false).0 < late_at
            && late_at < s.find("mw1", "canary", 1, true).0
    );
    assert_eq!(canary_attempts(&s, "mw1"), [(1, true)]);
    let detail = s.events().find_map(|e| match e {
        Event::ServerState {
            server,
            state: Failed,
            detail,
        } if server.as_str() == "mw1" => detail.clone(),
        _ => None,
    });
    assert!(detail.unwrap_or_default().contains("deadline"));
    let before = s.r.report();
    let now = s.now;
    s.r.handle_completion(now, activate.id, Outcome::Done);
    assert_eq!(s.r.report(), before);
    assert!(s.r.poll_action().is_none());
}

#[test]
fn hung_repool_times_out_and_the_server_is_reported_out() {
    let s = Script::new(failing(Layout::Inplace))
        .on("mw1", "repool", Reply::Hang)
        .run();
    assert_eq!(s.statuses(), [Failed, Done, Done]);
    assert_eq!(s.left_out(), ["mw1"]);
    assert_eq!(
        final_event(&s, "mw1").1,
        s.find("mw1", "repool", 1, false).1 + 60 * SEC
    );
}

// ---- 15. approval between stages -------------------------------------------------------

fn approving() -> Script {
    let mut p = plan(Layout::Releases, 3);
    p.policy.stages = vec![StageSize::Count(1), StageSize::Percent(100)];
    p.policy.approve_stages = true;
    Script::new(p)
}

#[test]
fn approve_stages_asks_after_stage_one_and_no_skips_stage_two() {
    let s = approving().answer(Some(false)).run();
    assert_eq!(s.statuses(), [Done, Skipped, Skipped]);
    let finished = s
        .event(|e| matches!(e, Event::StageFinished { stage: 1 }))
        .unwrap()
        .0;
    assert!(
        final_event(&s, "mw1").0 < prompt_event(&s, None).0 && finished < prompt_event(&s, None).0
    );
    assert_eq!(s.stage_sizes(), [1]);
    assert!(s.kinds("mw2").is_empty() && s.kinds("mw3").is_empty());
    let rep = s.r.report();
    assert_eq!(
        (rep.stopped, code(rep.verdict)),
        (Some(StopReason::Operator), 1)
    );
}

#[test]
fn approve_stages_yes_starts_stage_two() {
    let s = approving().answer(Some(true)).run();
    assert_eq!(s.statuses(), [Done; 3]);
    assert_eq!(s.stage_sizes(), [1, 2]);
    let started = s
        .event(|e| matches!(e, Event::StageStarted { stage: 2, .. }))
        .unwrap()
        .0;
    assert!(prompt_event(&s, Some("yes")).0 < started);
    assert_eq!(code(s.r.report().verdict), 0);
}

// ---- the operator's pool menu ------------------------------------------------------------

fn warned(s: &Script, text: &str) -> bool {
    s.events()
        .any(|e| matches!(e, Event::Warning { detail, .. } if detail.contains(text)))
}

#[test]
fn the_pool_menu_takes_a_done_server_out_and_puts_it_back_through_the_engine() {
    let mut p = plan(Layout::Inplace, 3);
    p.policy.max_unavailable = 2;
    let s = Script::new(p)
        .pool_on("mw2", "depool", "mw1", true)
        .pool_on("mw3", "depool", "mw1", false)
        .run();
    assert_eq!(s.statuses(), [Done; 3]);
    // mw1: its cycle, then the operator's depool, then a canary and a repool.
    assert_eq!(
        s.kinds("mw1")[CYCLE.len()..],
        ["depool", "canary", "repool"],
        "{:?}",
        s.kinds("mw1")
    );
    assert!(warned(
        &s,
        "pool: mw1 taken out of the pool by the operator"
    ));
    assert!(warned(
        &s,
        "pool: mw1 put back into the pool by the operator"
    ));
    let rep = s.r.report();
    assert!(rep.left_out.is_empty(), "{rep:?}");
    assert_eq!((s.max_out, rep.max_out_of_pool), (2, 2));
    assert_eq!(code(rep.verdict), 0);
}

#[test]
fn the_pool_menu_refuses_what_would_break_a_rule() {
    let s = Script::new(plan(Layout::Inplace, 2))
        .pool_on("mw1", "depool", "mw2", true)
        .pool_on("mw1", "canary", "mw1", true)
        .pool_on("mw2", "depool", "mw1", true)
        .pool_on("mw2", "canary", "mw9", true)
        .run();
    assert!(warned(&s, "pool: mw2 has not had its turn yet"));
    assert!(warned(&s, "pool: mw1 is in its deploy cycle"));
    assert!(warned(
        &s,
        "pool: no room to take mw1 out: 1 of max_unavailable 1 out"
    ));
    assert!(warned(&s, "pool: mw9 is not a server of this deploy"));
    // Nothing happened beyond the deploy itself.
    assert_eq!(s.kinds("mw1"), CYCLE);
    assert_eq!(s.kinds("mw2"), CYCLE);
    assert_eq!(code(s.r.report().verdict), 0);
}

#[test]
fn a_server_held_out_or_failing_its_manual_canary_is_reported_at_the_end() {
    let mut p = plan(Layout::Releases, 3);
    p.policy.max_unavailable = 3;
    let s = Script::new(p)
        // mw1 passes its cycle's canary, then fails every canary of the manual repool.
        .on_nth("mw1", "canary", 2..=u32::MAX, Reply::Fail)
        .pool_on("mw2", "depool", "mw1", true)
        .pool_on("mw3", "depool", "mw1", false)
        .pool_on("mw3", "canary", "mw2", true)
        .run();
    assert_eq!(s.statuses(), [Done; 3]);
    assert!(warned(&s, "pool: mw1 failed its canary"));
    let mut out = s.left_out();
    out.sort();
    assert_eq!(out, ["mw1", "mw2"]);
    let rep = s.r.report();
    assert!(rep
        .left_out
        .iter()
        .all(|(_, why)| why == "held out of the pool by the operator"));
    // Never a repool after the failed canaries.
    assert_eq!(s.kinds("mw1").iter().filter(|k| **k == "repool").count(), 1);
}

// ---- room under max_unavailable, read again before each depool -------------------------

/// mw1..mw3 one at a time, the pool read again before each depool, and `mw9`, not in
/// the plan, in the balancer's backend.
fn rereading(room_timeout: Duration) -> Script {
    let mut p = plan(Layout::Releases, 3);
    p.policy.reread_pool = true;
    p.policy.room_timeout = room_timeout;
    Script::new(p).pool_state("mw9", PoolState::Up)
}

#[test]
fn reread_pool_reads_the_pool_before_every_depool() {
    let s = rereading(60 * SEC).run();
    assert_eq!(s.statuses(), [Done; 3]);
    // The preflight, then one read before each of the three depools.
    assert_eq!(s.kinds("fleet"), ["query_pool"; 4]);
    for k in 1..=3 {
        let depool = s.find(&format!("mw{k}"), "depool", 1, false).0;
        let read = s.find("fleet", "query_pool", k + 1, true).0;
        assert!(
            read < depool,
            "mw{k}: the read is answered before its depool"
        );
    }
}

#[test]
fn reread_pool_waits_for_a_server_that_went_out_since_the_preflight() {
    // mw9 goes down while mw1's copy runs and comes back 20 s later; mw2 (ours, done
    // by then) goes down later and comes back 15 s after. Each time the next depool waits.
    for (who, down, up) in [("mw9", 1, 21), ("mw1", 12, 27)] {
        let s = rereading(60 * SEC)
            .change_at(down * SEC, who, PoolState::Down)
            .change_at(up * SEC, who, PoolState::Up)
            .run();
        assert_eq!(s.statuses(), [Done; 3], "{who}");
        assert!(
            warned(&s, &format!("{who} DOWN")),
            "{who}: the wait is said"
        );
        let depools: Vec<Duration> = (1..=3)
            .map(|k| s.find(&format!("mw{k}"), "depool", 1, false).1)
            .collect();
        assert!(
            depools.iter().any(|t| *t >= up * SEC),
            "{who}: a depool waited for it: {depools:?}"
        );
        assert!(
            depools.iter().all(|t| *t < down * SEC || *t >= up * SEC),
            "{who}: no depool while it was out: {depools:?}"
        );
        assert_eq!(s.r.report().max_out_of_pool, 1, "{who}");
    }
}

#[test]
fn reread_pool_stops_for_no_room_when_the_server_stays_out() {
    let s = rereading(10 * SEC)
        .change_at(SEC, "mw9", PoolState::Maint)
        .run();
    assert_eq!(s.statuses(), [Skipped; 3]);
    let rep = s.r.report();
    assert_eq!(rep.stopped, Some(StopReason::NoRoom));
    assert_eq!(code(rep.verdict), 1);
    assert!(!s.kinds("mw1").contains(&"depool"));
    assert!(warned(&s, "mw9 MAINT"));
    let stop = s.event(|e| {
        matches!(e, Event::Stopping { detail, .. } if detail.contains("no room") && detail.contains("mw9 MAINT"))
    });
    let (_, at) = stop.expect("a stop that names mw9");
    assert!(at >= 10 * SEC, "it waited room_timeout first: {at:?}");
}

#[test]
fn without_reread_pool_only_the_preflight_reads_the_pool() {
    let s = Script::new(plan(Layout::Releases, 3)).run();
    assert_eq!(s.kinds("fleet"), ["query_pool"]);
}

#[test]
fn reread_pool_reads_again_after_a_pre_depool_hook_and_waits_for_what_went_out_meanwhile() {
    // mw1's pre_depool hook takes 10 s; mw9 goes down 2 s into it and comes back at 30 s.
    // The read before the hook saw nothing; the one after it sees mw9, so mw1's depool
    // waits, without running its hook again.
    let mut s = rereading(60 * SEC);
    s.r = {
        let mut p = s.r.plan().clone();
        for srv in &mut p.servers {
            srv.hooks = HookPoints::of(&[HookPoint::PreDepool]);
        }
        Rollout::new(p, s.t0).unwrap()
    };
    let s = s
        .on_nth("mw1", "hook", 1..=1, Reply::Late(10 * SEC))
        .change_at(6 * SEC, "mw9", PoolState::Down)
        .change_at(30 * SEC, "mw9", PoolState::Up)
        .run();
    assert_eq!(s.statuses(), [Done; 3]);
    let kinds = s.kinds("mw1");
    assert_eq!(
        kinds.iter().filter(|k| **k == "hook").count(),
        1,
        "{kinds:?}"
    );
    let (hook_done, _) = s.find("mw1", "hook", 1, true);
    let (depool, at) = s.find("mw1", "depool", 1, false);
    let read_between = s.log[hook_done..depool].iter().any(|r| {
        matches!(r, Rec::Done(_, a) if a.kind == ActionKind::QueryPool && a.target == Target::Fleet)
    });
    assert!(read_between, "a pool read between the hook and the depool");
    assert!(at >= 30 * SEC, "mw1 depooled at {at:?}, while mw9 was down");
    assert!(warned(&s, "mw9 DOWN"));
}

#[test]
fn reread_pool_counts_a_kept_server_the_operator_put_back_once_it_goes_down_again() {
    // mw1 fails its canary and is kept out; the operator puts it back (pool menu) while
    // mw2 deploys. Later mw1 and mw9 go down on their own: with max_unavailable 2, mw3
    // must wait until they are back, mw1 no longer counted as kept out (it was, and mw3
    // went out beside both).
    let mut p = plan(Layout::Inplace, 3);
    p.policy.max_unavailable = 2;
    p.policy.reread_pool = true;
    p.policy.failure_budget = FailureBudget::Count(1);
    // mw3 in a stage of its own after a 10 s bake: mw1 and mw9 go down meanwhile.
    p.policy.stages = vec![StageSize::Count(2), StageSize::Percent(100)];
    p.policy.bake = 10 * SEC;
    let s = Script::new(p)
        .pool_state("mw9", PoolState::Up)
        .on_nth("mw1", "canary", 1..=3, Reply::Fail)
        .pool_on("mw2", "depool", "mw1", false)
        .change_at(25 * SEC, "mw1", PoolState::Down)
        .change_at(25 * SEC, "mw9", PoolState::Down)
        .change_at(50 * SEC, "mw9", PoolState::Up)
        .change_at(50 * SEC, "mw1", PoolState::Up)
        .run();
    assert!(warned(
        &s,
        "pool: mw1 put back into the pool by the operator"
    ));
    let (_, repooled) = s.find("mw1", "repool", 1, true);
    let (_, mw3) = s.find("mw3", "depool", 1, false);
    assert!(
        repooled < 25 * SEC,
        "mw1 back before it goes down: {repooled:?}"
    );
    assert!(
        mw3 >= 50 * SEC,
        "mw3 depooled at {mw3:?}, while mw1 and mw9 were down"
    );
    assert!(warned(&s, "mw1 DOWN"));
}
