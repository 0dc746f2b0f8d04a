//! mwdeploy-sim: a simulated fleet: the real machine, fake ports with seeded faults,
//! virtual time; and the conformance suite every implementation of a port passes.
//!
//! Like turmoil, it is a crate of its own: adapters take it as a dev-dependency for
//! [`conformance`], embedders use it to try their policies, `mwdeploy simulate` runs it.
//!
//! [`Simulation`] steps a [`Rollout`] directly (no tokio): each action is handed to a
//! [`FleetModel`], which decides from one seeded generator whether it fails, hangs or
//! runs slow and how long it takes; the answer comes back at that virtual instant.
//! A [`Checker`] looks at every action, answer and event and records every broken rule.
//! Same seed, same plan: the same trace, to the event.
//!
//! ```
//! use mwdeploy_sim::{Faults, Simulation};
//! use mwdeploy_core::Layout;
//! let report = Simulation::new(20, 42)
//!     .layout(Layout::Releases)
//!     .faults(Faults::chaos(0.05))
//!     .policy(|p| p.failure_budget = mwdeploy_core::plan::FailureBudget::Count(20))
//!     .run()
//!     .unwrap();
//! report.assert_ok();
//! ```
//!
//! A failing run names its seed; `MWDEPLOY_SIM_SEED=<seed>` reruns it (see [`seed_from_env`]).

#![warn(missing_docs)]

mod check;
pub mod conformance;
mod faults;
mod fleet;
mod rng;
mod scenario;

pub use check::Checker;
pub use faults::Faults;
pub use fleet::{Code, FleetModel, Planned, SimFleet};
pub use rng::Rng;
pub use scenario::random_scenario;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mwdeploy_core::action::{Action, ActionKind, Decision, StopReason};
use mwdeploy_core::error::PlanError;
use mwdeploy_core::event::{Event, Summary};
use mwdeploy_core::model::{Layout, PoolState, ReleaseId, Server, ServerId};
use mwdeploy_core::plan::{OnFailure, Plan, Policy};
use mwdeploy_core::rollout::{Report, Rollout};

/// The virtual wall clock's start: a simulation's times and release ids count from here.
pub fn sim_epoch() -> SystemTime {
    // 2026-01-01T00:00:00Z
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// The seed in `MWDEPLOY_SIM_SEED`, if set and a number.
pub fn seed_from_env() -> Option<u64> {
    std::env::var("MWDEPLOY_SIM_SEED").ok()?.trim().parse().ok()
}

/// How the simulated operator answers prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Always yes.
    Yes,
    /// Always no.
    No,
    /// Never answers: every prompt times out (the safe answer, stop).
    Silent,
    /// Yes, no or silence, drawn from the seed.
    Random,
}

/// A simulated deploy, set up with builder methods and run with [`Simulation::run`].
#[derive(Debug, Clone)]
pub struct Simulation {
    plan: Plan,
    seed: u64,
    faults: Faults,
    operator: Operator,
    think: Duration,
    outsiders: Vec<(ServerId, PoolState)>,
    down: Vec<(ServerId, PoolState)>,
    decisions: Vec<(Duration, Decision)>,
}

/// What a simulation found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimReport {
    /// The seed that drove it.
    pub seed: u64,
    /// Servers deployed to.
    pub servers: usize,
    /// Virtual time from start to the last event.
    pub virtual_duration: Duration,
    /// The most servers out of the pool at once, as the fleet saw it.
    pub max_out_of_pool: u32,
    /// Every broken rule, in order; empty when all six held.
    pub violations: Vec<String>,
    /// Counts by final state.
    pub summary: Summary,
    /// The machine's own report.
    pub report: Report,
    /// Steps taken (answers, timers, decisions).
    pub steps: u64,
    /// Events emitted.
    pub events: u64,
}

impl SimReport {
    /// Panics, naming the seed and how to rerun it, when a rule broke.
    pub fn assert_ok(&self) {
        assert!(
            self.violations.is_empty(),
            "simulation with seed {seed} broke the rules (rerun: MWDEPLOY_SIM_SEED={seed}):\n  {}",
            self.violations.join("\n  "),
            seed = self.seed
        );
    }

    /// The `simulation_report` line of `mwdeploy simulate --json`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "simulation_report",
            "servers": self.servers,
            "seed": self.seed,
            "virtual_duration_s": self.virtual_duration.as_secs_f64(),
            "max_out_of_pool": self.max_out_of_pool,
            "violations": self.violations,
            "summary": self.summary,
        })
    }
}

impl Simulation {
    /// `servers` servers named `mw00001`.., the default policy, in-place layout, no faults.
    pub fn new(servers: usize, seed: u64) -> Self {
        let width = servers.to_string().len().max(5);
        let list = (1..=servers)
            .map(|n| {
                let name = format!("mw{n:0width$}");
                Server::new(ServerId::new(&name).expect("generated names are valid"))
            })
            .collect();
        let mut plan = Plan::new(
            format!("sim-{seed}"),
            Self::release(seed),
            Layout::Inplace,
            list,
        );
        plan.policy.on_failure = OnFailure::Abort;
        Self::with_plan(plan, seed)
    }

    /// A simulation of `plan` (its release id is kept as given).
    pub fn with_plan(plan: Plan, seed: u64) -> Self {
        Simulation {
            plan,
            seed,
            faults: Faults::none(),
            operator: Operator::Silent,
            think: Duration::from_secs(20),
            outsiders: Vec::new(),
            down: Vec::new(),
            decisions: Vec::new(),
        }
    }

    /// The release id a simulation of `seed` deploys: virtual time, seed as suffix.
    pub fn release(seed: u64) -> ReleaseId {
        ReleaseId::at(sim_epoch(), &format!("{:08x}", seed as u32)).expect("hex suffix is valid")
    }

    /// Sets the faults.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Sets the layout.
    pub fn layout(mut self, layout: Layout) -> Self {
        self.plan.layout = layout;
        self
    }

    /// Changes the policy.
    pub fn policy(mut self, f: impl FnOnce(&mut Policy)) -> Self {
        f(&mut self.plan.policy);
        self
    }

    /// Changes the plan.
    pub fn plan(mut self, f: impl FnOnce(&mut Plan)) -> Self {
        f(&mut self.plan);
        self
    }

    /// Sets how prompts are answered, after `think` time.
    pub fn operator(mut self, operator: Operator, think: Duration) -> Self {
        self.operator = operator;
        self.think = think;
        self
    }

    /// Adds a server of the backend that is not deployed, in `state`.
    pub fn outsider(mut self, name: &str, state: PoolState) -> Self {
        let id = ServerId::new(name).expect("outsider name is valid");
        self.outsiders.push((id, state));
        self
    }

    /// Sets [`Faults::outage`]: servers added with [`outsider`](Self::outsider) go down
    /// and come back on their own, at `rate` per step.
    pub fn outage_rate(mut self, rate: f64) -> Self {
        self.faults.outage = rate;
        self
    }

    /// A deployed server that is already out of the pool before the deploy.
    pub fn down(mut self, server: &str, state: PoolState) -> Self {
        let id = ServerId::new(server).expect("server name is valid");
        self.down.push((id, state));
        self
    }

    /// The operator decides `decision` at virtual time `at` after the start.
    pub fn decide_at(mut self, at: Duration, decision: Decision) -> Self {
        self.decisions.push((at, decision));
        self
    }

    /// The deploy id of this simulation (`sim-<seed>` unless the plan says otherwise).
    pub fn deploy_id(&self) -> &str {
        &self.plan.deploy_id
    }

    /// The plan this simulation deploys.
    pub fn into_plan(self) -> Plan {
        self.plan
    }

    /// The fleet this simulation deploys to, as [`Simulation::run`] builds it: for
    /// driving the same scenario through [`SimFleet`] and the tokio driver.
    pub fn fleet_model(&self) -> FleetModel {
        fleet_model(
            &self.plan,
            self.seed,
            self.faults.clone(),
            self.outsiders.clone(),
            &self.down,
        )
    }

    /// Runs to the end.
    pub fn run(self) -> Result<SimReport, PlanError> {
        self.run_with(|_, _| {})
    }

    /// Runs to the end, handing every event and its virtual time to `on_event`.
    pub fn run_with(
        self,
        mut on_event: impl FnMut(&Event, Duration),
    ) -> Result<SimReport, PlanError> {
        let Simulation {
            plan,
            seed,
            faults,
            operator,
            think,
            outsiders,
            down,
            decisions: scripted,
        } = self;
        let servers = plan.servers.len();
        let model = fleet_model(&plan, seed, faults, outsiders, &down);
        let mut model = model;
        let mut checker = Checker::new(&plan);
        checker.out_before(model.out_of_pool());
        let t0 = Instant::now();
        let mut r = Rollout::new(plan, t0)?;
        let mut answers = Rng::new(seed ^ 0x6f70_6572_6174_6f72);

        // Answers due: (when, order) -> the action and its planned step.
        let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
        let mut planned: HashMap<u64, (Action, Planned)> = HashMap::new();
        let mut decisions: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
        let mut decided: HashMap<u64, Decision> = HashMap::new();
        let mut seq = 0u64;
        for (at, d) in scripted {
            seq += 1;
            decisions.push(Reverse((t0 + at, seq)));
            decided.insert(seq, d);
        }
        let mut now = t0;
        let mut steps = 0u64;
        let mut events = 0u64;
        let mut stuck = None;
        // Far more than any plan needs: a machine that loops is a broken rule, not a hang.
        let step_limit = 1_000 + servers as u64 * 200;
        loop {
            while let Some(ev) = r.poll_event() {
                events += 1;
                checker.on_event(&ev);
                if let Event::Prompt { answer: None, .. } = &ev {
                    let answer = match operator {
                        Operator::Yes => Some(true),
                        Operator::No => Some(false),
                        Operator::Silent => None,
                        Operator::Random => match answers.below(3) {
                            0 => Some(true),
                            1 => Some(false),
                            _ => None,
                        },
                    };
                    if let Some(yes) = answer {
                        seq += 1;
                        decisions.push(Reverse((now + think, seq)));
                        decided.insert(seq, Decision::Answer(yes));
                    }
                }
                on_event(&ev, now - t0);
            }
            while let Some(a) = r.poll_action() {
                if matches!(a.kind, ActionKind::Notify(_)) {
                    continue; // a notifier's answer changes nothing
                }
                checker.on_action(&a, &model);
                let p = model.start(&a.kind, &a.target);
                if p.answers {
                    seq += 1;
                    due.push(Reverse((now + p.after, seq)));
                    planned.insert(seq, (a, p));
                }
            }
            checker.after_step();
            if r.is_finished() {
                break;
            }
            let next_answer = due.peek().map(|Reverse((t, _))| *t);
            let next_decision = decisions.peek().map(|Reverse((t, _))| *t);
            let next_timer = r.poll_timeout();
            let Some(next) = [next_answer, next_decision, next_timer]
                .into_iter()
                .flatten()
                .min()
            else {
                stuck = Some("the machine waits for nothing: no action, timer or prompt pending");
                break;
            };
            now = now.max(next);
            steps += 1;
            if steps > step_limit {
                stuck = Some("the machine did not finish within its step limit");
                break;
            }
            if next_answer == Some(next) {
                let Reverse((_, k)) = due.pop().expect("peeked");
                let (a, p) = planned.remove(&k).expect("planned with its key");
                let outcome = model.finish(p);
                checker.on_applied(&a, &outcome, &model);
                r.handle_completion(now, a.id, outcome);
            } else if next_decision == Some(next) {
                let Reverse((_, k)) = decisions.pop().expect("peeked");
                let d = decided.remove(&k).expect("decided with its key");
                r.handle_decision(now, d);
            } else {
                r.handle_timeout(now);
            }
        }
        let report = r.report();
        let max_out = checker.max_out();
        let mut violations = checker.finish(&report, &model, r.is_finished());
        if let Some(s) = stuck {
            violations.push(format!("rule 3: {s}"));
        }
        Ok(SimReport {
            seed,
            servers,
            virtual_duration: now - t0,
            max_out_of_pool: max_out,
            violations,
            summary: report.summary,
            report,
            steps,
            events,
        })
    }
}

fn fleet_model(
    plan: &Plan,
    seed: u64,
    faults: Faults,
    outsiders: Vec<(ServerId, PoolState)>,
    down: &[(ServerId, PoolState)],
) -> FleetModel {
    let staging = plan.staging.as_ref().map(|s| s.id.clone());
    let mut model = FleetModel::new(seed, plan.layout, faults, &plan.servers, outsiders, staging);
    for (id, state) in down {
        model.set_pool(id, *state);
    }
    model
}

/// A stop the simulated operator asks for.
pub fn stop() -> Decision {
    Decision::Stop(StopReason::Operator)
}
