//! The errors of the embedding API: each says what was wrong and keeps the file, key,
//! server or proxy it concerns.

use std::path::PathBuf;

use mwdeploy_core::text::count;
use mwdeploy_core::PlanError;
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
