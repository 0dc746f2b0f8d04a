//! What the machine asks for ([`Action`]), what it is told back ([`Outcome`], [`Decision`]).

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::PortError;
use crate::model::{Health, HookPoint, PoolState, ReleaseId, ServerId};
use crate::ports::Note;

/// Names one action; completions quote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ActionId(pub u64);

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What an action is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The deploy host's staging copy.
    Staging,
    /// One server of the plan.
    Server(ServerId),
    /// The whole pool (a preflight read), or the deploy as a whole (a notification).
    Fleet,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Staging => f.write_str("staging"),
            Target::Server(s) => fmt::Display::fmt(s, f),
            Target::Fleet => f.write_str("fleet"),
        }
    }
}

/// The step an action asks a port to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ActionKind {
    /// Read the pool: the whole fleet ([`Target::Fleet`], answer [`Outcome::Pool`]) or one
    /// server (answer [`Outcome::State`]).
    QueryPool,
    /// Copy the release beside the live tree ([`Transfer::copy`](crate::ports::Transfer::copy)).
    Copy,
    /// Take the server out of the pool.
    Depool,
    /// Make the release live.
    Activate,
    /// Run the hooks of a point.
    RunHook(HookPoint),
    /// One canary attempt (1-based); answer [`Outcome::Health`].
    Canary {
        /// Which attempt this is, from 1.
        attempt: u32,
    },
    /// Make the previous release live again; answer [`Outcome::RolledBackTo`] (or `Done`).
    Rollback,
    /// Put the server back in the pool.
    Repool,
    /// `--force` on a server whose canary failed: make it ready and leave it to the
    /// balancer's own check; answer [`Outcome::State`], the state after.
    RepoolForced,
    /// The error gate: watch the server in the pool for `window`; answer [`Outcome::Health`].
    Bake {
        /// How long to watch.
        window: Duration,
    },
    /// Tell the notifiers. Its completion is optional and never changes the deploy.
    Notify(Note),
}

impl ActionKind {
    /// A short name for logs ("copy", "canary").
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::QueryPool => "query_pool",
            ActionKind::Copy => "copy",
            ActionKind::Depool => "depool",
            ActionKind::Activate => "activate",
            ActionKind::RunHook(_) => "hook",
            ActionKind::Canary { .. } => "canary",
            ActionKind::Rollback => "rollback",
            ActionKind::Repool | ActionKind::RepoolForced => "repool",
            ActionKind::Bake { .. } => "bake",
            ActionKind::Notify(_) => "notify",
        }
    }
}

/// One step for the driver to run, before `deadline`.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Quote it in [`Rollout::handle_completion`](crate::Rollout::handle_completion).
    pub id: ActionId,
    /// What it is about.
    pub target: Target,
    /// What to do.
    pub kind: ActionKind,
    /// The release concerned (copy, activate, hooks).
    pub release: ReleaseId,
    /// After this instant the machine counts the step as timed out, on its own.
    pub deadline: Instant,
}

impl Action {
    /// The server the action concerns, if it concerns one.
    pub fn server(&self) -> Option<&ServerId> {
        match &self.target {
            Target::Server(s) => Some(s),
            _ => None,
        }
    }
}

/// How a port's step went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// It worked (copy, depool, activate, hook, repool, notify).
    Done,
    /// The pool as read ([`ActionKind::QueryPool`] on [`Target::Fleet`]).
    Pool(Vec<(ServerId, PoolState)>),
    /// One server's pool state ([`ActionKind::QueryPool`] on a server).
    State(PoolState),
    /// A health answer (canary, bake).
    Health(Health),
    /// The rollback worked; this release is live now.
    RolledBackTo(ReleaseId),
    /// It did not work (a timeout is a [`PortError`] of kind `Timeout`).
    Failed(PortError),
}

impl<T> From<Result<T, PortError>> for Outcome
where
    T: Into<Outcome>,
{
    fn from(r: Result<T, PortError>) -> Outcome {
        match r {
            Ok(v) => v.into(),
            Err(e) => Outcome::Failed(e),
        }
    }
}

impl From<()> for Outcome {
    fn from(_: ()) -> Outcome {
        Outcome::Done
    }
}

impl From<PoolState> for Outcome {
    fn from(s: PoolState) -> Outcome {
        Outcome::State(s)
    }
}

impl From<Vec<(ServerId, PoolState)>> for Outcome {
    fn from(v: Vec<(ServerId, PoolState)>) -> Outcome {
        Outcome::Pool(v)
    }
}

impl From<ReleaseId> for Outcome {
    fn from(r: ReleaseId) -> Outcome {
        Outcome::RolledBackTo(r)
    }
}

impl From<Health> for Outcome {
    fn from(h: Health) -> Outcome {
        Outcome::Health(h)
    }
}

/// Why a deploy stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The operator asked (answered no, pressed stop).
    Operator,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The failure budget ran out and `on_failure` said abort (or the prompt's safe answer).
    FailureBudget,
    /// Going on needs room under `max_unavailable` that failed servers kept out take.
    NoRoom,
    /// A prompt went unanswered.
    PromptTimeout,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Operator => "stopped by the operator",
            StopReason::Interrupted => "interrupted",
            StopReason::FailureBudget => "failure budget exceeded",
            StopReason::NoRoom => "no room under max_unavailable",
            StopReason::PromptTimeout => "prompt unanswered",
        })
    }
}

/// What the operator (or the driver on their behalf) tells the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// The answer to the open prompt: `true` is yes.
    Answer(bool),
    /// No new server starts until [`Decision::Resume`].
    Pause,
    /// Undo a pause.
    Resume,
    /// No new server starts; running servers finish their cycle; pending ones are skipped.
    Stop(StopReason),
    /// The operator's abort: the same as a stop (servers out of the pool are never left
    /// half done; they finish their cycle and go back, or are reported).
    Abort,
}
