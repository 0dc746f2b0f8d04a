//! The errors of the engine: bad names, bad plans, failed ports, misuse.

use crate::model::ServerId;

/// A name (server, proxy, backend, group, release) that may not reach HAProxy, ssh or a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{what} name is empty")]
    Empty {
        /// What kind of name it is ("server", "release").
        what: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{what} name {name:?} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// What kind of name it is.
        what: &'static str,
        /// The name, as given.
        name: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside `[A-Za-z0-9._-]`.
    #[error("{what} name {name:?} contains {ch:?}; only A-Z a-z 0-9 . _ - are allowed")]
    BadChar {
        /// What kind of name it is.
        what: &'static str,
        /// The name, as given.
        name: String,
        /// The first character that is not allowed.
        ch: char,
    },
    /// The name starts with `-` or `.` (an option to a command, or a hidden or parent path).
    #[error("{what} name {name:?} may not start with {first:?}")]
    BadStart {
        /// What kind of name it is.
        what: &'static str,
        /// The name, as given.
        name: String,
        /// The leading character.
        first: char,
    },
    /// The name contains `..`.
    #[error("{what} name {name:?} may not contain \"..\"")]
    DotDot {
        /// What kind of name it is.
        what: &'static str,
        /// The name, as given.
        name: String,
    },
}

/// A plan the machine refuses to run. Nothing was touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// No server was selected.
    #[error("no server selected: the plan has nothing to deploy to")]
    EmptySelection,
    /// The same server appears twice.
    #[error("server {server} is listed twice")]
    DuplicateServer {
        /// The repeated server.
        server: ServerId,
    },
    /// `parallel` is 0.
    #[error("parallel must be at least 1 (got 0)")]
    ZeroParallel,
    /// `max_unavailable` is 0 while some server is behind the balancer.
    #[error("max_unavailable is 0 but server {server} must be depooled: no server could ever be deployed")]
    ZeroMaxUnavailable {
        /// The first pooled server of the plan.
        server: ServerId,
    },
    /// A stage list with no entry.
    #[error("stages is empty: give at least one stage, e.g. [\"100%\"]")]
    NoStages,
    /// A stage of 0 servers.
    #[error("stage {index} has 0 servers; a stage holds at least 1")]
    ZeroStage {
        /// 1-based position in the stage list.
        index: usize,
    },
    /// A percentage outside 1..=100.
    #[error("stage {index} is {percent}%; a percentage must be within 1..=100")]
    PercentOutOfRange {
        /// 1-based position in the stage list.
        index: usize,
        /// The percentage given.
        percent: u32,
    },
    /// A failure budget percentage outside 0..=100.
    #[error("failure_budget {percent}% is out of range 0..=100")]
    BudgetOutOfRange {
        /// The percentage given.
        percent: u32,
    },
    /// Group stages mixed with counts or percentages.
    #[error("stages mix groups with counts or percentages; use one kind")]
    MixedStages,
    /// A `group:NAME` stage names a group no selected server is in.
    #[error("stage {index} names group {group:?}, but no selected server is in it")]
    UnknownGroup {
        /// 1-based position in the stage list.
        index: usize,
        /// The group name.
        group: String,
    },
    /// With group stages, a selected server is in none of the listed groups.
    #[error("server {server} is in no group listed in stages (its group: {group:?})")]
    ServerInNoStage {
        /// The server left out.
        server: ServerId,
        /// Its group, if any.
        group: Option<String>,
    },
    /// Canary attempts is 0.
    #[error("canary attempts must be at least 1")]
    ZeroCanaryAttempts,
}

/// What kind of failure a port reports; the machine treats them alike, the operator does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PortErrorKind {
    /// Might work if tried again (a connection dropped).
    Transient,
    /// Will not work if tried again (no such server on the proxy, disk full).
    Permanent,
    /// The step ran past its deadline.
    Timeout,
    /// The configuration is wrong for this step (a missing path, a bad URL).
    Misconfigured,
}

impl std::fmt::Display for PortErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortErrorKind::Transient => "transient",
            PortErrorKind::Permanent => "permanent",
            PortErrorKind::Timeout => "timeout",
            PortErrorKind::Misconfigured => "misconfigured",
        })
    }
}

/// A port (pool control, transfer, health check, hook, notifier) could not do its step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PortError {
    /// What kind of failure this is.
    pub kind: PortErrorKind,
    /// The server the step concerned, if any.
    pub server: Option<ServerId>,
    /// The proxy that answered or failed to, if any.
    pub proxy: Option<String>,
    /// What went wrong, in the words of the program that said it.
    pub detail: String,
}

impl PortError {
    /// A new error of `kind` with `detail`.
    pub fn new(kind: PortErrorKind, detail: impl Into<String>) -> Self {
        PortError {
            kind,
            server: None,
            proxy: None,
            detail: detail.into(),
        }
    }

    /// A transient error.
    pub fn transient(detail: impl Into<String>) -> Self {
        Self::new(PortErrorKind::Transient, detail)
    }

    /// A permanent error.
    pub fn permanent(detail: impl Into<String>) -> Self {
        Self::new(PortErrorKind::Permanent, detail)
    }

    /// A step that ran out of time.
    pub fn timeout(detail: impl Into<String>) -> Self {
        Self::new(PortErrorKind::Timeout, detail)
    }

    /// A configuration that cannot work.
    pub fn misconfigured(detail: impl Into<String>) -> Self {
        Self::new(PortErrorKind::Misconfigured, detail)
    }

    /// The same error, naming the server it concerns.
    pub fn for_server(mut self, server: &ServerId) -> Self {
        self.server = Some(server.clone());
        self
    }

    /// The same error, naming the proxy that answered.
    pub fn on_proxy(mut self, proxy: impl Into<String>) -> Self {
        self.proxy = Some(proxy.into());
        self
    }

    fn render(&self) -> String {
        let mut s = String::new();
        if let Some(server) = &self.server {
            s.push_str(&format!("server {server}: "));
        }
        if let Some(proxy) = &self.proxy {
            s.push_str(&format!("proxy {proxy}: "));
        }
        s.push_str(&format!("{} ({})", self.detail, self.kind));
        s
    }
}
