//! What can go wrong with a post.

/// Why a post failed. Its text may quote the webhook's URL (curl's messages name the
/// host): [`Webhooks`](crate::Webhooks) scrubs it before it reaches a journal or screen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostError {
    /// curl could not send it (name resolution, connection, TLS, timeout).
    #[error("curl exited with status {status}: {detail}")]
    Curl {
        /// curl's exit status (6: cannot resolve, 7: cannot connect, 28: timeout).
        status: i32,
        /// curl's last error line.
        detail: String,
    },
    /// curl was killed by a signal.
    #[error("curl was killed: {detail}")]
    Killed {
        /// curl's last error line.
        detail: String,
    },
    /// The service answered with this HTTP status (not 2xx, not 429).
    #[error("HTTP {0}")]
    Http(u16),
    /// The service answered 429: too many posts.
    #[error("HTTP 429 (rate limited)")]
    RateLimited,
    /// No HTTP status came back.
    #[error("no HTTP status")]
    NoStatus,
    /// curl could not be run, or another [`Post`](crate::Post) failed its own way.
    #[error("{0}")]
    Run(String),
    /// It failed again after its one retry.
    #[error("{0} (retried)")]
    Retried(Box<PostError>),
}
