//! One server's cycle: copy, depool, activate, hooks, canary, repool, bake, and the
//! ways back when a step fails.

use std::time::Instant;

use super::{describe, Mode, Phase, Rollout, Step, Timer};
use crate::action::{ActionKind, Outcome};
use crate::error::PortErrorKind;
use crate::event::{Event, PoolAction, PoolPhase, ServerStatus};
use crate::model::{Health, HookPoint, Layout};
use crate::plan::OnUnknown;
use crate::ports::Note;

impl Rollout {
    pub(super) fn run_hook(&mut self, now: Instant, i: u32, point: HookPoint, step: Step) {
        self.slots[i as usize].step = step;
        self.set_status(i, ServerStatus::Hooks, Some(point.as_str().to_string()));
        self.issue_for(now, i, ActionKind::RunHook(point));
    }

    pub(super) fn depool(&mut self, now: Instant, i: u32, step: Step) {
        self.slots[i as usize].step = step;
        self.set_status(i, ServerStatus::Depooling, None);
        self.pool_event(i, PoolAction::Depool, PoolPhase::Intent, None);
        self.issue_for(now, i, ActionKind::Depool);
    }

    pub(super) fn repool(&mut self, now: Instant, i: u32, step: Step) {
        self.slots[i as usize].step = step;
        self.set_status(i, ServerStatus::Repooling, None);
        self.pool_event(i, PoolAction::Repool, PoolPhase::Intent, None);
        // Forced through a failed canary: the balancer's own check decides, and a
        // check that fails too does not put it back in maintenance.
        let kind = if self.slots[i as usize].mode == Mode::Warned {
            ActionKind::RepoolForced
        } else {
            ActionKind::Repool
        };
        self.issue_for(now, i, kind);
    }

    pub(super) fn pool_event(
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
        self.queue.events.push_back(Event::Pool {
            server: self.id(i).clone(),
            proxy: None,
            backend: None,
            action,
            phase,
            ok,
            detail,
        });
    }

    pub(super) fn activate(&mut self, now: Instant, i: u32) {
        self.slots[i as usize].step = Step::Activate;
        let status = match self.plan.layout {
            Layout::Releases => ServerStatus::Activating,
            Layout::Inplace => ServerStatus::Transferring,
        };
        self.set_status(i, status, None);
        self.issue_for(now, i, ActionKind::Activate);
    }

    pub(super) fn canary(&mut self, now: Instant, i: u32, attempt: u32) {
        let slot = &mut self.slots[i as usize];
        slot.step = Step::Canary;
        slot.attempt = attempt;
        if attempt == 1 {
            self.set_status(i, ServerStatus::Canary, None);
        }
        self.issue_for(now, i, ActionKind::Canary { attempt });
    }

    /// The new code (or the restored old code) is live: hooks, then the canary.
    pub(super) fn after_switch(&mut self, now: Instant, i: u32) {
        if self.has_hook(i, HookPoint::PostActivate) {
            self.run_hook(now, i, HookPoint::PostActivate, Step::PostActivate);
        } else {
            self.canary(now, i, 1);
        }
    }

    /// The canary passed (or was forced through): back into the pool.
    pub(super) fn toward_repool(&mut self, now: Instant, i: u32) {
        if self.pooled(i) {
            self.slots[i as usize].step = Step::VerifyIn;
            self.issue_for(now, i, ActionKind::QueryPool);
        } else {
            self.after_repool(now, i);
        }
    }

    pub(super) fn after_repool(&mut self, now: Instant, i: u32) {
        let mode = self.slots[i as usize].mode;
        // Servers outside the pool (job runners) have no repool, so no post_repool.
        if mode == Mode::Forward && self.pooled(i) && self.has_hook(i, HookPoint::PostRepool) {
            return self.run_hook(now, i, HookPoint::PostRepool, Step::PostRepool);
        }
        self.after_post_repool(now, i);
    }

    pub(super) fn after_post_repool(&mut self, now: Instant, i: u32) {
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
    pub(super) fn complete(&mut self, now: Instant, i: u32) {
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
    pub(super) fn keep_out(&mut self, now: Instant, i: u32, why: String) {
        let slot = &mut self.slots[i as usize];
        let id = self.plan.servers[i as usize].id.clone();
        if slot.out {
            // It keeps its place in `out` for the rest of the deploy.
            self.capacity.held -= 1;
            slot.out = false;
            slot.kept = true;
            self.capacity.kept_out.push((id, why.clone()));
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
    pub(super) fn failed_after_switch(&mut self, now: Instant, i: u32, why: String) {
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

    /// A server's step answered: on to the next step of its cycle, or a way back.
    pub(super) fn server_completion(&mut self, now: Instant, i: u32, outcome: Outcome) {
        let step = self.slots[i as usize].step;
        let failed = match &outcome {
            Outcome::Failed(e) => Some(e.to_string()),
            _ => None,
        };
        match step {
            Step::Copy if self.retry_transfer(now, i, &outcome, ActionKind::Copy) => {}
            Step::Copy => self.copied(now, i, failed),
            Step::PostCopy => self.post_copy_ran(now, i, failed),
            Step::PreDepool => self.pre_depool_ran(now, i, failed),
            Step::Depool => self.depool_answered(now, i, outcome, failed),
            Step::VerifyOut => self.verified_out(now, i, outcome),
            // An in-place copy cut by a dropped connection is copied again: rsync
            // picks up where it stopped, and the server is out of the pool anyway.
            Step::Activate
                if self.plan.layout == Layout::Inplace
                    && self.retry_transfer(now, i, &outcome, ActionKind::Activate) => {}
            Step::Activate => self.activate_answered(now, i, failed),
            Step::PostActivate => self.post_activate_ran(now, i, failed),
            Step::Canary => self.canary_answered(now, i, outcome),
            Step::VerifyIn => self.verified_in(now, i, outcome),
            // A proxy that dropped the connection is asked again before the server is
            // given up as out of the pool for good.
            Step::Repool | Step::Restore if self.retry_repool(now, i, step, &outcome) => {}
            Step::Repool => self.repool_answered(now, i, outcome, failed),
            Step::PostRepool => self.post_repool_ran(now, i, failed),
            Step::Bake => self.baked(now, i, outcome),
            Step::GateDepool => self.gate_depool_answered(now, i, outcome, failed),
            Step::Rollback => self.rollback_answered(now, i, outcome, failed),
            Step::Restore => self.restore_answered(now, i, outcome, failed),
            Step::ManualDepool | Step::ManualCanary | Step::ManualRepool => {
                self.manual_completion(now, i, outcome)
            }
            Step::Pending
            | Step::Ready
            | Step::CanaryPause
            | Step::GateReady
            | Step::Final
            | Step::ManualCanaryPause => {}
        }
    }

    /// The copy (release layout) answered.
    fn copied(&mut self, now: Instant, i: u32, failed: Option<String>) {
        match failed {
            None => {
                if self.has_hook(i, HookPoint::PostCopy) {
                    self.run_hook(now, i, HookPoint::PostCopy, Step::PostCopy);
                } else {
                    self.queue_for_depool(now, i);
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
        }
    }

    /// The `post_copy` hooks ran.
    fn post_copy_ran(&mut self, now: Instant, i: u32, failed: Option<String>) {
        self.hook_event(i, HookPoint::PostCopy, &failed);
        match failed {
            None => self.queue_for_depool(now, i),
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

    /// The `pre_depool` hooks ran.
    fn pre_depool_ran(&mut self, now: Instant, i: u32, failed: Option<String>) {
        self.hook_event(i, HookPoint::PreDepool, &failed);
        match failed {
            None if self.plan.policy.reread_pool => {
                // Servers may have gone out while the hook ran: the depool waits
                // for a pool read of its own, first in line.
                self.slots[i as usize].hooked = true;
                self.give_back(i);
                self.slots[i as usize].step = Step::Ready;
                if self.stopping.is_some() {
                    // Stopping depools no server that is still in the pool.
                    let why = "not deployed: the deploy stopped first (after its pre_depool hook)";
                    return self.finalize(now, i, ServerStatus::Skipped, Some(why.into()));
                }
                self.course.ready.push_front(i);
            }
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

    /// The balancer answered the depool.
    fn depool_answered(&mut self, now: Instant, i: u32, outcome: Outcome, failed: Option<String>) {
        self.pool_event(i, PoolAction::Depool, PoolPhase::Result, Some(&outcome));
        match failed {
            None => {
                self.slots[i as usize].step = Step::VerifyOut;
                self.issue_for(now, i, ActionKind::QueryPool);
            }
            Some(e) => self.restore(now, i, format!("depool not confirmed: {e}")),
        }
    }

    /// The pool read after the depool answered.
    fn verified_out(&mut self, now: Instant, i: u32, outcome: Outcome) {
        match outcome {
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
        }
    }

    /// The switch (or the in-place copy) answered.
    fn activate_answered(&mut self, now: Instant, i: u32, failed: Option<String>) {
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

    /// The `post_activate` hooks ran.
    fn post_activate_ran(&mut self, now: Instant, i: u32, failed: Option<String>) {
        self.hook_event(i, HookPoint::PostActivate, &failed);
        match failed {
            None => self.canary(now, i, 1),
            Some(e) => self.failed_after_switch(now, i, format!("post_activate hook failed: {e}")),
        }
    }

    /// A canary attempt answered.
    fn canary_answered(&mut self, now: Instant, i: u32, outcome: Outcome) {
        let (attempt, ok, detail) = self.canary_event(i, &outcome);
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

    /// The pool read before the repool answered.
    fn verified_in(&mut self, now: Instant, i: u32, outcome: Outcome) {
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

    /// The balancer answered the repool.
    fn repool_answered(&mut self, now: Instant, i: u32, outcome: Outcome, failed: Option<String>) {
        self.pool_event(i, PoolAction::Repool, PoolPhase::Result, Some(&outcome));
        match failed {
            None => {
                if let Outcome::State(s) = outcome {
                    if !s.is_serving() {
                        let said = format!(
                            "HAProxy has it {s}: its own check decides, it is served once the check passes"
                        );
                        self.warn(Some(i), said.clone());
                        let slot = &mut self.slots[i as usize];
                        slot.why = Some(match slot.why.take() {
                            Some(w) => format!("{w}; {said}"),
                            None => said,
                        });
                    }
                }
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

    /// The `post_repool` hooks ran.
    fn post_repool_ran(&mut self, now: Instant, i: u32, failed: Option<String>) {
        self.hook_event(i, HookPoint::PostRepool, &failed);
        match failed {
            None => self.after_post_repool(now, i),
            Some(e) => self.gate_failed(i, format!("post_repool hook failed: {e}")),
        }
    }

    /// The error gate answered after the bake.
    fn baked(&mut self, now: Instant, i: u32, outcome: Outcome) {
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

    /// The depool after a failed error gate answered.
    fn gate_depool_answered(
        &mut self,
        now: Instant,
        i: u32,
        outcome: Outcome,
        failed: Option<String>,
    ) {
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
                    format!(
                        "{why}; depool not confirmed ({e}): it may still serve on some proxies"
                    ),
                );
            }
        }
    }

    /// The rollback answered.
    fn rollback_answered(
        &mut self,
        now: Instant,
        i: u32,
        outcome: Outcome,
        failed: Option<String>,
    ) {
        let from = self.plan.release.clone();
        let to = match &outcome {
            Outcome::RolledBackTo(r) => Some(r.clone()),
            _ => None,
        };
        self.queue.events.push_back(Event::Rollback {
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
                if let Outcome::RolledBackTo(r) = outcome {
                    slot.rolled_back_to = Some(r);
                }
                self.after_switch(now, i);
            }
            Some(e) => {
                let why = self.slots[i as usize].why.clone().unwrap_or_default();
                self.keep_out(now, i, format!("{why}; rollback failed: {e}"))
            }
        }
    }

    /// The repool of a server put back unchanged answered.
    fn restore_answered(&mut self, now: Instant, i: u32, outcome: Outcome, failed: Option<String>) {
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
            Some(e) => self.keep_out(now, i, format!("{why}; putting it back failed too: {e}")),
        }
    }

    /// Retries a transfer that failed with a transient error, while retries are left.
    pub(super) fn retry_transfer(
        &mut self,
        now: Instant,
        i: u32,
        outcome: &Outcome,
        kind: ActionKind,
    ) -> bool {
        let Outcome::Failed(e) = outcome else {
            return false;
        };
        let slot = &mut self.slots[i as usize];
        if e.kind != PortErrorKind::Transient || slot.retries >= self.plan.policy.transfer_retries {
            return false;
        }
        slot.retries += 1;
        let n = slot.retries;
        self.warn(
            Some(i),
            format!("{} failed ({e}); trying again ({n})", kind.name()),
        );
        self.issue_for(now, i, kind);
        true
    }

    /// Sends a repool again after a transient failure, while retries are left.
    pub(super) fn retry_repool(
        &mut self,
        now: Instant,
        i: u32,
        step: Step,
        outcome: &Outcome,
    ) -> bool {
        let Outcome::Failed(e) = outcome else {
            return false;
        };
        let slot = &mut self.slots[i as usize];
        if e.kind != PortErrorKind::Transient || slot.pool_retries >= self.plan.policy.pool_retries
        {
            return false;
        }
        slot.pool_retries += 1;
        let n = slot.pool_retries;
        self.pool_event(i, PoolAction::Repool, PoolPhase::Result, Some(outcome));
        self.warn(Some(i), format!("repool failed ({e}); trying again ({n})"));
        self.repool(now, i, step);
        true
    }

    /// Depool was not confirmed: nothing changed on the server, so it goes back as it was.
    pub(super) fn restore(&mut self, now: Instant, i: u32, why: String) {
        self.slots[i as usize].why = Some(why);
        self.repool(now, i, Step::Restore);
    }

    /// The server serves in the pool but must come out (error gate, post_repool hook).
    pub(super) fn gate_failed(&mut self, i: u32, why: String) {
        self.warn(
            Some(i),
            format!("{why}; to be depooled as soon as there is room"),
        );
        let slot = &mut self.slots[i as usize];
        slot.why = Some(why);
        slot.step = Step::GateReady;
        self.course.gate_ready.push_back(i);
    }

    pub(super) fn hook_event(&mut self, i: u32, hook: HookPoint, failed: &Option<String>) {
        self.queue.events.push_back(Event::Hook {
            server: self.id(i).clone(),
            hook,
            ok: failed.is_none(),
            detail: failed.clone(),
        });
    }

    pub(super) fn finalize(
        &mut self,
        now: Instant,
        i: u32,
        status: ServerStatus,
        detail: Option<String>,
    ) {
        let slot = &mut self.slots[i as usize];
        if slot.step.is_final() {
            return;
        }
        let started = slot.step != Step::Pending;
        slot.step = Step::Final;
        if started {
            self.course.in_flight -= 1;
        }
        if self.course.phase == Phase::Running && slot.stage as usize == self.course.stage {
            self.course.stage_left -= 1;
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
}
