//! What a deploy will do: the servers, their stages, and the policy that governs failures.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::PlanError;
use crate::model::{Layout, ReleaseId, Server, ServerId};

/// One entry of `stages`, like one value of Ansible's `serial` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageSize {
    /// This many servers.
    Count(u32),
    /// This percentage of the selected servers, rounded up, at least one.
    Percent(u32),
    /// Every selected server of this group.
    Group(String),
}

impl FromStr for StageSize {
    type Err = String;

    /// `1`, `10%` or `group:canary`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(group) = s.strip_prefix("group:") {
            crate::model::validate_name("group", group, 253).map_err(|e| e.to_string())?;
            return Ok(StageSize::Group(group.to_string()));
        }
        if let Some(p) = s.strip_suffix('%') {
            return p
                .trim()
                .parse::<u32>()
                .map(StageSize::Percent)
                .map_err(|_| format!("stage {s:?}: expected a percentage like \"10%\""));
        }
        s.parse::<u32>().map(StageSize::Count).map_err(|_| {
            format!("stage {s:?}: expected a count (1), a percentage (10%) or group:NAME")
        })
    }
}

impl fmt::Display for StageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageSize::Count(n) => write!(f, "{n}"),
            StageSize::Percent(p) => write!(f, "{p}%"),
            StageSize::Group(g) => write!(f, "group:{g}"),
        }
    }
}

/// Failures tolerated without asking, over the whole deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureBudget {
    /// This many failed servers.
    Count(u32),
    /// This percentage of the selected servers, rounded down.
    Percent(u32),
}

impl Default for FailureBudget {
    fn default() -> Self {
        FailureBudget::Count(0)
    }
}

impl FailureBudget {
    /// The number of failures tolerated among `servers` selected servers.
    pub fn resolve(self, servers: usize) -> u32 {
        match self {
            FailureBudget::Count(n) => n,
            FailureBudget::Percent(p) => (servers as u64 * u64::from(p) / 100) as u32,
        }
    }
}

impl FromStr for FailureBudget {
    type Err = String;
    /// `2` or `5%`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => p.trim().parse().map(FailureBudget::Percent).map_err(|_| {
                format!("failure budget {s:?}: expected a count (2) or a percentage (5%)")
            }),
            None => s.parse().map(FailureBudget::Count).map_err(|_| {
                format!("failure budget {s:?}: expected a count (2) or a percentage (5%)")
            }),
        }
    }
}

/// What happens at the first failure beyond the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Ask the operator: yes goes on (and the budget grows by one); no, Esc or a timeout stops.
    #[default]
    Prompt,
    /// Stop: no new server starts, pending servers are skipped.
    Abort,
    /// Never stop for failures.
    Continue,
}

impl FromStr for OnFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prompt" => Ok(OnFailure::Prompt),
            "abort" => Ok(OnFailure::Abort),
            "continue" => Ok(OnFailure::Continue),
            _ => Err(format!(
                "on_failure {s:?}: expected prompt, abort or continue"
            )),
        }
    }
}

/// How the canary is retried (the old tool's values are the defaults: 15 s, 3 attempts, 3 s).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CanaryPolicy {
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Attempts before the canary counts as failed.
    pub attempts: u32,
    /// Pause after a failed attempt.
    pub retry_pause: Duration,
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        CanaryPolicy {
            timeout: Duration::from_secs(15),
            attempts: 3,
            retry_pause: Duration::from_secs(3),
        }
    }
}

/// What an error gate that could not read its log decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnknown {
    /// Count it as a failure.
    #[default]
    Fail,
    /// Let the server pass.
    Pass,
}

/// The error gate: after the repool, the server's errors are watched while it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorGatePolicy {
    /// How long the server is watched.
    pub window: Duration,
    /// What an unreadable log means.
    pub on_unknown: OnUnknown,
}

impl ErrorGatePolicy {
    /// A gate watching for `window`.
    pub fn new(window: Duration, on_unknown: OnUnknown) -> Self {
        ErrorGatePolicy { window, on_unknown }
    }
}

/// Per-step deadlines.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepTimeouts {
    /// Reading the pool state.
    pub query: Duration,
    /// Copying a release ahead (release layout).
    pub copy: Duration,
    /// Taking a server out of the pool, drain included.
    pub depool: Duration,
    /// Switching the release, or the in-place copy.
    pub activate: Duration,
    /// One hook point.
    pub hook: Duration,
    /// Putting a server back and seeing the balancer serve it.
    pub repool: Duration,
    /// Switching back to the previous release.
    pub rollback: Duration,
    /// One notification.
    pub notify: Duration,
}

impl Default for StepTimeouts {
    fn default() -> Self {
        StepTimeouts {
            query: Duration::from_secs(30),
            copy: Duration::from_secs(3600),
            depool: Duration::from_secs(60),
            activate: Duration::from_secs(3600),
            hook: Duration::from_secs(900),
            repool: Duration::from_secs(60),
            rollback: Duration::from_secs(120),
            notify: Duration::from_secs(30),
        }
    }
}

/// The rules of a rollout: how many at once, in which stages, and what failures do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Servers in flight at once, copies ahead included.
    pub parallel: u32,
    /// Servers out of the pool at once, counting every server of the backend that is out.
    pub max_unavailable: u32,
    /// Stage sizes; the last value repeats.
    pub stages: Vec<StageSize>,
    /// Pause after each stage but the last.
    pub bake: Duration,
    /// Ask the operator before each stage but the first.
    pub approve_stages: bool,
    /// Failures tolerated without asking.
    pub failure_budget: FailureBudget,
    /// What happens beyond the budget.
    pub on_failure: OnFailure,
    /// The old tool's `--force`: no prompts, a failed canary is a warning, no preflight refusal.
    pub force: bool,
    /// Canary retries.
    pub canary: CanaryPolicy,
    /// The optional error gate after each repool.
    pub error_gate: Option<ErrorGatePolicy>,
    /// Per-step deadlines.
    pub timeouts: StepTimeouts,
    /// How long a prompt waits before its safe answer (stop).
    pub prompt_timeout: Duration,
    /// How often a copy (or in-place transfer) that failed with a transient error is
    /// tried again before the server counts as failed.
    pub transfer_retries: u32,
    /// How often a repool that failed with a transient error (a proxy unreachable for a
    /// moment) is sent again before the server is reported out of the pool.
    pub pool_retries: u32,
    /// Read the pool again before each depool and count every server it shows out that
    /// the deploy does not already count (one that went down, or that someone took out,
    /// since the preflight). Off by default: a read costs a round trip to every proxy
    /// (and, in a simulation, a look at every server).
    pub reread_pool: bool,
    /// With [`Policy::reread_pool`]: how long a server ready to be depooled waits for
    /// servers out for other reasons to come back before the deploy stops for lack of room.
    pub room_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            parallel: 1,
            max_unavailable: 1,
            stages: vec![StageSize::Percent(100)],
            bake: Duration::ZERO,
            approve_stages: false,
            failure_budget: FailureBudget::default(),
            on_failure: OnFailure::default(),
            force: false,
            canary: CanaryPolicy::default(),
            error_gate: None,
            timeouts: StepTimeouts::default(),
            prompt_timeout: Duration::from_secs(300),
            transfer_retries: 1,
            pool_retries: 2,
            reread_pool: false,
            room_timeout: Duration::from_secs(60),
        }
    }
}

/// Who started a deploy and why: echoed in `deploy_started`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeployMeta {
    /// The command-line flags, as given.
    pub flags: Vec<String>,
    /// The operator's message (`-m`).
    pub message: Option<String>,
    /// The operator's user name.
    pub user: Option<String>,
}

/// Everything a [`Rollout`](crate::Rollout) needs: servers, release, layout, policy.
///
/// ```
/// use mwdeploy_core::{Plan, Server, ServerId, ReleaseId, Layout};
/// use std::time::UNIX_EPOCH;
/// let servers = ["mw1", "mw2"].iter().map(|n| Server::new(ServerId::new(n).unwrap())).collect();
/// let release = ReleaseId::at(UNIX_EPOCH, "a1").unwrap();
/// let plan = Plan::new("d1", release, Layout::Releases, servers);
/// assert_eq!(plan.stages().unwrap().len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// The deploy's id (names its journal).
    pub deploy_id: String,
    /// The release being deployed.
    pub release: ReleaseId,
    /// Release directories or in-place.
    pub layout: Layout,
    /// The selected servers, in deploy order.
    pub servers: Vec<Server>,
    /// The rules.
    pub policy: Policy,
    /// The deploy host's staging copy; its canary runs before any production server.
    pub staging: Option<Server>,
    /// Whether the pool is read before the first server (a target not UP stops the deploy).
    pub preflight: bool,
    /// Who and why.
    pub meta: DeployMeta,
}

impl Plan {
    /// A plan with the default policy, no staging canary and a preflight pool check.
    pub fn new(
        deploy_id: impl Into<String>,
        release: ReleaseId,
        layout: Layout,
        servers: Vec<Server>,
    ) -> Self {
        Plan {
            deploy_id: deploy_id.into(),
            release,
            layout,
            servers,
            policy: Policy::default(),
            staging: None,
            preflight: true,
            meta: DeployMeta::default(),
        }
    }

    /// Checks the plan and splits the servers into stages (indices into `servers`).
    pub fn stages(&self) -> Result<Vec<Vec<u32>>, PlanError> {
        self.check()?;
        let n = self.servers.len();
        let groups = matches!(self.policy.stages[0], StageSize::Group(_));
        if groups {
            let mut out = Vec::with_capacity(self.policy.stages.len());
            let mut staged = vec![false; n];
            for (i, stage) in self.policy.stages.iter().enumerate() {
                let StageSize::Group(g) = stage else {
                    return Err(PlanError::MixedStages);
                };
                let members: Vec<u32> = (0..n)
                    .filter(|&s| self.servers[s].group.as_deref() == Some(g.as_str()))
                    .map(|s| s as u32)
                    .collect();
                if members.is_empty() {
                    return Err(PlanError::UnknownGroup {
                        index: i + 1,
                        group: g.clone(),
                    });
                }
                // A server in a group listed twice runs in the first such stage only.
                let members: Vec<u32> = members
                    .into_iter()
                    .filter(|&s| !std::mem::replace(&mut staged[s as usize], true))
                    .collect();
                if !members.is_empty() {
                    out.push(members);
                }
            }
            if let Some(s) = staged.iter().position(|x| !x) {
                return Err(PlanError::ServerInNoStage {
                    server: self.servers[s].id.clone(),
                    group: self.servers[s].group.clone(),
                });
            }
            return Ok(out);
        }
        let mut out = Vec::new();
        let mut start = 0usize;
        let mut i = 0usize;
        while start < n {
            let spec = &self.policy.stages[i.min(self.policy.stages.len() - 1)];
            let size = match spec {
                StageSize::Count(c) => *c as usize,
                StageSize::Percent(p) => (n * *p as usize).div_ceil(100).max(1),
                StageSize::Group(_) => return Err(PlanError::MixedStages),
            };
            let end = (start + size).min(n);
            out.push((start as u32..end as u32).collect());
            start = end;
            i += 1;
        }
        Ok(out)
    }

    fn check(&self) -> Result<(), PlanError> {
        if self.servers.is_empty() {
            return Err(PlanError::EmptySelection);
        }
        let mut seen: HashSet<&ServerId> = HashSet::with_capacity(self.servers.len());
        for s in &self.servers {
            if !seen.insert(&s.id) {
                return Err(PlanError::DuplicateServer {
                    server: s.id.clone(),
                });
            }
        }
        let p = &self.policy;
        if p.parallel == 0 {
            return Err(PlanError::ZeroParallel);
        }
        if p.max_unavailable == 0 {
            if let Some(s) = self.servers.iter().find(|s| s.pooled) {
                return Err(PlanError::ZeroMaxUnavailable {
                    server: s.id.clone(),
                });
            }
        }
        if p.canary.attempts == 0 {
            return Err(PlanError::ZeroCanaryAttempts);
        }
        if let FailureBudget::Percent(pc) = p.failure_budget {
            if pc > 100 {
                return Err(PlanError::BudgetOutOfRange { percent: pc });
            }
        }
        if p.stages.is_empty() {
            return Err(PlanError::NoStages);
        }
        let groups = p
            .stages
            .iter()
            .filter(|s| matches!(s, StageSize::Group(_)))
            .count();
        if groups != 0 && groups != p.stages.len() {
            return Err(PlanError::MixedStages);
        }
        for (i, s) in p.stages.iter().enumerate() {
            match s {
                StageSize::Count(0) => return Err(PlanError::ZeroStage { index: i + 1 }),
                StageSize::Percent(pc) if *pc == 0 || *pc > 100 => {
                    return Err(PlanError::PercentOutOfRange {
                        index: i + 1,
                        percent: *pc,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }
}
