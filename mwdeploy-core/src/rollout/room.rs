//! Room under `max_unavailable` before each depool: with `Policy::reread_pool`, the pool
//! is read again first, so a server that went out since the preflight (down, or taken
//! out by someone else) counts too (design.md, rule 1: "out for any reason").

use std::time::{Duration, Instant};

use super::{Rollout, Room, Timer};
use crate::action::{ActionKind, Outcome, StopReason, Target};
use crate::model::ServerId;

/// How often the pool is read again while servers out for other reasons leave no room.
const ROOM_POLL: Duration = Duration::from_millis(500);

impl Rollout {
    /// How many servers may be depooled now. With `reread_pool` that takes a fresh read:
    /// until it is answered, none (the read is issued here).
    pub(super) fn room_for_depool(&mut self, now: Instant) -> u32 {
        let max = self.plan.policy.max_unavailable;
        if self.capacity.out >= max || !self.wants_depool() {
            // Not waiting on others' servers now: a later wait starts its own clock.
            self.capacity.room_since = None;
            return 0;
        }
        if !self.plan.policy.reread_pool {
            return max - self.capacity.out;
        }
        match self.capacity.room {
            Room::Stale => {
                self.capacity.room = Room::Reading;
                self.issue(now, None, Target::Fleet, ActionKind::QueryPool);
                0
            }
            Room::Reading | Room::Waiting => 0,
            Room::Fresh => {
                let free = max.saturating_sub(self.capacity.out + self.capacity.extra.len() as u32);
                if free == 0 {
                    self.wait_for_room(now);
                } else {
                    self.capacity.room_since = None;
                }
                free
            }
        }
    }

    /// The read was used (or not wanted) by the schedule that followed it: the next
    /// depool reads again.
    pub(super) fn room_used(&mut self) {
        if self.capacity.room == Room::Fresh {
            self.capacity.room = Room::Stale;
        }
    }

    fn wants_depool(&self) -> bool {
        let next = !self.paused && self.prompt.is_none() && self.stopping.is_none();
        !self.course.gate_ready.is_empty() || (next && !self.course.ready.is_empty())
    }

    /// The read before a depool answered.
    pub(super) fn room_result(&mut self, outcome: Outcome) {
        self.capacity.room = Room::Fresh;
        match outcome {
            Outcome::Pool(states) => {
                let extra: Vec<String> = states
                    .iter()
                    .filter(|(name, state)| !state.is_serving() && !self.counted(name))
                    .map(|(name, state)| format!("{name} {state}"))
                    .collect();
                self.capacity.extra = extra;
                let seen = self.capacity.out + self.capacity.extra.len() as u32;
                self.capacity.max_out = self.capacity.max_out.max(seen);
            }
            // The depool itself reads every proxy's answer: go by what the deploy counts.
            Outcome::Failed(e) => self.warn(
                None,
                format!("could not read the pool before a depool ({e}); counting the servers this deploy knows are out"),
            ),
            other => self.warn(None, format!("the pool read answered {other:?}, not a pool")),
        }
    }

    /// Whether a server the pool shows out is counted in `out` already.
    fn counted(&self, name: &ServerId) -> bool {
        match self.by_backend_name.get(name) {
            Some(&i) => {
                let s = &self.slots[i as usize];
                s.out || s.kept || s.manual_out
            }
            None => self.capacity.outsiders.contains(name),
        }
    }

    /// No room: say so once, read again shortly, and stop when it takes too long.
    fn wait_for_room(&mut self, now: Instant) {
        let timeout = self.plan.policy.room_timeout;
        let since = *self.capacity.room_since.get_or_insert(now);
        let out = self.capacity.extra.join(", ");
        if since == now {
            let max = self.plan.policy.max_unavailable;
            self.warn(
                None,
                format!("waiting for room under max_unavailable {max}: out of the pool since the preflight: {out}"),
            );
        }
        if now.duration_since(since) >= timeout {
            let detail = format!(
                "no room under max_unavailable {} for {}s: out of the pool: {out}",
                self.plan.policy.max_unavailable,
                timeout.as_secs_f64()
            );
            self.stop(now, StopReason::NoRoom, detail);
            // Stopping skips the servers not yet depooled; those waiting to be taken out
            // after a failed error gate would wait for ever (also when the deploy was
            // stopping already).
            return self.gate_depools_give_up(now);
        }
        self.capacity.room = Room::Waiting;
        self.timer(now + ROOM_POLL, Timer::RoomRetry);
    }
}
