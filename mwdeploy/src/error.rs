//! The errors of the embedding API: each says what was wrong and keeps the file, key,
//! server or proxy it concerns.

use std::path::PathBuf;

use mwdeploy_core::text::count;

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
