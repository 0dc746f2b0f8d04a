//! The deploy before its first server: the staging canary, the preflight pool read,
//! and the timers.

use std::collections::HashSet;
use std::time::Instant;

use super::{health_of, Gate, Phase, Rollout, Room, Timer};
use crate::action::{ActionKind, Outcome, Target};
use crate::error::PortError;
use crate::event::{Event, PrepStatus, ServerStatus};

impl Rollout {
    pub(super) fn begin(&mut self, now: Instant) {
        if self.plan.staging.is_some() {
            self.course.phase = Phase::Staging;
            self.queue.events.push_back(Event::PrepStep {
                commits: Vec::new(),
                step: "staging_canary".into(),
                status: PrepStatus::Running,
                detail: None,
            });
            self.course.staging_attempt = 1;
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

    pub(super) fn after_staging(&mut self, now: Instant) {
        if self.plan.preflight && self.plan.servers.iter().any(|s| s.pooled) {
            self.course.phase = Phase::Preflight;
            self.queue.events.push_back(Event::PrepStep {
                commits: Vec::new(),
                step: "pool_preflight".into(),
                status: PrepStatus::Running,
                detail: None,
            });
            self.issue(now, None, Target::Fleet, ActionKind::QueryPool);
        } else {
            self.start_running(now);
        }
    }

    pub(super) fn start_running(&mut self, now: Instant) {
        self.course.phase = Phase::Running;
        self.open_stage(0);
        self.schedule(now);
    }

    pub(super) fn open_stage(&mut self, k: usize) {
        self.course.stage = k;
        self.course.cursor = 0;
        self.course.stage_left = self.stages[k].len();
        self.course.gate = Gate::Open;
        let servers = self.stages[k].iter().map(|&i| self.id(i).clone()).collect();
        self.queue.events.push_back(Event::StageStarted {
            stage: k as u32 + 1,
            servers,
        });
    }

    pub(super) fn fleet_completion(&mut self, now: Instant, outcome: Outcome) {
        match self.course.phase {
            Phase::Staging => self.staging_result(now, outcome),
            Phase::Preflight => self.preflight_result(now, outcome),
            Phase::Running if self.capacity.room == Room::Reading => self.room_result(outcome),
            _ => {}
        }
    }

    pub(super) fn staging_result(&mut self, now: Instant, outcome: Outcome) {
        let (ok, detail) = health_of(&outcome);
        if ok {
            self.course.staging_attempt = 0;
            self.queue.events.push_back(Event::PrepStep {
                commits: Vec::new(),
                step: "staging_canary".into(),
                status: PrepStatus::Ok,
                detail: None,
            });
            return self.after_staging(now);
        }
        let attempts = self.plan.policy.canary.attempts;
        if self.course.staging_attempt < attempts {
            self.queue.events.push_back(Event::PrepStep {
                commits: Vec::new(),
                step: "staging_canary".into(),
                status: PrepStatus::Running,
                detail: Some(format!(
                    "attempt {}/{attempts} failed: {detail}",
                    self.course.staging_attempt
                )),
            });
            let at = now + self.plan.policy.canary.retry_pause;
            self.timer(at, Timer::StagingRetry);
            return;
        }
        self.course.staging_attempt = 0;
        let detail = format!("staging canary failed after {attempts} attempts: {detail}");
        if self.plan.policy.force {
            self.queue.events.push_back(Event::PrepStep {
                commits: Vec::new(),
                step: "staging_canary".into(),
                status: PrepStatus::Warned,
                detail: Some(format!("{detail} (--force: going on)")),
            });
            self.after_staging(now);
        } else {
            self.queue.events.push_back(Event::PrepStep {
                commits: Vec::new(),
                step: "staging_canary".into(),
                status: PrepStatus::Failed,
                detail: Some(detail.clone()),
            });
            self.refuse(now, detail);
        }
    }

    pub(super) fn preflight_result(&mut self, now: Instant, outcome: Outcome) {
        let states = match outcome {
            Outcome::Pool(states) => states,
            Outcome::Failed(e) => {
                let detail = format!("could not read the pool: {e}");
                self.queue.events.push_back(Event::PrepStep {
                    commits: Vec::new(),
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
        let mut outsider_ids = HashSet::new();
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
                None if !state.is_serving() => {
                    outsiders.push(format!("{name} {state}"));
                    outsider_ids.insert(name.clone());
                }
                None => {}
            }
        }
        let missing: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.plan.servers[i as usize].pooled && !seen[i as usize])
            .collect();
        let force = self.plan.policy.force;
        // What the balancer shows out, refused or not, so reports count alike.
        self.capacity.max_out = self
            .capacity
            .max_out
            .max((outsiders.len() + not_up.len()) as u32);
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
            self.queue.events.push_back(Event::PrepStep {
                commits: Vec::new(),
                step: "pool_preflight".into(),
                status: PrepStatus::Failed,
                detail: Some(detail.clone()),
            });
            return self.refuse(now, detail);
        }
        // Others' servers already out take room under max_unavailable for the whole deploy.
        self.capacity.out += outsiders.len() as u32;
        self.capacity.outsiders = outsider_ids;
        for (i, state) in &not_up {
            // Forced: it is deployed, but it was out before us, so it stays out after.
            // It counts like others' servers that are out: for the whole deploy.
            self.slots[*i as usize].pre_out = true;
            self.slots[*i as usize].kept = true;
            self.capacity.out += 1;
            self.capacity.kept_out.push((
                self.plan.servers[*i as usize].id.clone(),
                format!("was {state} before the deploy; left as it was"),
            ));
        }
        self.capacity.max_out = self.capacity.max_out.max(self.capacity.out);
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
        if needs_room && self.capacity.out >= self.plan.policy.max_unavailable {
            let detail = format!(
                "{} server(s) are already out of the pool and max_unavailable is {}: no server could be depooled ({})",
                self.capacity.out,
                self.plan.policy.max_unavailable,
                detail.unwrap_or_default()
            );
            self.queue.events.push_back(Event::PrepStep {
                commits: Vec::new(),
                step: "pool_preflight".into(),
                status: PrepStatus::Failed,
                detail: Some(detail.clone()),
            });
            return self.refuse(now, detail);
        }
        self.queue.events.push_back(Event::PrepStep {
            commits: Vec::new(),
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

    pub(super) fn refuse(&mut self, now: Instant, detail: String) {
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

    pub(super) fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Deadline(id) => {
                // Through the normal path, as if the port had answered "timed out".
                if let Some((slot, kind)) = self.queue.inflight.remove(&id) {
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
            Timer::ManualRetry(i) => self.manual_retry(now, i),
            Timer::StagingRetry => {
                self.course.staging_attempt += 1;
                let attempt = self.course.staging_attempt;
                self.issue(now, None, Target::Staging, ActionKind::Canary { attempt });
            }
            Timer::StageBake(k) => {
                self.course.gate = Gate::Open;
                self.next_stage_gate(now, k);
            }
            Timer::Prompt(_) => self.answer(now, "timeout", false),
            Timer::RoomRetry => self.capacity.room = Room::Stale,
        }
    }
}
