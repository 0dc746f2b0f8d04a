//! Why a command could not do what was asked, and the exit code that says so.

use std::fmt;
use std::io;

use crate::exit;

/// An error that ends a command early.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Bad flags or a plan the engine refuses: nothing ran (exit 2).
    Usage(String),
    /// Writing the output failed, other than a closed pipe (exit 1).
    Output(io::Error),
}

impl CliError {
    /// The exit code for this error.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => exit::USAGE,
            CliError::Output(_) => exit::FAILED,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) => f.write_str(msg),
            CliError::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}

impl From<mwdeploy::BuildError> for CliError {
    fn from(e: mwdeploy::BuildError) -> Self {
        CliError::Usage(e.to_string())
    }
}
