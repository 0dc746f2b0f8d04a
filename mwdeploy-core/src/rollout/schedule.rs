//! Which server goes next: stages, room under `max_unavailable`, the failure budget,
//! prompts, stopping and the end.

use std::time::{Duration, Instant};

use super::{Gate, OpenPrompt, Phase, PromptKind, Rollout, Step, Timer};
use crate::action::{ActionKind, StopReason};
use crate::event::{Event, ServerStatus};
use crate::model::{HookPoint, Layout};
use crate::plan::OnFailure;
use crate::ports::Note;

impl Rollout {
    pub(super) fn schedule(&mut self, now: Instant) {
        if self.course.phase != Phase::Running {
            return;
        }
        let max = self.plan.policy.max_unavailable;
        self.check_room(now);
        // Starting never takes room (in place, a started server waits in `ready`).
        while self.can_start() {
            let i = self.stages[self.course.stage][self.course.cursor];
            if self.pooled(i) && self.capacity.out >= max && self.capacity.held == 0 {
                // It could never be depooled: stop now rather than copy for nothing.
                self.no_room(now);
                break;
            }
            self.course.cursor += 1;
            self.start(now, i);
        }
        let mut room = self.room_for_depool(now);
        // An error gate failure waits for room first: it is serving errors.
        while room > 0 {
            let Some(i) = self.course.gate_ready.pop_front() else {
                break;
            };
            room -= 1;
            self.take_out(i);
            self.depool(now, i, Step::GateDepool);
        }
        while !self.paused && self.prompt.is_none() && self.stopping.is_none() && room > 0 {
            let Some(i) = self.course.ready.pop_front() else {
                break;
            };
            room -= 1;
            self.take_out(i);
            if self.has_hook(i, HookPoint::PreDepool) && !self.slots[i as usize].hooked {
                self.run_hook(now, i, HookPoint::PreDepool, Step::PreDepool);
            } else {
                self.depool(now, i, Step::Depool);
            }
        }
        // A read is good for the depools it allowed just now, not for later ones.
        self.room_used();
        self.check_room(now);
        if self.course.stage_left == 0 && self.course.gate == Gate::Open && self.prompt.is_none() {
            let k = self.course.stage as u32 + 1;
            if self.course.stage + 1 < self.stages.len() && self.stopping.is_none() {
                self.queue
                    .events
                    .push_back(Event::StageFinished { stage: k });
                let bake = self.plan.policy.bake;
                if bake > Duration::ZERO {
                    self.course.gate = Gate::Bake(k);
                    self.timer(now + bake, Timer::StageBake(k));
                } else {
                    self.next_stage_gate(now, k);
                }
            } else if self.finals == self.slots.len() && !self.manual_busy() {
                self.queue
                    .events
                    .push_back(Event::StageFinished { stage: k });
                self.finish(now);
            }
        }
    }

    /// Stops the deploy when servers wait for room that nothing in flight will give back
    /// (failed servers kept out fill `max_unavailable`).
    pub(super) fn check_room(&mut self, now: Instant) {
        let max = self.plan.policy.max_unavailable;
        if self.capacity.out < max || self.capacity.held > 0 {
            return;
        }
        if !self.course.ready.is_empty() {
            self.no_room(now);
        }
        self.gate_depools_give_up(now);
    }

    /// Servers whose error gate (or `post_repool`) failed and that wait for room to be
    /// depooled, when no room will come: they stay in the pool, failed, and say so.
    pub(super) fn gate_depools_give_up(&mut self, now: Instant) {
        while let Some(i) = self.course.gate_ready.pop_front() {
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
    pub(super) fn no_room(&mut self, now: Instant) {
        if self.stopping.is_some() {
            return;
        }
        let detail = format!(
            "{} server(s) out of the pool for good and max_unavailable is {}: {}",
            self.capacity.out,
            self.plan.policy.max_unavailable,
            self.capacity
                .kept_out
                .iter()
                .map(|(s, why)| format!("{s} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.stop(now, StopReason::NoRoom, detail);
    }

    /// Stage `k` (1-based) is done and baked: ask, or open the next.
    pub(super) fn next_stage_gate(&mut self, now: Instant, k: u32) {
        if self.stopping.is_some() {
            return self.schedule(now);
        }
        if self.plan.policy.approve_stages && !self.plan.policy.force {
            self.course.gate = Gate::Approval(k + 1);
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

    pub(super) fn can_start(&self) -> bool {
        self.course.phase == Phase::Running
            && !self.paused
            && self.stopping.is_none()
            && self.prompt.is_none()
            && self.course.gate == Gate::Open
            && self.course.in_flight < self.plan.policy.parallel
            && self.course.cursor < self.stages[self.course.stage].len()
    }

    pub(super) fn start(&mut self, now: Instant, i: u32) {
        self.course.in_flight += 1;
        match self.plan.layout {
            Layout::Releases => {
                self.slots[i as usize].step = Step::Copy;
                self.set_status(i, ServerStatus::Copying, None);
                self.issue_for(now, i, ActionKind::Copy);
            }
            Layout::Inplace => self.queue_for_depool(now, i),
        }
    }

    pub(super) fn queue_for_depool(&mut self, now: Instant, i: u32) {
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
        self.course.ready.push_back(i);
    }

    pub(super) fn over_budget(&mut self, now: Instant) {
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

    pub(super) fn open_prompt(&mut self, now: Instant, kind: PromptKind, question: String) {
        self.queue.timer_seq += 1;
        let seq = self.queue.timer_seq;
        self.queue.events.push_back(Event::Prompt {
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

    pub(super) fn answer(&mut self, now: Instant, word: &str, yes: bool) {
        let Some(p) = self.prompt.take() else {
            return;
        };
        self.queue.events.push_back(Event::Prompt {
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
                self.course.gate = Gate::Open;
                self.stop(
                    now,
                    reason,
                    format!("the operator answered {word} before stage {k}"),
                )
            }
        }
    }

    pub(super) fn stop(&mut self, now: Instant, reason: StopReason, detail: String) {
        if self.stopping.is_some() || self.course.phase == Phase::Finished {
            return;
        }
        self.stopping = Some(reason);
        self.queue
            .events
            .push_back(Event::Stopping { reason, detail });
        if self.prompt.is_some() {
            self.answer(now, "stop", false);
        }
        if self.course.phase != Phase::Running {
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
        while let Some(i) = self.course.ready.pop_front() {
            self.finalize(now, i, ServerStatus::Skipped, skip());
        }
        // The rest of this stage, and every later stage.
        let k = self.course.stage;
        while self.course.cursor < self.stages[k].len() {
            let i = self.stages[k][self.course.cursor];
            self.course.cursor += 1;
            self.finalize(now, i, ServerStatus::Skipped, skip());
        }
        for later in k + 1..self.stages.len() {
            for n in 0..self.stages[later].len() {
                let i = self.stages[later][n];
                self.finalize(now, i, ServerStatus::Skipped, skip());
            }
        }
        self.course.gate = Gate::Open;
    }

    pub(super) fn finish(&mut self, now: Instant) {
        if self.course.phase == Phase::Finished {
            return;
        }
        self.course.phase = Phase::Finished;
        self.touch(now);
        self.report_held();
        let report = self.report();
        self.notify(
            now,
            Note::Finished {
                deploy: self.plan.deploy_id.clone(),
                summary: report.summary,
            },
        );
        self.queue.events.push_back(Event::DeployFinished {
            summary: report.summary,
            duration_s: report.duration.as_secs_f64(),
            verdict: report.verdict,
        });
    }
}
