//! `config.yaml`: read, checked, and turned into the engine's types.
//!
//! ```text
//!  file ──> permission check ──> YAML (serde-saphyr, every value with line:column)
//!       ──> raw::RawConfig ──> check (names, URLs, ranges, paths, defaults) ──> Config
//!                                                                             │
//!        servers() / ssh_defaults() / policy() / staging_server() / warnings() ◄┘
//! ```
//!
//! Every key of the old tool keeps its name and meaning, and every new key has the CLI
//! contract's default, so an old config works unchanged. Every error is
//! `<file>:<line>:<column>: <key>: <message>` (without line and column where the file
//! has none to give), and all of them are reported at once.
//!
//! Paths on the deploy host (`staging_path`, `ssh_identity`, `log_file`, `state_dir`,
//! `staging.prod_path`, and the paths of `local: true` servers and proxies) are resolved
//! against the config file's folder when relative. Paths on other hosts must be absolute:
//! the config's folder means nothing there.

mod check;
mod raw;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mwdeploy_core::model::{CanaryTarget, HookPoint, HookPoints};
use mwdeploy_core::plan::{
    CanaryPolicy, ErrorGatePolicy, FailureBudget, OnFailure, OnUnknown, Policy, StageSize,
    StepTimeouts,
};
use mwdeploy_core::{Layout, Server, ServerId};
use mwdeploy_exec::SshDefaults;

pub use crate::error::ConfigError;

pub use raw::{check_budget, check_stage};

/// Where the config is read from when neither `-C` nor `$MWDEPLOY_CONFIG` says.
pub const DEFAULT_PATH: &str = "/etc/mwdeploy/config.yaml";

/// The environment variable naming the config when `-C` is not given.
pub const PATH_ENV: &str = "MWDEPLOY_CONFIG";

/// What a pool step may take beyond its own wait (drain or repool confirmation).
const DEPOOL_MARGIN: std::time::Duration = std::time::Duration::from_secs(20);

/// The config file to read: `flag` (`-C/--config-file`), else `$MWDEPLOY_CONFIG` (when
/// set and not empty), else [`DEFAULT_PATH`].
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os(PATH_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// A place in the config file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

impl Loc {
    /// The place of a parsed value, if the parser knew it.
    fn of(l: serde_saphyr::Location) -> Option<Loc> {
        (l.line() > 0).then(|| Loc {
            line: l.line(),
            column: l.column().max(1),
        })
    }
}

/// One finding about the config: an error or a warning, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file.
    pub file: PathBuf,
    /// Where in it, when known.
    pub at: Option<Loc>,
    /// What is wrong, starting with the key (`rollout.parallel: ...`).
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                at.line,
                at.column,
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// A webhook URL: a secret, so it never appears in `Debug` output, messages or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The URL, for the one place that posts to it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Argv lists per hook point, after per-server (or staging) overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Release layout: on the new release, before depool.
    pub post_copy: Vec<Vec<String>>,
    /// Both layouts, before the canary.
    pub post_activate: Vec<Vec<String>>,
    /// Before the server leaves the pool.
    pub pre_depool: Vec<Vec<String>>,
    /// After the server is back in the pool.
    pub post_repool: Vec<Vec<String>>,
}

impl Hooks {
    /// The argv lists of `point`, run in order; placeholders (`{server}`, `{release}`,
    /// `{release_path}`, `{prod_path}`) are still in them.
    pub fn at(&self, point: HookPoint) -> &[Vec<String>] {
        match point {
            HookPoint::PostCopy => &self.post_copy,
            HookPoint::PostActivate => &self.post_activate,
            HookPoint::PreDepool => &self.pre_depool,
            HookPoint::PostRepool => &self.post_repool,
        }
    }

    fn at_mut(&mut self, point: HookPoint) -> &mut Vec<Vec<String>> {
        match point {
            HookPoint::PostCopy => &mut self.post_copy,
            HookPoint::PostActivate => &mut self.post_activate,
            HookPoint::PreDepool => &mut self.pre_depool,
            HookPoint::PostRepool => &mut self.post_repool,
        }
    }

    /// The points that have at least one hook.
    pub fn points(&self) -> HookPoints {
        HookPoint::ALL
            .iter()
            .filter(|p| !self.at(**p).is_empty())
            .fold(HookPoints::NONE, |s, p| s.with(*p))
    }
}

/// One of `mw_servers`, with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Its name.
    pub name: ServerId,
    /// Host for ssh (`None`: the name).
    pub ssh_host: Option<String>,
    /// Port for ssh (`None`: the deploy-wide `ssh_port`).
    pub ssh_port: Option<u16>,
    /// Its commands run on the deploy host, without ssh.
    pub local: bool,
    /// Its live tree (its own `prod_path`, else the deploy-wide one).
    pub prod_path: PathBuf,
    /// Where its releases go (release layout): `releases_dir`, else `<prod_path>-releases`.
    pub releases_dir: PathBuf,
    /// How its canary checks it.
    pub canary: CanaryTarget,
    /// Its name in the HAProxy backends (`None`: its name).
    pub haproxy_server: Option<ServerId>,
    /// Its group, for stages by group.
    pub group: Option<String>,
    /// Behind HAProxy (`pooled: false`: a job runner, never depooled).
    pub pooled: bool,
    /// Its hooks: the global ones, each point replaced by its own where it sets one.
    pub hooks: Hooks,
    /// Where it is written in the config.
    pub at: Option<Loc>,
}

impl ServerConfig {
    /// The engine's view of this server.
    pub fn to_server(&self) -> Server {
        let mut s = Server::new(self.name.clone());
        s.ssh_host = self.ssh_host.clone();
        s.ssh_port = self.ssh_port;
        s.local = self.local;
        s.prod_path = Some(self.prod_path.clone());
        s.canary = self.canary.clone();
        s.backend_name = self.haproxy_server.clone();
        s.group = self.group.clone();
        s.pooled = self.pooled;
        s.hooks = self.hooks.points();
        s
    }
}

/// One of `proxy_servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Its name.
    pub name: ServerId,
    /// Reached here, without ssh.
    pub local: bool,
    /// Its admin socket (its own `haproxy_socket`, else the deploy-wide one).
    pub socket: PathBuf,
    /// Host for ssh (`None`: the name).
    pub ssh_host: Option<String>,
    /// Port for ssh (`None`: the deploy-wide `ssh_port`).
    pub ssh_port: Option<u16>,
}

impl ProxyConfig {
    /// The proxy as a host the exec layer can reach (`Hosts::runner`).
    pub fn to_host(&self) -> Server {
        let mut s = Server::new(self.name.clone());
        s.ssh_host = self.ssh_host.clone();
        s.ssh_port = self.ssh_port;
        s.local = self.local;
        s.pooled = false;
        s
    }
}

/// `staging:`: the deploy host's own copy, checked before production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingConfig {
    /// Where `staging_path` is synced on the deploy host (default: `prod_path`).
    pub prod_path: PathBuf,
    /// Its canary URLs (default: `canary.url`).
    pub canary_urls: Vec<String>,
    /// Its hooks: the global ones, each point replaced by its own where it sets one.
    pub hooks: Hooks,
}

impl StagingConfig {
    /// The name staging goes by in the plan, the journal and the output.
    pub const NAME: &'static str = "staging";

    /// The engine's view of staging: a local server with its own canary URLs.
    pub fn to_server(&self) -> Server {
        let id = ServerId::new(Self::NAME).expect("\"staging\" is a valid name");
        let mut s = Server::new(id);
        s.local = true;
        s.pooled = false;
        s.prod_path = Some(self.prod_path.clone());
        s.canary = CanaryTarget::Urls(self.canary_urls.clone());
        s.hooks = self.hooks.points();
        s
    }
}

/// `canary:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryConfig {
    /// URLs fetched on each server (all must pass) unless it sets its own.
    pub urls: Vec<String>,
    /// Status every URL must answer.
    pub expect_status: u16,
    /// Case-insensitive substring of the body (`None`: not checked).
    pub expect_body: Option<String>,
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Attempts before the canary fails.
    pub attempts: u32,
    /// Pause after a failed attempt.
    pub retry_pause: Duration,
    /// Follow HTTP redirects.
    pub follow_redirects: bool,
    /// The optional error gate after each repool.
    pub error_gate: Option<ErrorGateConfig>,
}

/// `canary.error_gate:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorGateConfig {
    /// The log on each server whose new lines are counted.
    pub log_file: PathBuf,
    /// What a counted line matches (an extended regular expression).
    pub pattern: String,
    /// Matching lines within the window that fail the server.
    pub threshold: u32,
    /// How long the server is watched after its repool.
    pub window: Duration,
    /// What an unreadable log means.
    pub on_unknown: OnUnknown,
}

/// `rollout:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutConfig {
    /// Servers in flight at once.
    pub parallel: u32,
    /// Servers out of the pool at once.
    pub max_unavailable: u32,
    /// Where `max_unavailable` is written, for messages about it.
    pub max_unavailable_at: Option<Loc>,
    /// Stage sizes; the last repeats.
    pub stages: Vec<StageSize>,
    /// Pause after each stage but the last.
    pub bake: Duration,
    /// Ask before each stage but the first.
    pub approve_stages: bool,
    /// Failures tolerated without asking.
    pub failure_budget: FailureBudget,
    /// Beyond the budget.
    pub on_failure: OnFailure,
    /// Deadline of a depool, drain included.
    pub drain_timeout: Duration,
    /// Deadline of a repool, until the balancer serves the server.
    pub repool_timeout: Duration,
    /// A repooled server gets requests only once HAProxy's own check passed.
    pub repool_after_check: bool,
    /// How long a server ready to be depooled waits for servers out for other reasons
    /// (seen by the pool read before each depool) before the deploy stops.
    pub room_timeout: Duration,
    /// Deadline of a copy ahead (release layout).
    pub copy_timeout: Duration,
    /// Deadline of a release switch, or of the in-place copy.
    pub activate_timeout: Duration,
    /// Deadline of one hook point.
    pub hook_timeout: Duration,
}

/// `webhooks:`: each `None` when missing or empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Webhooks {
    /// Discord webhook.
    pub discord: Option<Secret>,
    /// Slack webhook.
    pub slack: Option<Secret>,
}

/// A checked `config.yaml`, every default filled in and every relative path resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// ssh user on servers and proxies.
    pub deploy_user: String,
    /// ssh private key (`None`: ssh's own defaults).
    pub ssh_identity: Option<PathBuf>,
    /// ssh port (`None`: ssh's default).
    pub ssh_port: Option<u16>,
    /// Extra `Key=Value` ssh options.
    pub ssh_options: Vec<String>,
    /// Remote commands through `sudo -n`.
    pub remote_sudo: bool,
    /// The staging checkout on the deploy host.
    pub staging_path: PathBuf,
    /// The deploy-wide live tree.
    pub prod_path: PathBuf,
    /// Host header of the canary request.
    pub canary_vhost: Option<String>,
    /// The human log (appended).
    pub log_file: PathBuf,
    /// Journal and lock.
    pub state_dir: PathBuf,
    /// Journals kept in `state_dir`.
    pub journal_keep: u32,
    /// Where each deploy writes its metrics (Prometheus text format), if anywhere.
    pub metrics_file: Option<PathBuf>,
    /// The HAProxy backends the servers are in.
    pub haproxy_backends: Vec<String>,
    /// The deploy-wide admin socket path.
    pub haproxy_socket: PathBuf,
    /// Staging's git commands run as this user (`None`: the current user).
    pub git_user: Option<String>,
    /// In place, or release directories.
    pub layout: Layout,
    /// Releases kept per server.
    pub keep_releases: u32,
    /// Folders kept once under `<prod_path>-shared` and linked into each release.
    pub shared_dirs: Vec<String>,
    /// rsync excludes.
    pub excludes: Vec<String>,
    /// rsync `--chown` value.
    pub chown: Option<String>,
    /// rsync `-z`.
    pub compress: bool,
    /// `canary:`.
    pub canary: CanaryConfig,
    /// `rollout:`.
    pub rollout: RolloutConfig,
    /// The global hooks.
    pub hooks: Hooks,
    /// The localisation cache rebuild (`None`: `null` in the config, so `--l10n` cannot run).
    pub l10n_command: Option<Vec<String>>,
    /// `mw_servers`, in config order.
    pub servers: Vec<ServerConfig>,
    /// `proxy_servers`, in config order.
    pub proxies: Vec<ProxyConfig>,
    /// `staging:`.
    pub staging: StagingConfig,
    /// `webhooks:`.
    pub webhooks: Webhooks,
    /// What is accepted but worth saying (`backup_path`, a release layout without
    /// `post_activate`, ...).
    pub warnings: Vec<Diagnostic>,
}

impl Config {
    /// Reads and checks the config at `file`.
    ///
    /// Refused: a file that cannot be read, one writable by group or others (it decides
    /// what runs as root on every server), bad YAML, unknown keys, wrong types, and every
    /// value the checks refuse. Nothing is written anywhere.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let whole = |message: String| ConfigError {
            file: file.clone(),
            diagnostics: vec![Diagnostic {
                file: file.clone(),
                at: None,
                message,
            }],
        };
        let meta = fs::metadata(&file).map_err(|e| {
            whole(format!(
                "cannot read the config: {e} (choose one with -C/--config-file or ${PATH_ENV})"
            ))
        })?;
        if !meta.is_file() {
            return Err(whole("not a regular file".to_string()));
        }
        check_permissions(&meta)
            .map_err(|m| whole(m.replace("{file}", &shell_word(&file.display().to_string()))))?;
        let bytes = fs::read(&file).map_err(|e| whole(format!("cannot read the config: {e}")))?;
        let text =
            String::from_utf8(bytes).map_err(|_| whole("the config is not UTF-8".to_string()))?;
        Config::parse(&text, &file)
    }

    /// Checks `text` as the config file `file` (relative paths are resolved against its
    /// folder). The file itself is not read.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        check::parse(text, file).map_err(|diagnostics| ConfigError {
            file: file.to_path_buf(),
            diagnostics,
        })
    }

    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name.as_str() == name)
    }

    /// Every server, in config order, as the engine sees it (a deploy uses
    /// a deploy's selection).
    pub fn servers(&self) -> Vec<Server> {
        self.servers.iter().map(ServerConfig::to_server).collect()
    }

    /// Staging as the engine sees it (the plan's `staging`).
    pub fn staging_server(&self) -> Server {
        self.staging.to_server()
    }

    /// How servers and proxies are reached.
    pub fn ssh_defaults(&self) -> SshDefaults {
        let mut d = SshDefaults::new(self.deploy_user.clone());
        d.identity = self.ssh_identity.clone();
        d.port = self.ssh_port;
        d.options = self.ssh_options.clone();
        d.sudo = self.remote_sudo;
        d
    }

    /// The canary's retries.
    pub fn canary_policy(&self) -> CanaryPolicy {
        let mut c = CanaryPolicy::default();
        c.timeout = self.canary.timeout;
        c.attempts = self.canary.attempts;
        c.retry_pause = self.canary.retry_pause;
        c
    }

    /// The error gate, if configured.
    pub fn error_gate_policy(&self) -> Option<ErrorGatePolicy> {
        self.canary
            .error_gate
            .as_ref()
            .map(|g| ErrorGatePolicy::new(g.window, g.on_unknown))
    }

    /// Step deadlines: the engine's defaults, with the config's `rollout.*_timeout` keys.
    pub fn step_timeouts(&self) -> StepTimeouts {
        let mut t = StepTimeouts::default();
        // drain_timeout bounds the wait for sessions, after which the adapter still puts
        // the server in maintenance: the step's deadline leaves room for that and the
        // proxies' confirmation, or a busy server would fail at exactly drain_timeout.
        t.depool = self.rollout.drain_timeout + DEPOOL_MARGIN;
        t.repool = self.rollout.repool_timeout + DEPOOL_MARGIN;
        t.copy = self.rollout.copy_timeout;
        t.activate = self.rollout.activate_timeout;
        t.hook = self.rollout.hook_timeout;
        t
    }

    /// The rollout policy this config describes (before any flag changes it).
    pub fn policy(&self) -> Policy {
        let r = &self.rollout;
        let mut p = Policy::default();
        p.parallel = r.parallel;
        p.max_unavailable = r.max_unavailable;
        p.stages = r.stages.clone();
        p.bake = r.bake;
        p.approve_stages = r.approve_stages;
        p.failure_budget = r.failure_budget;
        p.on_failure = r.on_failure;
        p.canary = self.canary_policy();
        p.error_gate = self.error_gate_policy();
        p.timeouts = self.step_timeouts();
        p.room_timeout = r.room_timeout;
        p
    }

    /// What is accepted but worth saying, each with its place in the file.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }
}

/// Refuses a file that group or others may write: `Err` holds the message, with
/// `{file}` where the file's name goes.
#[cfg(unix)]
fn check_permissions(meta: &fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(format!(
            "refused: the config is writable by {who} (mode {mode:04o}), and it decides what \
             runs as root on every server; make it writable by its owner only: chmod go-w {{file}}"
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_meta: &fs::Metadata) -> Result<(), String> {
    Ok(())
}

/// `s` quoted for a shell when it needs it (a path in a suggested command).
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests;
