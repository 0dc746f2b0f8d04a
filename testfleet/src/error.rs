//! The one error type of the crate.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while starting, driving or tearing down a fleet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Programs the fleet runs are not installed.
    #[error(
        "testfleet needs programs that are not installed: {}; install them with scripts/install-deps.sh (as root)",
        missing.join(", ")
    )]
    MissingPrograms {
        /// Each missing program with the Debian package that provides it.
        missing: Vec<String>,
    },
    /// A file system or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A helper command (git, ssh-keygen, chattr, a signal) failed.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// The command line, for the reader.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (trimmed).
        output: String,
    },
    /// A part of the fleet did not come up (or go down) in time.
    #[error("{what} not ready after {waited:?}; {} ends with:\n{tail}", log.display())]
    NotReady {
        /// The part and what was awaited.
        what: String,
        /// How long it was given.
        waited: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// A daemon exited while the fleet expected it to run.
    #[error("{what} exited ({status}); {} ends with:\n{tail}", log.display())]
    Exited {
        /// The part that exited.
        what: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// A request or an answer that the fleet could not use (bad argument, bad reply).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Adds the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|e| Error::io(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_the_install_script() {
        let e = Error::MissingPrograms {
            missing: vec![
                "haproxy (package haproxy)".into(),
                "sshd (package openssh-server)".into(),
            ],
        };
        let text = e.to_string();
        assert!(text.contains("scripts/install-deps.sh"), "{text}");
        assert!(text.contains("haproxy (package haproxy), sshd (package openssh-server)"));
    }
}
