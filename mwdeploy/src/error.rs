//! The errors of the embedding API: each says what was wrong and keeps the file, key,
//! server or proxy it concerns.

use std::path::PathBuf;

use mwdeploy_core::text::count;
use mwdeploy_core::{PlanError, ServerId};
use mwdeploy_rsync::RsyncError;
use mwdeploy_runtime::journal::JournalError;
use mwdeploy_runtime::lock::{Holder, LockError};

use crate::config::Diagnostic;

/// `config.yaml` was refused: every problem found, each with its key and place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} in {}", count(diagnostics.len(), "config error"), file.display())]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// Every error, in file order (`file:line:column: key: message`).
    pub diagnostics: Vec<Diagnostic>,
}

/// The deploy lock could not be taken: someone holds it (named), or it failed.
#[derive(Debug, thiserror::Error)]
#[error("{}", match .0 {
    LockError::Held { .. } => format!("refused: the deploy lock {}", .0),
    _ => format!("cannot take the deploy lock: {}", .0),
})]
pub struct LockRefused(#[source] pub LockError);

impl LockRefused {
    /// Who holds it, when someone does and their record could be read.
    pub fn holder(&self) -> Option<&Holder> {
        match &self.0 {
            LockError::Held { holder, .. } => holder.as_deref(),
            _ => None,
        }
    }
}

impl From<LockError> for LockRefused {
    fn from(e: LockError) -> Self {
        LockRefused(e)
    }
}

/// A run's journal could not be opened, or its plan was refused by the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The journal (in `state_dir/deploys/`) cannot be created: nothing was run.
    #[error("cannot open the journal: {0}")]
    Journal(#[source] JournalError),
    /// The engine refused the plan.
    #[error("invalid rollout plan: {0}")]
    Plan(#[source] PlanError),
}

/// A port could not be built from the config. Each names the key, server or proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `shared_dirs` holds a path the transfer refuses.
    #[error("shared_dirs: {0}")]
    SharedDirs(#[source] mwdeploy_core::NameError),
    /// A server's `releases_dir` is not `<prod_path>-releases`.
    #[error(
        "server {server}: a releases_dir other than <prod_path>-releases is not supported by this version's runner yet"
    )]
    ReleasesDir {
        /// The server.
        server: ServerId,
    },
    /// The transfer's settings are refused.
    #[error("rsync: {0}")]
    Rsync(#[source] RsyncError),
    /// A hook list is refused.
    #[error("hooks: {0}")]
    Hooks(#[source] RsyncError),
    /// The canary's settings are refused.
    #[error("canary: {0}")]
    Canary(#[source] mwdeploy_canary::ConfigError),
    /// A proxy's admin socket cannot be reached as configured.
    #[error("proxy {proxy}: {detail}")]
    Proxy {
        /// The proxy.
        proxy: String,
        /// What is wrong.
        detail: String,
    },
    /// The pool's settings are refused.
    #[error("haproxy: {0}")]
    Haproxy(#[source] Box<mwdeploy_haproxy::HaproxyError>),
    /// The servers or options asked for are refused.
    #[error("{0}")]
    Request(String),
    /// ssh cannot be prepared (its private control directory).
    #[error("cannot prepare ssh: {0}")]
    Ssh(#[source] std::io::Error),
}

/// A deploy (or rollback, recovery, pool change) refused before it touched a production
/// server. What went wrong once the machine ran is in its report, not here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The config cannot be run as it is (a port it describes cannot be built).
    #[error(transparent)]
    Invalid(#[from] BuildError),
    /// The deploy lock is held (by whom is in it), or cannot be taken.
    #[error(transparent)]
    Lock(#[from] LockRefused),
    /// A proxy could not be read: every proxy must confirm each pool change. Each
    /// proxy's error.
    #[error(
        "a proxy is unreachable: nothing was touched; every proxy must confirm each pool change"
    )]
    Unreachable(Vec<String>),
    /// The run's journal cannot be opened, or the engine refused the plan.
    #[error("cannot start: {0}")]
    Session(#[from] SessionError),
    /// A step of staging failed (pull, patch, sync, l10n, hooks).
    #[error("staging: {0}; no production server was touched")]
    Staging(#[source] mwdeploy_mediawiki::Stopped),
    /// Interrupted (SIGINT, SIGTERM) during staging's steps.
    #[error("interrupted before any production server was touched")]
    Interrupted,
}

impl DeployError {
    /// Whether it is a refusal of a run that could be tried again as it is (lock held,
    /// proxy unreachable, staging), rather than a config to change.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, DeployError::Invalid(_) | DeployError::Interrupted)
    }
}
