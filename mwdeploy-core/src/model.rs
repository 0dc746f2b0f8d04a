//! The fleet's vocabulary: servers and their names, releases, pool and health states.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::NameError;

/// Checks a name that will reach HAProxy's line protocol, ssh or a path:
/// `[A-Za-z0-9._-]`, 1..=`max` characters, not starting with `-` or `.`, no `..`.
///
/// ```
/// use mwdeploy_core::model::validate_name;
/// assert!(validate_name("server", "mw-us-east-011.example.org", 253).is_ok());
/// assert!(validate_name("server", "-oProxyCommand=x", 253).is_err());
/// assert!(validate_name("server", "mw1;reboot", 253).is_err());
/// ```
pub fn validate_name(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    let len = name.chars().count();
    if len > max {
        return Err(NameError::TooLong {
            what,
            name: name.to_string(),
            len,
            max,
        });
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(NameError::BadChar {
            what,
            name: name.to_string(),
            ch,
        });
    }
    let first = name.chars().next().unwrap_or('a');
    if first == '-' || first == '.' {
        return Err(NameError::BadStart {
            what,
            name: name.to_string(),
            first,
        });
    }
    if name.contains("..") {
        return Err(NameError::DotDot {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// A server's name, checked: `[A-Za-z0-9._-]`, 1..=253 characters, not starting with `-` or `.`.
///
/// Cheap to clone (shared), ordered and hashed by its text.
///
/// ```
/// use mwdeploy_core::ServerId;
/// let id: ServerId = "mw1.example.org".parse().unwrap();
/// assert_eq!(id.as_str(), "mw1.example.org");
/// assert!("mw1 mw2".parse::<ServerId>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(Arc<str>);

impl ServerId {
    /// The longest name accepted (a DNS name's limit).
    pub const MAX_LEN: usize = 253;

    /// Checks `name` and wraps it.
    pub fn new(name: &str) -> Result<Self, NameError> {
        validate_name("server", name, Self::MAX_LEN)?;
        Ok(ServerId(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ServerId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerId::new(s)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for ServerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for ServerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ServerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ServerId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// How a server is checked before it goes back into the pool.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CanaryTarget {
    /// The deploy-wide canary URLs.
    #[default]
    Default,
    /// These URLs (all must pass), instead of the deploy-wide ones.
    Urls(Vec<String>),
    /// This argv, run on the server; exit status 0 is healthy (job runners).
    Command(Vec<String>),
}

/// A point of the per-server cycle where hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    /// Release layout: on the new release, after its copy, while the server still serves.
    PostCopy,
    /// Both layouts: after the switch (or in-place copy), before the canary.
    PostActivate,
    /// Before the server is taken out of the pool.
    PreDepool,
    /// After the server is back in the pool.
    PostRepool,
}

impl HookPoint {
    /// Every hook point, in cycle order.
    pub const ALL: [HookPoint; 4] = [
        HookPoint::PostCopy,
        HookPoint::PreDepool,
        HookPoint::PostActivate,
        HookPoint::PostRepool,
    ];

    /// The config key of this point (`post_copy`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            HookPoint::PostCopy => "post_copy",
            HookPoint::PostActivate => "post_activate",
            HookPoint::PreDepool => "pre_depool",
            HookPoint::PostRepool => "post_repool",
        }
    }

    fn bit(self) -> u8 {
        match self {
            HookPoint::PostCopy => 1,
            HookPoint::PostActivate => 2,
            HookPoint::PreDepool => 4,
            HookPoint::PostRepool => 8,
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The set of hook points that have hooks configured for a server.
///
/// The machine issues a `RunHook` action only for points in this set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct HookPoints(u8);

impl HookPoints {
    /// No hooks at all.
    pub const NONE: HookPoints = HookPoints(0);

    /// The set holding `points`.
    pub fn of(points: &[HookPoint]) -> Self {
        points.iter().fold(HookPoints::NONE, |s, p| s.with(*p))
    }

    /// This set plus `point`.
    pub fn with(self, point: HookPoint) -> Self {
        HookPoints(self.0 | point.bit())
    }

    /// Whether `point` has hooks.
    pub fn contains(self, point: HookPoint) -> bool {
        self.0 & point.bit() != 0
    }
}

/// A server of the fleet and its overrides of the deploy-wide settings.
///
/// Only `id` and `pooled` matter to the machine; the rest is for the adapters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Server {
    /// Its name (in the config, the journal, the output).
    pub id: ServerId,
    /// Host to reach over ssh (default: the name).
    pub ssh_host: Option<String>,
    /// Port to reach over ssh (default: the deploy-wide port).
    pub ssh_port: Option<u16>,
    /// Run this server's commands here, without ssh.
    pub local: bool,
    /// Its live tree (default: the deploy-wide `prod_path`).
    pub prod_path: Option<std::path::PathBuf>,
    /// How its canary checks it.
    pub canary: CanaryTarget,
    /// Its name in the HAProxy backend (default: `id`).
    pub backend_name: Option<ServerId>,
    /// Its group, for stages by group.
    pub group: Option<String>,
    /// Whether it is behind the balancer: `false` means no depool, no repool.
    pub pooled: bool,
    /// Which hook points have hooks for this server.
    pub hooks: HookPoints,
}

impl Server {
    /// A pooled server with no overrides.
    pub fn new(id: ServerId) -> Self {
        Server {
            id,
            ssh_host: None,
            ssh_port: None,
            local: false,
            prod_path: None,
            canary: CanaryTarget::Default,
            backend_name: None,
            group: None,
            pooled: true,
            hooks: HookPoints::NONE,
        }
    }

    /// Same server, in `group`.
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Same server, not behind the balancer (a job runner), checked by `command`.
    pub fn unpooled(mut self, command: Vec<String>) -> Self {
        self.pooled = false;
        self.canary = CanaryTarget::Command(command);
        self
    }

    /// Same server, with hooks at `hooks`.
    pub fn with_hooks(mut self, hooks: HookPoints) -> Self {
        self.hooks = hooks;
        self
    }

    /// Its name in the balancer's backend.
    pub fn backend_name(&self) -> &ServerId {
        self.backend_name.as_ref().unwrap_or(&self.id)
    }
}

/// A release: the UTC time it was made plus a short suffix, `20261122T034858Z-3f9a`.
///
/// It names a directory on every server, so only `[0-9A-Za-z-]` is accepted.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use mwdeploy_core::ReleaseId;
/// let id = ReleaseId::at(UNIX_EPOCH + Duration::from_secs(1_700_000_000), "a1b2").unwrap();
/// assert_eq!(id.as_str(), "20231114T221320Z-a1b2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseId(String);

impl ReleaseId {
    /// The release made at `time`, told apart from others of the same second by `suffix`
    /// (1..=16 characters of `[0-9a-z]`).
    pub fn at(time: SystemTime, suffix: &str) -> Result<Self, NameError> {
        if suffix.is_empty() {
            return Err(NameError::Empty {
                what: "release suffix",
            });
        }
        if suffix.len() > 16 {
            return Err(NameError::TooLong {
                what: "release suffix",
                name: suffix.to_string(),
                len: suffix.len(),
                max: 16,
            });
        }
        if let Some(ch) = suffix
            .chars()
            .find(|c| !(c.is_ascii_digit() || c.is_ascii_lowercase()))
        {
            return Err(NameError::BadChar {
                what: "release suffix",
                name: suffix.to_string(),
                ch,
            });
        }
        // "2026-11-22T03:48:58Z" -> "20261122T034858Z"
        let stamp: String = humantime::format_rfc3339_seconds(time)
            .to_string()
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect();
        Ok(ReleaseId(format!("{stamp}-{suffix}")))
    }

    /// Checks an id read back from a server or the journal.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        validate_name("release", text, 64)?;
        if let Some(ch) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(NameError::BadChar {
                what: "release",
                name: text.to_string(),
                ch,
            });
        }
        Ok(ReleaseId(text.to_string()))
    }

    /// The id as text (the directory name).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ReleaseId {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        ReleaseId::parse(&s)
    }
}

impl From<ReleaseId> for String {
    fn from(r: ReleaseId) -> String {
        r.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How new code reaches a server's live tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The old tool's way: depool, then rsync into the live tree. No rollback.
    #[default]
    Inplace,
    /// Release directories: copy ahead while pooled, switch a symlink, roll back by switching back.
    Releases,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Inplace => "inplace",
            Layout::Releases => "releases",
        })
    }
}

/// A server's state in the balancer, in HAProxy's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum PoolState {
    /// Serving.
    Up,
    /// Draining: no new sessions, existing ones finish.
    Drain,
    /// In maintenance: out of the pool.
    Maint,
    /// Failing its balancer health checks: out of the pool.
    Down,
}

impl PoolState {
    /// Whether the balancer sends new requests to it.
    pub fn is_serving(self) -> bool {
        matches!(self, PoolState::Up)
    }
}

impl fmt::Display for PoolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolState::Up => "UP",
            PoolState::Drain => "DRAIN",
            PoolState::Maint => "MAINT",
            PoolState::Down => "DOWN",
        })
    }
}

/// The answer of one health check attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "health", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Health {
    /// It serves what it should.
    Healthy,
    /// It does not; `reason` says how (the status seen, the missing text).
    Unhealthy {
        /// What was wrong.
        reason: String,
        /// The HTTP status seen, if any.
        status: Option<u16>,
    },
    /// The check could not tell (the log could not be read).
    Unknown {
        /// Why it could not tell.
        reason: String,
    },
}

impl Health {
    /// An unhealthy answer with `reason`.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        Health::Unhealthy {
            reason: reason.into(),
            status: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn server_ids_accept_host_names() {
        for ok in [
            "mw1",
            "mw-us-east-011.example.org",
            "a",
            "A_b-9.c",
            &"x".repeat(253),
        ] {
            assert!(ServerId::new(ok).is_ok(), "{ok:?} should be accepted");
        }
    }

    #[test]
    fn server_ids_refuse_what_could_reach_a_shell_an_option_or_a_parent_path() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("-oProxyCommand=x", "'='"),
            ("-rf", "may not start"),
            (".hidden", "may not start"),
            ("mw1..x", "\"..\""),
            ("mw1;reboot", "';'"),
            ("mw1 mw2", "' '"),
            ("mw1/../etc", "'/'"),
            ("mw1\n", "'\\n'"),
            ("mw1$(id)", "'$'"),
            ("müller", "'ü'"),
        ];
        for (bad, why) in cases {
            let err = ServerId::new(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = "x".repeat(254);
        assert!(matches!(
            ServerId::new(&long),
            Err(NameError::TooLong { len: 254, .. })
        ));
    }

    #[test]
    fn server_ids_round_trip_through_serde_and_refuse_bad_names() {
        let id: ServerId = serde_json::from_str("\"mw1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"mw1\"");
        assert!(serde_json::from_str::<ServerId>("\"-rf\"").is_err());
    }

    #[test]
    fn release_ids_are_utc_time_plus_suffix() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let id = ReleaseId::at(t, "x9").unwrap();
        assert_eq!(id.as_str(), "20261118T110640Z-x9");
        assert_eq!(ReleaseId::parse(id.as_str()).unwrap(), id);
        assert!(ReleaseId::at(t, "").is_err());
        assert!(ReleaseId::at(t, "A").is_err());
        assert!(ReleaseId::at(t, "a/b").is_err());
        assert!(ReleaseId::parse("../x").is_err());
        assert!(ReleaseId::parse("a.b").is_err());
    }

    #[test]
    fn hook_points_form_a_set() {
        let s = HookPoints::of(&[HookPoint::PostCopy, HookPoint::PostRepool]);
        assert!(s.contains(HookPoint::PostCopy));
        assert!(s.contains(HookPoint::PostRepool));
        assert!(!s.contains(HookPoint::PreDepool));
        assert!(!HookPoints::NONE.contains(HookPoint::PostActivate));
    }

    #[test]
    fn only_up_is_serving() {
        assert!(PoolState::Up.is_serving());
        for s in [PoolState::Drain, PoolState::Maint, PoolState::Down] {
            assert!(!s.is_serving(), "{s}");
        }
    }
}
