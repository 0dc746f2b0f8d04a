//! What can go wrong between mwdeploy and HAProxy, with the proxy, path, host and
//! HAProxy's own words; and how each failure maps onto core's [`PortError`].

use std::time::Duration;

use mwdeploy_core::{NameError, PortError, PortErrorKind, ServerId};

/// Why HAProxy refused a command, from the words of its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// `No such server.`: the backend has no server of that name.
    NoSuchServer,
    /// `No such backend.` (also `No such proxy.`, `Can't find backend.`).
    NoSuchBackend,
    /// `Unknown command...`: this HAProxy does not know the command.
    UnknownCommand,
    /// `Permission denied`: the socket is not at level admin.
    PermissionDenied,
    /// Any other answer where an empty one (success) was expected.
    Other,
}

impl Refusal {
    /// A hint for the operator, appended to the error text.
    fn hint(self) -> &'static str {
        match self {
            Refusal::PermissionDenied => {
                " (the socket is not at level admin: add `level admin` to its `stats socket` line)"
            }
            Refusal::UnknownCommand => " (this HAProxy does not know the command)",
            _ => "",
        }
    }

    fn kind(self) -> PortErrorKind {
        match self {
            Refusal::PermissionDenied | Refusal::UnknownCommand => PortErrorKind::Misconfigured,
            _ => PortErrorKind::Permanent,
        }
    }
}

/// A failure of the HAProxy adapter.
///
/// Every variant that concerns one proxy names it (and its socket path and host where
/// they matter). Convert it into core's [`PortError`] with `PortError::from`: the
/// kind is chosen per variant and the proxy is set with [`PortError::on_proxy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HaproxyError {
    /// The admin socket does not exist at that path.
    #[error("proxy {proxy}: admin socket {path} does not exist on {host}")]
    SocketMissing {
        /// The proxy.
        proxy: String,
        /// Where the socket should be (`local`, or the ssh destination).
        host: String,
        /// The socket path.
        path: String,
    },
    /// Nothing listens on the socket (HAProxy is not running, or the path is not a socket).
    #[error(
        "proxy {proxy}: admin socket {path} on {host} refused the connection (is HAProxy running?)"
    )]
    ConnectionRefused {
        /// The proxy.
        proxy: String,
        /// Where (`local`, or the ssh destination).
        host: String,
        /// The socket path.
        path: String,
    },
    /// The deploy user may not open the socket.
    #[error("proxy {proxy}: no permission to open admin socket {path} on {host}")]
    SocketPermission {
        /// The proxy.
        proxy: String,
        /// Where (`local`, or the ssh destination).
        host: String,
        /// The socket path.
        path: String,
    },
    /// Any other failure of the socket: reading, writing, a reply too large.
    #[error("proxy {proxy}: admin socket {path} on {host}: {detail}")]
    SocketIo {
        /// The proxy.
        proxy: String,
        /// Where (`local`, or the ssh destination).
        host: String,
        /// The socket path.
        path: String,
        /// What the system said.
        detail: String,
    },
    /// The proxy's host could not be reached (ssh failed).
    #[error("proxy {proxy}: cannot reach {host}: {detail}")]
    Unreachable {
        /// The proxy.
        proxy: String,
        /// The ssh destination.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// `socat`, which carries commands to a remote socket, could not run there.
    #[error("proxy {proxy}: cannot run socat on {host}: {detail}")]
    Socat {
        /// The proxy.
        proxy: String,
        /// Where.
        host: String,
        /// What was said.
        detail: String,
    },
    /// No complete answer came in time.
    #[error("proxy {proxy}: `{command}` got no complete answer within {timeout:?}")]
    NoAnswer {
        /// The proxy.
        proxy: String,
        /// The command sent.
        command: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// HAProxy answered something other than the expected (empty) reply.
    #[error("proxy {proxy}: `{command}` failed: HAProxy said {reply:?}{}", reason.hint())]
    Refused {
        /// The proxy.
        proxy: String,
        /// The command sent.
        command: String,
        /// What HAProxy answered (trimmed).
        reply: String,
        /// The reply, classified.
        reason: Refusal,
    },
    /// An answer that could not be understood (`show stat` without its header, ...).
    #[error("proxy {proxy}: cannot read the answer to `{command}`: {detail}")]
    BadAnswer {
        /// The proxy.
        proxy: String,
        /// The command sent.
        command: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A configured backend does not exist on the proxy.
    #[error("proxy {proxy}: no backend {backend}")]
    NoSuchBackend {
        /// The proxy.
        proxy: String,
        /// The backend.
        backend: String,
    },
    /// The server is in none of the configured backends of the proxy.
    #[error("proxy {proxy}: no server {server} in backend {}", backends.join(" or "))]
    NoSuchServer {
        /// The proxy.
        proxy: String,
        /// The server's name in the backends.
        server: String,
        /// The backends looked in.
        backends: Vec<String>,
    },
    /// A repool: HAProxy did not confirm the server serving within `repool_timeout`
    /// (it is down, or its health check has not passed since it left maintenance). It
    /// was put back in maintenance on that proxy, unless `kept_out` is false (why is said
    /// through the progress handle).
    #[error("proxy {}: {} not confirmed serving {:?} after leaving maintenance: {}", .0.proxy, .0.server, .0.waited, .0.state())]
    NotServing(Unserved),
    /// A repool: HAProxy's own checks failed the server, as many times in a row as its
    /// `rise` (from the health a server leaving maintenance starts with down to none), before
    /// one passed: it is down, with no wait for `repool_timeout`. It was put back in
    /// maintenance on that proxy, unless `kept_out` is false.
    #[error("proxy {}: {} failed HAProxy's health check after leaving maintenance ({:?}): {}", .0.proxy, .0.server, .0.waited, .0.state())]
    CheckFailed(Unserved),
    /// A command was accepted but the server's state did not follow.
    #[error("proxy {proxy}: {server} is {status:?} after `{command}`")]
    NotConfirmed {
        /// The proxy.
        proxy: String,
        /// The server as HAProxy addresses it: `backend/server`.
        server: String,
        /// The command that should have changed it.
        command: String,
        /// Its status in HAProxy's words.
        status: String,
    },
    /// A depool failed on one proxy; what had been changed was put back.
    #[error("{failed}; {}", rollback_text(put_back, not_put_back))]
    DepoolRolledBack {
        /// The failure that stopped the depool.
        failed: Box<HaproxyError>,
        /// `proxy/backend` pairs where the server was made ready again.
        put_back: Vec<String>,
        /// Where putting it back failed, with why.
        not_put_back: Vec<String>,
    },
    /// The server says `pooled: false`: it is never sent to HAProxy.
    #[error(
        "server {server} is not behind the balancer (pooled: false); it is never sent to HAProxy"
    )]
    NotPooled {
        /// The server.
        server: ServerId,
    },
    /// A backend, proxy or server name that may not reach the line protocol.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// A socket path that may not reach the line protocol or socat.
    #[error("admin socket path {path:?} {why}")]
    BadSocketPath {
        /// The path, as given.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A command line that may not reach HAProxy (it would be read as several).
    #[error("command {command:?} may not be sent to HAProxy: {why}")]
    BadCommand {
        /// The command, as given.
        command: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The configuration cannot work (no proxy, no backend, a proxy named twice).
    #[error("haproxy configuration: {0}")]
    Config(String),
}

/// A server a repool left out of the pool on one proxy ([`HaproxyError::NotServing`],
/// [`HaproxyError::CheckFailed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unserved {
    /// The proxy.
    pub proxy: String,
    /// The server as HAProxy addresses it: `backend/server`.
    pub server: String,
    /// Its status in HAProxy's words (`DOWN`, `DOWN 1/3`, `DRAIN`).
    pub status: String,
    /// Its last health check (`L7STS Layer7 wrong status`).
    pub check: String,
    /// How long after leaving maintenance.
    pub waited: Duration,
    /// Whether it was put back in maintenance on that proxy.
    pub kept_out: bool,
}

impl Unserved {
    /// Status, check and whether it was put back in maintenance, for messages.
    fn state(&self) -> String {
        format!(
            "status {:?}, check {}; {}",
            self.status,
            self.check,
            if self.kept_out {
                "put back in maintenance"
            } else {
                "NOT put back in maintenance"
            }
        )
    }
}

fn rollback_text(put_back: &[String], not_put_back: &[String]) -> String {
    let mut s = String::new();
    if put_back.is_empty() && not_put_back.is_empty() {
        s.push_str("nothing had been changed");
    }
    if !put_back.is_empty() {
        s.push_str("made ready again on ");
        s.push_str(&put_back.join(", "));
    }
    if !not_put_back.is_empty() {
        if !s.is_empty() {
            s.push_str("; ");
        }
        s.push_str("NOT put back: ");
        s.push_str(&not_put_back.join("; "));
    }
    s
}

impl HaproxyError {
    /// The proxy this failure concerns, if one.
    pub fn proxy(&self) -> Option<&str> {
        use HaproxyError::*;
        match self {
            SocketMissing { proxy, .. }
            | ConnectionRefused { proxy, .. }
            | SocketPermission { proxy, .. }
            | SocketIo { proxy, .. }
            | Unreachable { proxy, .. }
            | Socat { proxy, .. }
            | NoAnswer { proxy, .. }
            | Refused { proxy, .. }
            | BadAnswer { proxy, .. }
            | NoSuchBackend { proxy, .. }
            | NoSuchServer { proxy, .. }
            | NotConfirmed { proxy, .. } => Some(proxy),
            NotServing(u) | CheckFailed(u) => Some(&u.proxy),
            DepoolRolledBack { failed, .. } => failed.proxy(),
            NotPooled { .. }
            | BadName(_)
            | BadSocketPath { .. }
            | BadCommand { .. }
            | Config(_) => None,
        }
    }

    /// Whether this proxy left the server out of its pool after a repool: its check
    /// failed, or it did not serve the server in time. The server is then broken
    /// whatever the other proxies saw.
    pub fn rejects_server(&self) -> bool {
        matches!(
            self,
            HaproxyError::NotServing(_) | HaproxyError::CheckFailed(_)
        )
    }

    /// What kind of failure this is for the engine.
    pub fn kind(&self) -> PortErrorKind {
        use HaproxyError::*;
        match self {
            ConnectionRefused { .. } | SocketIo { .. } | Unreachable { .. } => {
                PortErrorKind::Transient
            }
            NoAnswer { .. } | NotServing(_) => PortErrorKind::Timeout,
            Refused { reason, .. } => reason.kind(),
            BadAnswer { .. } | NoSuchServer { .. } | NotConfirmed { .. } | CheckFailed(_) => {
                PortErrorKind::Permanent
            }
            SocketMissing { .. }
            | SocketPermission { .. }
            | Socat { .. }
            | NoSuchBackend { .. }
            | NotPooled { .. }
            | BadName(_)
            | BadSocketPath { .. }
            | BadCommand { .. }
            | Config(_) => PortErrorKind::Misconfigured,
            DepoolRolledBack { failed, .. } => failed.kind(),
        }
    }

    /// The same error as core's [`PortError`] about `server`.
    pub fn into_port_error(self, server: &ServerId) -> PortError {
        PortError::from(self).for_server(server)
    }
}

impl From<HaproxyError> for PortError {
    fn from(e: HaproxyError) -> PortError {
        let kind = e.kind();
        let text = e.to_string();
        match e.proxy() {
            Some(proxy) => {
                // PortError names the proxy itself; keep it once in the rendered text.
                let prefix = format!("proxy {proxy}: ");
                let detail = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
                PortError::new(kind, detail).on_proxy(proxy)
            }
            None => PortError::new(kind, text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_errors_keep_the_proxy_once_and_the_right_kind() {
        let e = HaproxyError::Refused {
            proxy: "lb1".into(),
            command: "set server mediawiki/mw9 state drain".into(),
            reply: "No such server.".into(),
            reason: Refusal::NoSuchServer,
        };
        let p = PortError::from(e);
        assert_eq!(p.kind, PortErrorKind::Permanent);
        assert_eq!(p.proxy.as_deref(), Some("lb1"));
        let text = p.to_string();
        assert_eq!(text.matches("lb1").count(), 1, "{text}");
        assert!(text.contains("No such server."), "{text}");
        assert!(
            text.contains("set server mediawiki/mw9 state drain"),
            "{text}"
        );

        let denied = HaproxyError::Refused {
            proxy: "lb1".into(),
            command: "set server b/s state drain".into(),
            reply: "Permission denied".into(),
            reason: Refusal::PermissionDenied,
        };
        assert_eq!(denied.kind(), PortErrorKind::Misconfigured);
        assert!(denied.to_string().contains("level admin"));
    }

    #[test]
    fn a_repool_not_served_says_the_check_and_whether_it_was_kept_out() {
        let not_serving = |kept_out| {
            HaproxyError::NotServing(Unserved {
                proxy: "lb1".into(),
                server: "mediawiki/mw1".into(),
                status: "DOWN".into(),
                check: "L7STS Layer7 wrong status".into(),
                waited: Duration::from_secs(3),
                kept_out,
            })
        };
        let e = not_serving(true);
        assert_eq!(e.kind(), PortErrorKind::Timeout);
        assert!(e.rejects_server());
        assert_eq!(e.proxy(), Some("lb1"));
        let text = e.to_string();
        for part in [
            "mediawiki/mw1",
            "\"DOWN\"",
            "L7STS Layer7 wrong status",
            "after leaving maintenance",
            "; put back in maintenance",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let text = not_serving(false).to_string();
        assert!(text.ends_with("NOT put back in maintenance"), "{text}");

        // Taken down by HAProxy's checks before the bound: a failure, not a timeout.
        let failed = HaproxyError::CheckFailed(Unserved {
            proxy: "lb2".into(),
            server: "mediawiki/mw1".into(),
            status: "DOWN".into(),
            check: "L7STS Layer7 wrong status".into(),
            waited: Duration::from_millis(600),
            kept_out: true,
        });
        assert_eq!(failed.kind(), PortErrorKind::Permanent);
        assert!(
            failed.rejects_server(),
            "another proxy must take it out too"
        );
        assert_eq!(failed.proxy(), Some("lb2"));
        let text = failed.to_string();
        for part in [
            "mediawiki/mw1 failed HAProxy's health check after leaving maintenance",
            "\"DOWN\"",
            "L7STS Layer7 wrong status",
            "; put back in maintenance",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }

    #[test]
    fn a_rolled_back_depool_names_the_failed_proxy_and_what_was_put_back() {
        let e = HaproxyError::DepoolRolledBack {
            failed: Box::new(HaproxyError::ConnectionRefused {
                proxy: "lb2".into(),
                host: "local".into(),
                path: "/run/haproxy/admin.sock".into(),
            }),
            put_back: vec!["lb1/mediawiki".into()],
            not_put_back: vec![],
        };
        assert_eq!(e.proxy(), Some("lb2"));
        assert_eq!(e.kind(), PortErrorKind::Transient);
        let p = PortError::from(e);
        assert_eq!(p.proxy.as_deref(), Some("lb2"));
        assert!(
            p.detail.contains("made ready again on lb1/mediawiki"),
            "{p}"
        );
        assert!(p.detail.contains("/run/haproxy/admin.sock"), "{p}");
    }
}
