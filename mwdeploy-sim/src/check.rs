//! The six rules of the design, checked after every step of a simulation.
//!
//! The checker is incremental: each call looks at one action, one answer or one event,
//! never at the whole fleet, so checking costs the same per step at any fleet size.
//! Only [`Checker::finish`] looks at every server still out of the pool, once.

use std::collections::{HashMap, HashSet};

use crate::fleet::FleetModel;
use mwdeploy_core::action::{Action, ActionId, ActionKind, Outcome, Target};
use mwdeploy_core::event::{Event, PrepStatus, ServerStatus};
use mwdeploy_core::plan::{OnFailure, Plan};
use mwdeploy_core::rollout::Report;

/// Watches a simulated deploy and records every broken rule.
#[derive(Debug)]
pub struct Checker {
    max_unavailable: u32,
    force: bool,
    on_failure: OnFailure,
    releases: bool,
    servers: usize,
    budget: u32,
    failures: u32,
    staging_failed: bool,
    /// A `stopping` event was seen in this step: actions of the same step may come
    /// before it in the machine's order, so they still count as started in time.
    stopping: bool,
    stopped: bool,
    started: Vec<bool>,
    /// Reload count when each server's pool state was last read by the machine.
    verified_at: Vec<u64>,
    /// Servers the machine took out of the pool (by index).
    depooled: HashSet<u32>,
    max_out: u32,
    /// Out of the pool before the deploy: others' doing, not the machine's.
    out_before: u32,
    /// `Policy::reread_pool`: the machine reads the pool before each depool.
    reread: bool,
    /// Outages begun when the machine last read the whole pool.
    outages_at_read: u64,
    /// Depools in flight -> `outages_at_read` when the machine decided to take that
    /// server out (what it could know then).
    depool_knew: HashMap<ActionId, u64>,
    /// Servers taken out and not put back since -> `outages_at_read` at that decision: a
    /// depool sent again (a balancer reload undid the first) is the same decision.
    decided: HashMap<u32, u64>,
    violations: Vec<String>,
}

impl Checker {
    /// A checker for `plan`.
    pub fn new(plan: &Plan) -> Self {
        let n = plan.servers.len();
        Checker {
            max_unavailable: plan.policy.max_unavailable,
            force: plan.policy.force,
            on_failure: plan.policy.on_failure,
            releases: plan.layout == mwdeploy_core::model::Layout::Releases,
            servers: n,
            budget: plan.policy.failure_budget.resolve(n),
            failures: 0,
            staging_failed: false,
            stopping: false,
            stopped: false,
            started: vec![false; n],
            verified_at: vec![0; n],
            depooled: HashSet::new(),
            max_out: 0,
            out_before: 0,
            reread: plan.policy.reread_pool,
            outages_at_read: 0,
            depool_knew: HashMap::new(),
            decided: HashMap::new(),
            violations: Vec::new(),
        }
    }

    /// Servers of the backend already out before the deploy: a fleet that starts over
    /// `max_unavailable` is not the machine's fault, but any server it adds is.
    pub fn out_before(&mut self, out: u32) {
        self.out_before = out;
        self.max_out = out;
    }

    fn violate(&mut self, rule: u8, what: String) {
        // One broken rule tends to repeat at every step; keep the report short.
        if self.violations.len() < 50 {
            self.violations.push(format!("rule {rule}: {what}"));
        }
    }

    /// The machine asked for `action`; `fleet` is the state before it starts.
    pub fn on_action(&mut self, action: &Action, fleet: &FleetModel) {
        let Target::Server(id) = &action.target else {
            return;
        };
        let Some(i) = fleet.index_of(id) else {
            self.violate(4, format!("{} on unknown server {id}", action.kind.name()));
            return;
        };
        if self.staging_failed && !self.force {
            self.violate(
                5,
                format!(
                    "{} on {id} after the staging canary failed",
                    action.kind.name()
                ),
            );
        }
        if !std::mem::replace(&mut self.started[i as usize], true) && self.stopped {
            self.violate(6, format!("{id} started after the deploy stopped"));
        }
        match &action.kind {
            ActionKind::Activate => {
                if self.releases && !fleet.copied(i) {
                    self.violate(5, format!("{id} activated a release that was never copied"));
                }
                // A reload since the machine last read its state may have repooled it;
                // the machine cannot know, so only a stale read is its fault.
                let stale = self.verified_at[i as usize] == fleet.reloads();
                if fleet.pooled(i)
                    && self.depooled.contains(&i)
                    && fleet.pool(i).is_serving()
                    && stale
                {
                    self.violate(4, format!("{id} activated while the balancer serves it"));
                }
            }
            ActionKind::Depool => {
                self.depooled.insert(i);
                let knew = *self.decided.entry(i).or_insert(self.outages_at_read);
                self.depool_knew.insert(action.id, knew);
            }
            ActionKind::Repool | ActionKind::RepoolForced => {
                self.decided.remove(&i);
            }
            _ => {}
        }
    }

    /// `action` was answered with `outcome`; `fleet` is the state after its effect.
    pub fn on_applied(&mut self, action: &Action, outcome: &Outcome, fleet: &FleetModel) {
        if action.kind == ActionKind::QueryPool
            && action.target == Target::Fleet
            && matches!(outcome, Outcome::Pool(_))
        {
            self.outages_at_read = fleet.outages();
        }
        let out = fleet.out_of_pool();
        self.max_out = self.max_out.max(out);
        // Servers an outage took down are not the machine's doing...
        let limit = self.max_unavailable.max(self.out_before);
        let outage_out = fleet.out_by_outage_since(0);
        if out > limit + outage_out {
            self.violate(
                1,
                format!(
                    "{out} servers out of the pool after {} on {} (max_unavailable {})",
                    action.kind.name(),
                    action.target,
                    self.max_unavailable
                ),
            );
        }
        // ...unless it had read the pool after they went down when it asked for a depool.
        let knew = match action.kind {
            ActionKind::Depool => self.depool_knew.remove(&action.id),
            _ => None,
        };
        let seen = knew.map_or(0, |k| outage_out - fleet.out_by_outage_since(k));
        if self.reread && knew.is_some() && out > limit + outage_out - seen {
            self.violate(
                1,
                format!(
                    "{} depooled with {out} servers out (max_unavailable {}), {seen} of them down by an outage the machine had read",
                    action.target, self.max_unavailable
                ),
            );
        }
        let Target::Server(id) = &action.target else {
            return;
        };
        let Some(i) = fleet.index_of(id) else { return };
        match action.kind {
            ActionKind::QueryPool => self.verified_at[i as usize] = fleet.reloads(),
            ActionKind::Repool | ActionKind::RepoolForced
                if !self.force && !fleet.live(i).healthy() =>
            {
                self.violate(
                    2,
                    format!("{id} put back in the pool serving {:?} code", fleet.live(i)),
                );
            }
            _ => {}
        }
    }

    /// The machine emitted `event`.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::PrepStep {
                step,
                status: PrepStatus::Failed,
                ..
            } if step == "staging_canary" => self.staging_failed = true,
            Event::ServerState {
                state: ServerStatus::Failed | ServerStatus::RolledBack,
                ..
            } => self.failures += 1,
            Event::Prompt {
                answer: Some(a), ..
            } if a == "yes" => self.budget += 1,
            Event::Stopping { .. } => self.stopping = true,
            _ => {}
        }
    }

    /// Checks what must hold after every step.
    pub fn after_step(&mut self) {
        self.stopped |= self.stopping;
        let abort = self.on_failure == OnFailure::Abort && !self.force;
        if abort && self.failures > self.budget && !self.stopping {
            let (f, b) = (self.failures, self.budget);
            self.violate(
                6,
                format!("{f} failures over a budget of {b}, and the deploy goes on"),
            );
        }
    }

    /// Checks the end: every server the machine took out is back or reported.
    pub fn finish(mut self, report: &Report, fleet: &FleetModel, finished: bool) -> Vec<String> {
        if !finished {
            self.violate(3, "the deploy never finished".to_string());
        }
        if report.summary.total() as usize != self.servers {
            let t = report.summary.total();
            self.violate(
                3,
                format!("{t} servers in the summary, {} in the plan", self.servers),
            );
        }
        let reported: HashSet<&str> = report.left_out.iter().map(|(s, _)| s.as_str()).collect();
        let unreported: Vec<String> = fleet
            .out_servers()
            .filter(|(id, _)| {
                fleet
                    .index_of(id)
                    .is_some_and(|i| self.depooled.contains(&i))
                    && !reported.contains(id.as_str())
            })
            .map(|(id, s)| format!("{id} ({s})"))
            .collect();
        for s in unreported {
            self.violate(3, format!("{s} left out of the pool and not reported"));
        }
        self.violations
    }

    /// The most servers out of the pool at once, as the fleet saw it.
    pub fn max_out(&self) -> u32 {
        self.max_out
    }
}
