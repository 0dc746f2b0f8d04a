//! What every proxy says about every server of the configured backends: the picture
//! behind `mwdeploy status`, and behind [`PoolControl::states`](mwdeploy_core::ports::PoolControl::states).

use mwdeploy_core::PoolState;
use serde::{Serialize, Serializer};

use crate::error::HaproxyError;
use crate::stat::{AdminState, OperationalState, Status};

/// The pool as every proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// One entry per configured proxy, in the configured order.
    pub proxies: Vec<ProxyStatus>,
}

/// One proxy's answer: its backends, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyStatus {
    /// The proxy's name.
    pub proxy: String,
    /// The configured backends, in the configured order (empty when `error` is set).
    pub backends: Vec<BackendStatus>,
    /// Why the proxy could not be read (unreachable, a missing backend, ...).
    #[serde(serialize_with = "error_text")]
    pub error: Option<HaproxyError>,
}

fn error_text<S: Serializer>(e: &Option<HaproxyError>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_some(&e.to_string()),
        None => s.serialize_none(),
    }
}

/// One backend on one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendStatus {
    /// The backend's name.
    pub backend: String,
    /// Its servers, in HAProxy's order.
    pub servers: Vec<ServerStatus>,
}

/// One server of one backend on one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerStatus {
    /// Its name in the backend.
    pub server: String,
    /// Its status in HAProxy's words (`UP`, `DOWN 1/3`, `MAINT`, `DRAIN`, `no check`).
    pub status: String,
    /// What the status means for the pool.
    pub state: PoolState,
    /// Its administrative state (`show servers state`), if HAProxy listed it there.
    pub admin: Option<AdminState>,
    /// Its operational state (`show servers state`), if HAProxy listed it there.
    pub operational: Option<OperationalState>,
    /// Its health check.
    pub check: CheckStatus,
    /// Current sessions (`scur`).
    pub sessions: u64,
    /// Requests queued for it (`qcur`).
    pub queued: u64,
}

/// A server's health check as HAProxy last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckStatus {
    /// Whether a check is configured and enabled.
    pub enabled: bool,
    /// `check_status` (`L7OK`, `L4CON`), when there is a result.
    pub status: Option<String>,
    /// The result in words (`Layer7 check passed`).
    pub description: Option<String>,
    /// `(health, rise, fall)`: how far it is from changing state.
    pub health: Option<(u32, u32, u32)>,
}

/// A server whose state differs between proxies (or that some proxy lacks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The backend.
    pub backend: String,
    /// The server.
    pub server: String,
    /// What each proxy that answered says (`None`: the proxy has no such server there).
    pub states: Vec<(String, Option<PoolState>)>,
}

/// How much a state serves: lower is less.
fn rank(s: PoolState) -> u8 {
    match s {
        PoolState::Maint => 0,
        PoolState::Down => 1,
        PoolState::Drain => 2,
        _ => 3,
    }
}

/// The least serving of two states: MAINT, then DOWN, then DRAIN, then UP.
///
/// ```
/// use mwdeploy_core::PoolState;
/// use mwdeploy_haproxy::status::least_serving;
/// assert_eq!(least_serving(PoolState::Up, PoolState::Drain), PoolState::Drain);
/// assert_eq!(least_serving(PoolState::Down, PoolState::Maint), PoolState::Maint);
/// ```
pub fn least_serving(a: PoolState, b: PoolState) -> PoolState {
    if rank(b) < rank(a) {
        b
    } else {
        a
    }
}

impl PoolStatus {
    /// The proxies that could not be read, with why.
    pub fn errors(&self) -> impl Iterator<Item = (&str, &HaproxyError)> {
        self.proxies
            .iter()
            .filter_map(|p| p.error.as_ref().map(|e| (p.proxy.as_str(), e)))
    }

    /// Every (proxy, backend, server) that answered.
    pub fn servers(&self) -> impl Iterator<Item = (&str, &str, &ServerStatus)> {
        self.proxies.iter().flat_map(|p| {
            p.backends.iter().flat_map(move |b| {
                b.servers
                    .iter()
                    .map(move |s| (p.proxy.as_str(), b.backend.as_str(), s))
            })
        })
    }

    /// A server's least serving state over every proxy and backend that answered;
    /// `None` if none lists it.
    pub fn state_of(&self, server: &str) -> Option<PoolState> {
        self.servers()
            .filter(|(_, _, s)| s.server == server)
            .map(|(_, _, s)| s.state)
            .reduce(least_serving)
    }

    /// Servers that are not UP somewhere, as `(proxy, backend, server)`.
    pub fn not_serving(&self) -> Vec<(&str, &str, &ServerStatus)> {
        self.servers()
            .filter(|(_, _, s)| !s.state.is_serving())
            .collect()
    }

    /// Servers whose state differs between the proxies that answered, or that some of
    /// them lack; in backend order, then in the order HAProxy lists the servers.
    pub fn drift(&self) -> Vec<Drift> {
        let answered: Vec<&ProxyStatus> =
            self.proxies.iter().filter(|p| p.error.is_none()).collect();
        let mut keys: Vec<(&str, &str)> = Vec::new();
        for p in &answered {
            for b in &p.backends {
                for s in &b.servers {
                    let key = (b.backend.as_str(), s.server.as_str());
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        let mut drift = Vec::new();
        for (backend, server) in keys {
            let states: Vec<(String, Option<PoolState>)> = answered
                .iter()
                .map(|p| {
                    let state = p
                        .backends
                        .iter()
                        .filter(|b| b.backend == backend)
                        .flat_map(|b| b.servers.iter())
                        .find(|s| s.server == server)
                        .map(|s| s.state);
                    (p.proxy.clone(), state)
                })
                .collect();
            if states.windows(2).any(|w| w[0].1 != w[1].1) {
                drift.push(Drift {
                    backend: backend.to_string(),
                    server: server.to_string(),
                    states,
                });
            }
        }
        drift
    }
}

impl ServerStatus {
    /// The status by its first word.
    pub fn status_word(&self) -> Status {
        Status::parse(&self.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, status: &str) -> ServerStatus {
        ServerStatus {
            server: name.to_string(),
            status: status.to_string(),
            state: Status::parse(status).pool_state(),
            admin: None,
            operational: None,
            check: CheckStatus {
                enabled: true,
                status: None,
                description: None,
                health: None,
            },
            sessions: 0,
            queued: 0,
        }
    }

    fn proxy(name: &str, backends: Vec<(&str, Vec<ServerStatus>)>) -> ProxyStatus {
        ProxyStatus {
            proxy: name.to_string(),
            backends: backends
                .into_iter()
                .map(|(b, servers)| BackendStatus {
                    backend: b.to_string(),
                    servers,
                })
                .collect(),
            error: None,
        }
    }

    #[test]
    fn drift_and_least_serving_state_across_proxies_and_backends() {
        let status = PoolStatus {
            proxies: vec![
                proxy(
                    "lb1",
                    vec![
                        ("mediawiki", vec![server("mw1", "UP"), server("mw2", "UP")]),
                        ("api", vec![server("mw1", "DRAIN")]),
                    ],
                ),
                proxy(
                    "lb2",
                    vec![
                        (
                            "mediawiki",
                            vec![server("mw1", "UP"), server("mw2", "MAINT")],
                        ),
                        ("api", vec![server("mw1", "DRAIN")]),
                    ],
                ),
                ProxyStatus {
                    proxy: "lb3".into(),
                    backends: vec![],
                    error: Some(HaproxyError::Config("unreachable".into())),
                },
            ],
        };
        assert_eq!(status.state_of("mw1"), Some(PoolState::Drain));
        assert_eq!(status.state_of("mw2"), Some(PoolState::Maint));
        assert_eq!(status.state_of("mw3"), None);
        let drift = status.drift();
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].server, "mw2");
        assert_eq!(
            drift[0].states,
            vec![
                ("lb1".to_string(), Some(PoolState::Up)),
                ("lb2".to_string(), Some(PoolState::Maint))
            ]
        );
        assert_eq!(status.errors().count(), 1);
        assert_eq!(status.not_serving().len(), 3);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json["proxies"][2]["error"],
            "haproxy configuration: unreachable"
        );
        assert_eq!(json["proxies"][0]["error"], serde_json::Value::Null);
        assert_eq!(
            json["proxies"][1]["backends"][0]["servers"][1]["state"],
            "MAINT"
        );
    }

    #[test]
    fn a_server_missing_on_one_proxy_is_drift() {
        let status = PoolStatus {
            proxies: vec![
                proxy("lb1", vec![("mediawiki", vec![server("mw1", "UP")])]),
                proxy("lb2", vec![("mediawiki", vec![])]),
            ],
        };
        let drift = status.drift();
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].states[1], ("lb2".to_string(), None));
    }
}
