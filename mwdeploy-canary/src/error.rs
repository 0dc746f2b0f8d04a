//! What can be wrong with a canary's configuration.

/// A canary setting that cannot work. Found when the check is built, before any deploy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL that is not `http://` or `https://`, or that could split an argument.
    #[error("canary url {url:?} {why}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No URL at all.
    #[error("canary has no url")]
    NoUrl,
    /// A Host header value that is not a host name.
    #[error("canary_vhost {0:?} is not a host name")]
    Host(String),
    /// An error-gate log path that is not absolute or holds a newline.
    #[error("error_gate.log_file {0:?} must be an absolute path without newlines")]
    LogPath(String),
    /// An error-gate pattern that does not compile.
    #[error("error_gate.pattern {pattern:?} is not a valid regular expression: {why}")]
    Pattern {
        /// The pattern given.
        pattern: String,
        /// What the parser said.
        why: String,
    },
    /// A threshold of 0 would fail every server.
    #[error("error_gate.threshold must be at least 1")]
    Threshold,
    /// An empty command check.
    #[error("canary_command is empty")]
    EmptyCommand,
}
