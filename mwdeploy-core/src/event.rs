//! What happened: the events of a deploy, in the schema of the CLI contract's JSON events.
//!
//! The machine emits them without `ts` and `deploy`; the journal and `--json` output add both.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::model::{HookPoint, Layout, ReleaseId, ServerId};

/// A server's state as the journal and the UIs show it. This is the whole set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    /// Not started.
    Pending,
    /// The release is being copied beside the live tree (the server still serves).
    Copying,
    /// Being taken out of the pool.
    Depooling,
    /// In-place copy into the live tree (out of the pool).
    Transferring,
    /// The release is being switched live.
    Activating,
    /// Hooks run.
    Hooks,
    /// The canary checks it.
    Canary,
    /// Being put back.
    Repooling,
    /// Back in the pool, watched by the error gate.
    Baking,
    /// The previous release is being made live again.
    RollingBack,
    /// Deployed and back in the pool.
    Done,
    /// Deployed and back in the pool although its canary failed (`--force`).
    Warned,
    /// Not deployed; the detail says whether it is in or out of the pool.
    Failed,
    /// The new release failed; the previous one is live and the server is back in the pool.
    RolledBack,
    /// Never started: the deploy stopped first.
    Skipped,
}

impl ServerStatus {
    /// Whether this is a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ServerStatus::Done
                | ServerStatus::Warned
                | ServerStatus::Failed
                | ServerStatus::RolledBack
                | ServerStatus::Skipped
        )
    }

    /// The snake_case name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Pending => "pending",
            ServerStatus::Copying => "copying",
            ServerStatus::Depooling => "depooling",
            ServerStatus::Transferring => "transferring",
            ServerStatus::Activating => "activating",
            ServerStatus::Hooks => "hooks",
            ServerStatus::Canary => "canary",
            ServerStatus::Repooling => "repooling",
            ServerStatus::Baking => "baking",
            ServerStatus::RollingBack => "rolling_back",
            ServerStatus::Done => "done",
            ServerStatus::Warned => "warned",
            ServerStatus::Failed => "failed",
            ServerStatus::RolledBack => "rolled_back",
            ServerStatus::Skipped => "skipped",
        }
    }
}

/// Counts of servers by final state; each server is in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// `done`.
    pub succeeded: u32,
    /// `warned`.
    pub warned: u32,
    /// `failed`.
    pub failed: u32,
    /// `rolled_back`.
    pub rolled_back: u32,
    /// `skipped`.
    pub skipped: u32,
}

impl Summary {
    /// Counts one server that ended in `status` (a final state).
    pub fn count(&mut self, status: ServerStatus) {
        match status {
            ServerStatus::Done => self.succeeded += 1,
            ServerStatus::Warned => self.warned += 1,
            ServerStatus::Failed => self.failed += 1,
            ServerStatus::RolledBack => self.rolled_back += 1,
            ServerStatus::Skipped => self.skipped += 1,
            _ => {}
        }
    }

    /// Servers counted.
    pub fn total(&self) -> u32 {
        self.succeeded + self.warned + self.failed + self.rolled_back + self.skipped
    }
}

/// Which pool change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolAction {
    /// Out of the pool.
    Depool,
    /// Back in.
    Repool,
}

/// Before the command is sent (`intent`, written ahead) or after (`result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolPhase {
    /// About to be sent.
    Intent,
    /// Answered.
    Result,
}

/// State of a preparation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrepStatus {
    /// Under way.
    Running,
    /// Passed.
    Ok,
    /// Failed.
    Failed,
    /// Failed, but `--force` goes on.
    Warned,
}

/// One thing that happened during a deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The deploy starts.
    DeployStarted {
        /// Selected servers, in order.
        servers: Vec<ServerId>,
        /// The release deployed.
        release: ReleaseId,
        /// The layout.
        layout: Layout,
        /// The flags given.
        flags: Vec<String>,
        /// The operator's message.
        message: Option<String>,
        /// The operator.
        user: Option<String>,
    },
    /// A preparation step: staging's pulls, patches, l10n and sync, the staging canary,
    /// the preflight pool check.
    PrepStep {
        /// Which step (`staging_canary`, `pool_preflight`).
        step: String,
        /// Its state.
        status: PrepStatus,
        /// What was seen.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// A pull's incoming commits (`<short hash> <subject>`), oldest first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        commits: Vec<String>,
    },
    /// A stage starts.
    StageStarted {
        /// 1-based.
        stage: u32,
        /// Its servers.
        servers: Vec<ServerId>,
    },
    /// Every server of a stage reached a final state.
    StageFinished {
        /// 1-based.
        stage: u32,
    },
    /// A server changed state.
    ServerState {
        /// The server.
        server: ServerId,
        /// Its new state.
        state: ServerStatus,
        /// Why, or where it is.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A running step's progress (from a port, thinned to a few a second per server).
    Progress {
        /// The server.
        server: ServerId,
        /// The step (`copy`, `activate`, ...).
        step: String,
        /// Percent done.
        #[serde(skip_serializing_if = "Option::is_none")]
        percent: Option<f32>,
        /// Transfer rate as printed by the tool.
        #[serde(skip_serializing_if = "Option::is_none")]
        rate: Option<String>,
        /// A line of output.
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<String>,
    },
    /// A pool change: its intent before it is sent, its result after.
    Pool {
        /// The server.
        server: ServerId,
        /// The proxy, when one proxy is meant (`None`: every proxy).
        proxy: Option<String>,
        /// The backend, when one is meant (`None`: every backend).
        backend: Option<String>,
        /// Depool or repool.
        action: PoolAction,
        /// Intent or result.
        phase: PoolPhase,
        /// Whether it was confirmed (results only).
        #[serde(skip_serializing_if = "Option::is_none")]
        ok: Option<bool>,
        /// The error, if it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// One canary attempt on a server.
    Canary {
        /// The server.
        server: ServerId,
        /// 1-based.
        attempt: u32,
        /// Whether it passed.
        ok: bool,
        /// HTTP status seen.
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// What was seen.
        detail: String,
    },
    /// A hook point ran.
    Hook {
        /// The server.
        server: ServerId,
        /// Which point.
        hook: HookPoint,
        /// Whether every hook passed.
        ok: bool,
        /// The error.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A rollback ran.
    Rollback {
        /// The server.
        server: ServerId,
        /// The release rolled back from.
        from: ReleaseId,
        /// The release live after it, when known.
        to: Option<ReleaseId>,
        /// Whether it worked.
        ok: bool,
    },
    /// A question for the operator (`answer: None`), and later its answer.
    Prompt {
        /// The question.
        question: String,
        /// `yes`, `no`, `timeout` or `stop`; `None` while open.
        answer: Option<String>,
    },
    /// Something the operator should know that changes nothing (a balancer that
    /// repooled a server by itself, say).
    Warning {
        /// The server, if it concerns one.
        #[serde(skip_serializing_if = "Option::is_none")]
        server: Option<ServerId>,
        /// What.
        detail: String,
    },
    /// The deploy ends: no new server starts (`reason` says why).
    Stopping {
        /// Why.
        reason: crate::action::StopReason,
        /// Details (which failures, which servers block room).
        detail: String,
    },
    /// The deploy ended.
    DeployFinished {
        /// Counts by final state.
        summary: Summary,
        /// Duration (virtual in a simulation).
        duration_s: f64,
        /// How it ended. In the journal it is the field `exit_code`, the status the
        /// `mwdeploy` command exits with for it (cli-contract: 0, 1, 3, 130).
        #[serde(rename = "exit_code", with = "wire_verdict")]
        verdict: Verdict,
    },
}

impl Event {
    /// The `deploy_started` event of `plan`: the machine's first. A runner that records
    /// steps of its own before the machine starts (staging's pulls and sync) records this
    /// first, so every journal starts with it.
    pub fn started(plan: &crate::Plan) -> Event {
        Event::DeployStarted {
            servers: plan.servers.iter().map(|s| s.id.clone()).collect(),
            release: plan.release.clone(),
            layout: plan.layout,
            flags: plan.meta.flags.clone(),
            message: plan.meta.message.clone(),
            user: plan.meta.user.clone(),
        }
    }
}

/// One line of the journal and of `--json` output: an event with its time and deploy.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use mwdeploy_core::event::{Event, Record};
/// let r = Record {
///     ts: UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
///     deploy: "d1".into(),
///     event: Event::StageFinished { stage: 1 },
/// };
/// let line = serde_json::to_string(&r).unwrap();
/// assert_eq!(line, r#"{"ts":"2023-11-14T22:13:20.250Z","deploy":"d1","event":"stage_finished","stage":1}"#);
/// assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), r);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// When (UTC, RFC 3339 with milliseconds and `Z`).
    #[serde(with = "rfc3339")]
    pub ts: SystemTime,
    /// The deploy's id.
    pub deploy: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// How a deploy ended, as a whole. A runner acts on it (the `mwdeploy` command maps it
/// to its exit code); [`Report`](crate::Report) says the details (counts, why, who was left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Every selected server succeeded (or was warned under `--force`).
    Done,
    /// It ran to its end with failed, rolled-back or skipped servers.
    Failed,
    /// It stopped early, for this reason (never [`StopReason::Interrupted`](crate::StopReason::Interrupted)).
    Stopped(crate::action::StopReason),
    /// Refused before touching production ([`Report::refused`](crate::Report::refused) says why).
    Refused,
    /// Interrupted (SIGINT, SIGTERM), after putting depooled servers back.
    Interrupted,
}

impl Verdict {
    /// The number the journal records for it (`deploy_finished.exit_code`: 0 done, 1
    /// failed or stopped, 3 refused, 130 interrupted), and that its text renderings show.
    /// It is a field of the journal's format; a program's exit status is its own to map.
    pub fn journal_code(self) -> i32 {
        match self {
            Verdict::Done => 0,
            Verdict::Failed | Verdict::Stopped(_) => 1,
            Verdict::Refused => 3,
            Verdict::Interrupted => 130,
        }
    }

    /// Whether the deploy did all that was asked.
    pub fn is_success(self) -> bool {
        self == Verdict::Done
    }
}

/// A [`Verdict`] on the journal's wire: the number the journal format has always held
/// (`deploy_finished.exit_code`). A stop reads back as `Failed`: the journal's `stopping`
/// record says why.
mod wire_verdict {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Verdict;

    pub(super) fn serialize<S: Serializer>(v: &Verdict, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(v.journal_code())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
        Ok(match i32::deserialize(d)? {
            0 => Verdict::Done,
            3 => Verdict::Refused,
            130 => Verdict::Interrupted,
            _ => Verdict::Failed,
        })
    }
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}
