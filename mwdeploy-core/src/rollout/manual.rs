//! The operator's own pool changes while a deploy runs (the dashboard's pool menu): a
//! server whose cycle is over can be taken out (within `max_unavailable`) and put back
//! (after its canary passes), through the same ports and counters as the deploy.

use std::time::Instant;

use super::{Phase, Rollout, Step, Timer};
use crate::action::{ActionKind, Outcome};
use crate::event::{PoolAction, PoolPhase};
use crate::model::ServerId;

/// Why a server held out by the operator is reported at the end.
const HELD: &str = "held out of the pool by the operator";

impl Rollout {
    /// Starts a manual depool (`depool`) or canary-then-repool of `server`, or says in a
    /// warning why not (its cycle is not over, it is already where asked, no room).
    pub(super) fn manual_pool(&mut self, now: Instant, server: &ServerId, depool: bool) {
        let Some(i) = self.plan.servers.iter().position(|s| &s.id == server) else {
            return self.warn(
                None,
                format!("pool: {server} is not a server of this deploy"),
            );
        };
        let i = i as u32;
        let name = server.clone();
        if self.course.phase != Phase::Running {
            return self.warn(
                Some(i),
                format!("pool: {name}: manual pool changes wait for the servers' turn"),
            );
        }
        if !self.pooled(i) && !self.slots[i as usize].pre_out {
            return self.warn(Some(i), format!("pool: {name} is not behind the proxies"));
        }
        let slot = &self.slots[i as usize];
        if slot.step != Step::Final {
            let why = if slot.step == Step::Pending {
                "has not had its turn yet"
            } else {
                "is in its deploy cycle"
            };
            return self.warn(
                Some(i),
                format!("pool: {name} {why}: ask again once its cycle is over"),
            );
        }
        let out = slot.manual_out || slot.kept;
        if depool {
            if out {
                return self.warn(Some(i), format!("pool: {name} is out of the pool already"));
            }
            let max = self.plan.policy.max_unavailable;
            if self.capacity.out >= max {
                return self.warn(
                    Some(i),
                    format!(
                        "pool: no room to take {name} out: {} of max_unavailable {max} out",
                        self.capacity.out
                    ),
                );
            }
            // It takes room until the operator puts it back.
            let slot = &mut self.slots[i as usize];
            slot.manual_out = true;
            slot.step = Step::ManualDepool;
            self.capacity.out += 1;
            self.capacity.held += 1;
            self.capacity.manual += 1;
            self.capacity.max_out = self.capacity.max_out.max(self.capacity.out);
            self.pool_event(i, PoolAction::Depool, PoolPhase::Intent, None);
            self.issue_for(now, i, ActionKind::Depool);
        } else {
            if !out {
                return self.warn(Some(i), format!("pool: {name} is in the pool already"));
            }
            self.capacity.manual += 1;
            self.manual_canary(now, i, 1);
        }
    }

    fn manual_canary(&mut self, now: Instant, i: u32, attempt: u32) {
        let slot = &mut self.slots[i as usize];
        slot.step = Step::ManualCanary;
        slot.attempt = attempt;
        self.issue_for(now, i, ActionKind::Canary { attempt });
    }

    /// A manual step's answer.
    pub(super) fn manual_completion(&mut self, now: Instant, i: u32, outcome: Outcome) {
        let name = self.id(i).clone();
        match self.slots[i as usize].step {
            Step::ManualDepool => {
                self.pool_event(i, PoolAction::Depool, PoolPhase::Result, Some(&outcome));
                self.slots[i as usize].step = Step::Final;
                self.capacity.manual -= 1;
                if let Outcome::Failed(e) = outcome {
                    // The adapter puts a failed depool back as it was: the room is free.
                    let slot = &mut self.slots[i as usize];
                    slot.manual_out = false;
                    self.capacity.out -= 1;
                    self.capacity.held -= 1;
                    self.warn(Some(i), format!("pool: depool of {name} failed: {e}"));
                } else {
                    self.warn(
                        Some(i),
                        format!("pool: {name} taken out of the pool by the operator"),
                    );
                }
            }
            Step::ManualCanary => {
                let (attempt, ok, detail) = self.canary_event(i, &outcome);
                if ok {
                    self.slots[i as usize].step = Step::ManualRepool;
                    self.pool_event(i, PoolAction::Repool, PoolPhase::Intent, None);
                    self.issue_for(now, i, ActionKind::Repool);
                } else if attempt < self.plan.policy.canary.attempts {
                    self.slots[i as usize].step = Step::ManualCanaryPause;
                    let at = now + self.plan.policy.canary.retry_pause;
                    self.timer(at, Timer::ManualRetry(i));
                } else {
                    self.slots[i as usize].step = Step::Final;
                    self.capacity.manual -= 1;
                    self.warn(
                        Some(i),
                        format!("pool: {name} failed its canary ({detail}): not repooled"),
                    );
                }
            }
            Step::ManualRepool => {
                self.pool_event(i, PoolAction::Repool, PoolPhase::Result, Some(&outcome));
                self.slots[i as usize].step = Step::Final;
                self.capacity.manual -= 1;
                match outcome {
                    Outcome::Failed(e) => {
                        self.warn(Some(i), format!("pool: repool of {name} failed: {e}"))
                    }
                    _ => {
                        let slot = &mut self.slots[i as usize];
                        if slot.manual_out {
                            slot.manual_out = false;
                            self.capacity.held -= 1;
                        } else {
                            // A server kept out (or out before the deploy) is back: its
                            // room is free again and it is no longer reported.
                            slot.kept = false;
                            self.capacity.kept_out.retain(|(s, _)| s != &name);
                        }
                        self.capacity.out -= 1;
                        self.warn(
                            Some(i),
                            format!("pool: {name} put back into the pool by the operator"),
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// A manual canary's pause is over.
    pub(super) fn manual_retry(&mut self, now: Instant, i: u32) {
        let attempt = self.slots[i as usize].attempt + 1;
        self.manual_canary(now, i, attempt);
    }

    /// Whether a manual step is under way (the deploy ends after it).
    pub(super) fn manual_busy(&self) -> bool {
        self.capacity.manual > 0
    }

    /// At the end: servers the operator held out are reported as left out.
    pub(super) fn report_held(&mut self) {
        for (k, slot) in self.slots.iter().enumerate() {
            if slot.manual_out {
                self.capacity
                    .kept_out
                    .push((self.plan.servers[k].id.clone(), HELD.to_string()));
            }
        }
    }
}
