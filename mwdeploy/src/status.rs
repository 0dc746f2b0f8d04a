//! The fleet's status (`mwdeploy status`): every pooled server on every proxy and backend, in
//! HAProxy's own words, and (release layout) the release each one serves.
//!
//! ```text
//!  config ──> pooled servers (their names in the backends)
//!         ├─> HaproxyPool::status   (every proxy, at once)  ─┐
//!         └─> RsyncTransfer::releases (every server, at once) ┴─> Assessment ──> plain | JSON
//! ```
//!
//! OK ([`Assessment::is_ok`]) when every pooled server is UP on every proxy and backend;
//! not when one is not (DOWN, MAINT, DRAIN, missing from a backend) or a proxy could not
//! be read. Servers
//! in the backends that the config does not pool are noted, and change nothing.

use std::sync::Arc;

use mwdeploy_core::{Layout, PoolState, Server};
use mwdeploy_exec::Hosts;
use mwdeploy_haproxy::{Drift, PoolStatus, ServerStatus};
use mwdeploy_rsync::ServerReleases;
use serde_json::{json, Map, Value};

use mwdeploy_core::text::{count, Clean};

use crate::config::Config;
use crate::error::BuildError;
use crate::ports::haproxy;
use crate::releases::unprefixed;
use crate::session::Warn;
use crate::table::Table;

/// Runs `mwdeploy status`; returns the exit code.
/// The fleet as read now: every proxy's view of the pooled servers, and (release
/// layout) the release each server serves.
#[derive(Debug)]
pub struct FleetStatus {
    /// The config's pooled servers.
    pub pooled: Vec<Pooled>,
    /// Every proxy's answer (none when the config lists no proxy).
    pub pool: PoolStatus,
    /// Every server's release, by name (release layout, when they could be read).
    pub releases: Option<Vec<(String, Release)>>,
}

impl FleetStatus {
    /// The read, judged.
    pub fn assess(&self) -> Assessment<'_> {
        Assessment::new(&self.pooled, &self.pool, self.releases.clone())
    }
}

/// Reads every proxy and (release layout) every server's releases, all at once. A
/// releases read that fails is a warning, and the pool is still shown.
pub async fn read(config: &Config, warn: &Warn) -> Result<FleetStatus, BuildError> {
    let pooled: Vec<Pooled> = config
        .servers
        .iter()
        .filter(|s| s.pooled)
        .map(|s| Pooled {
            name: s.name.to_string(),
            haproxy: s.haproxy_server.as_ref().unwrap_or(&s.name).to_string(),
        })
        .collect();
    // Every server's release, pooled or not (a job runner on another release is drift too).
    let servers: Vec<Server> = config.servers.iter().map(|s| s.to_server()).collect();
    let hosts = Arc::new(Hosts::new(config.ssh_defaults()).map_err(BuildError::Ssh)?);
    let pool = if config.proxies.is_empty() {
        None
    } else {
        Some(haproxy(config, &hosts)?)
    };
    let releases = config.layout == Layout::Releases;
    let status = async {
        match &pool {
            Some(p) => Some(p.status().await),
            None => None,
        }
    };
    let read = async {
        if releases && !servers.is_empty() {
            Some(crate::releases::read_all(config, hosts.clone(), &servers, warn).await)
        } else {
            None
        }
    };
    let (status, read) = tokio::join!(status, read);
    hosts.close().await;
    let releases: Option<Vec<(String, Release)>> = match read {
        None => None,
        Some(Ok(read)) => Some(
            servers
                .iter()
                .zip(&read)
                .map(|(s, r)| (s.id.to_string(), Release::of(s, r)))
                .collect(),
        ),
        Some(Err(e)) => {
            warn(&format!("warning: the releases cannot be read: {e}"));
            None
        }
    };
    // No proxy: no pool to judge, and nothing out of it.
    let pool = status.unwrap_or(PoolStatus {
        proxies: Vec::new(),
    });
    Ok(FleetStatus {
        pooled,
        pool,
        releases,
    })
}

/// A pooled server of the config.
#[derive(Debug, Clone)]
pub struct Pooled {
    /// Its name in the config.
    pub name: String,
    /// Its name in the backends.
    pub haproxy: String,
}

/// What a server serves, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// This release is live.
    Live(String),
    /// The live path is not a release (described).
    Other(String),
    /// The server could not be read.
    Unreadable(String),
}

impl Release {
    fn of(server: &Server, r: &Result<ServerReleases, String>) -> Release {
        match r {
            Ok(r) => match r.live_release() {
                Some(id) => Release::Live(id.to_string()),
                None => Release::Other(crate::releases::live_text(r)),
            },
            Err(e) => {
                Release::Unreadable(unprefixed(e, &format!("server {}", server.id)).to_string())
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Release::Live(id) => id.clone(),
            Release::Other(t) => t.clone(),
            Release::Unreadable(e) => format!("cannot be read: {}", Clean(e)),
        }
    }
}

/// One proxy and backend's view of a server; `status: None` when it is not there.
#[derive(Debug)]
pub struct Cell<'a> {
    proxy: &'a str,
    backend: &'a str,
    status: Option<&'a ServerStatus>,
}

impl Cell<'_> {
    fn is_up(&self) -> bool {
        self.status.is_some_and(|s| s.state == PoolState::Up)
    }

    /// `MAINT on lb1/mediawiki`.
    fn where_text(&self) -> String {
        let what = match self.status {
            Some(s) => Clean(&s.status).to_string(),
            None => "missing".to_string(),
        };
        format!("{what} on {}/{}", self.proxy, self.backend)
    }
}

/// A pooled server on every proxy and backend that answered.
#[derive(Debug)]
pub struct ServerView<'a> {
    pooled: &'a Pooled,
    cells: Vec<Cell<'a>>,
    release: Option<Release>,
}

impl ServerView<'_> {
    fn is_up(&self) -> bool {
        !self.cells.is_empty() && self.cells.iter().all(Cell::is_up)
    }
}

/// The pool read, judged: what `status` prints and its exit code.
#[derive(Debug)]
pub struct Assessment<'a> {
    servers: Vec<ServerView<'a>>,
    /// Proxies that could not be read, with why.
    unreachable: Vec<(&'a str, String)>,
    /// Pooled servers whose state differs between proxies.
    drift: Vec<Drift>,
    /// Servers in the backends that the config does not pool: (proxy, backend, name).
    others: Vec<(&'a str, &'a str, &'a str)>,
    /// Every server's release (release layout), in config order.
    releases: Option<Vec<(String, Release)>>,
    /// The config lists no proxy: there is no pool.
    no_proxies: bool,
}

impl<'a> Assessment<'a> {
    /// Judges `status` for the `pooled` servers; `releases` (release layout) are every
    /// server's, by name.
    pub fn new(
        pooled: &'a [Pooled],
        status: &'a PoolStatus,
        releases: Option<Vec<(String, Release)>>,
    ) -> Self {
        let release_of = |name: &str| {
            releases
                .as_ref()
                .and_then(|r| r.iter().find(|(n, _)| n == name))
                .map(|(_, r)| r.clone())
        };
        let servers = pooled
            .iter()
            .map(|p| {
                let mut cells = Vec::new();
                for proxy in status.proxies.iter().filter(|x| x.error.is_none()) {
                    for b in &proxy.backends {
                        cells.push(Cell {
                            proxy: &proxy.proxy,
                            backend: &b.backend,
                            status: b.servers.iter().find(|s| s.server == p.haproxy),
                        });
                    }
                }
                ServerView {
                    pooled: p,
                    cells,
                    release: release_of(&p.name),
                }
            })
            .collect();
        let unreachable = status
            .errors()
            .map(|(proxy, e)| (proxy, e.to_string()))
            .collect();
        let drift = status
            .drift()
            .into_iter()
            .filter(|d| pooled.iter().any(|p| p.haproxy == d.server))
            .collect();
        let others = status
            .servers()
            .filter(|(_, _, s)| !pooled.iter().any(|p| p.haproxy == s.server))
            .map(|(proxy, backend, s)| (proxy, backend, s.server.as_str()))
            .collect();
        Assessment {
            servers,
            unreachable,
            drift,
            others,
            releases,
            no_proxies: status.proxies.is_empty(),
        }
    }

    /// Every pooled server UP everywhere, and every proxy read.
    pub fn is_ok(&self) -> bool {
        self.no_proxies || self.unreachable.is_empty() && self.servers.iter().all(ServerView::is_up)
    }

    /// Distinct live releases, each with its servers, when there is more than one.
    fn release_drift(&self) -> Vec<(String, Vec<&str>)> {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for (name, release) in self.releases.iter().flatten() {
            if let Release::Live(id) = release {
                match groups.iter_mut().find(|(g, _)| g == id) {
                    Some((_, names)) => names.push(name),
                    None => groups.push((id.clone(), vec![name])),
                }
            }
        }
        if groups.len() > 1 {
            groups
        } else {
            Vec::new()
        }
    }

    /// The plain report.
    pub fn plain(&self, status: &PoolStatus) -> String {
        let mut text = String::new();
        if self.no_proxies {
            text.push_str("pool: none: the config lists no proxy_servers\n");
            self.plain_releases(&mut text);
            return text;
        }
        let proxies: Vec<&str> = status.proxies.iter().map(|p| p.proxy.as_str()).collect();
        text.push_str(&format!(
            "pool: {} on {} ({})\n",
            count(self.servers.len(), "pooled server"),
            count(proxies.len(), "proxy").replace("proxys", "proxies"),
            proxies.join(", ")
        ));
        let mut t = Table::new(&[
            "SERVER",
            "PROXY",
            "BACKEND",
            "STATUS",
            "ADMIN",
            "OPERATIONAL",
            "SESSIONS",
            "QUEUED",
            "CHECK",
        ]);
        for s in &self.servers {
            for c in &s.cells {
                let mut row = vec![
                    s.pooled.name.clone(),
                    c.proxy.to_string(),
                    c.backend.to_string(),
                ];
                match c.status {
                    Some(st) => row.extend([
                        Clean(&st.status).to_string(),
                        st.admin.map(|a| a.to_string()).unwrap_or("-".into()),
                        st.operational.map(|o| o.to_string()).unwrap_or("-".into()),
                        st.sessions.to_string(),
                        st.queued.to_string(),
                        check_text(st),
                    ]),
                    None => row.push(format!(
                        "missing: {} is not a server of this backend",
                        s.pooled.haproxy
                    )),
                }
                t.row(row);
            }
        }
        text.push_str(&t.render("  "));
        for (proxy, e) in &self.unreachable {
            let e = unprefixed(e, &format!("proxy {proxy}"));
            text.push_str(&format!("proxy {proxy}: cannot be read: {}\n", Clean(e)));
        }
        for d in &self.drift {
            let states: Vec<String> = d
                .states
                .iter()
                .map(|(proxy, st)| match st {
                    Some(st) => format!("{st} on {proxy}"),
                    None => format!("missing on {proxy}"),
                })
                .collect();
            text.push_str(&format!(
                "drift between proxies: {} in {}: {}\n",
                d.server,
                d.backend,
                states.join(", ")
            ));
        }
        self.plain_releases(&mut text);
        if !self.others.is_empty() {
            let mut names: Vec<&str> = self.others.iter().map(|(_, _, s)| *s).collect();
            names.dedup();
            text.push_str(&format!(
                "also in the backends, not pooled servers of the config: {}\n",
                names.join(", ")
            ));
        }
        let down: Vec<String> = self
            .servers
            .iter()
            .filter(|s| !s.is_up())
            .map(|s| {
                let wh: Vec<String> = s
                    .cells
                    .iter()
                    .filter(|c| !c.is_up())
                    .map(Cell::where_text)
                    .collect();
                if wh.is_empty() {
                    format!("{} (no proxy answered)", s.pooled.name)
                } else {
                    format!("{} ({})", s.pooled.name, wh.join(", "))
                }
            })
            .collect();
        let up = self.servers.len() - down.len();
        text.push_str(&format!(
            "{up} of {} UP on every proxy and backend{}",
            count(self.servers.len(), "pooled server"),
            if self.unreachable.is_empty() {
                ""
            } else {
                " that answered"
            }
        ));
        if !down.is_empty() {
            text.push_str(&format!("; not UP: {}", down.join("; ")));
        }
        if !self.unreachable.is_empty() {
            let names: Vec<&str> = self.unreachable.iter().map(|(p, _)| *p).collect();
            text.push_str(&format!("; not read: {}", names.join(", ")));
        }
        text.push('\n');
        text
    }

    /// The release layout's part: every server's release, and drift between them.
    fn plain_releases(&self, text: &mut String) {
        let Some(releases) = &self.releases else {
            return;
        };
        let mut r = Table::new(&["SERVER", "RELEASE"]);
        for (name, release) in releases {
            r.row(vec![name.clone(), release.text()]);
        }
        text.push_str("releases:\n");
        text.push_str(&r.render("  "));
        let drift: Vec<String> = self
            .release_drift()
            .into_iter()
            .map(|(id, names)| format!("{id} on {}", names.join(", ")))
            .collect();
        if !drift.is_empty() {
            text.push_str(&format!(
                "release drift between servers: {}\n",
                drift.join("; ")
            ));
        }
    }

    /// The report as one JSON object.
    pub fn json(&self, status: &PoolStatus) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|s| {
                let pool: Vec<Value> = s
                    .cells
                    .iter()
                    .map(|c| {
                        let mut m = match c.status.map(serde_json::to_value) {
                            Some(Ok(Value::Object(m))) => m,
                            _ => {
                                let mut m = Map::new();
                                m.insert("missing".into(), Value::Bool(true));
                                m
                            }
                        };
                        m.insert("proxy".into(), c.proxy.into());
                        m.insert("backend".into(), c.backend.into());
                        m.remove("server");
                        Value::Object(m)
                    })
                    .collect();
                let mut v = json!({
                    "server": s.pooled.name,
                    "haproxy_server": s.pooled.haproxy,
                    "up": s.is_up(),
                    "pool": pool,
                });
                if let Some(r) = &s.release {
                    let (release, detail) = release_json(r);
                    v["release"] = release;
                    v["release_detail"] = detail;
                }
                v
            })
            .collect();
        let proxies: Vec<Value> = status
            .proxies
            .iter()
            .map(|p| {
                json!({
                    "proxy": p.proxy,
                    "answered": p.error.is_none(),
                    "error": p.error.as_ref().map(|e| e.to_string()),
                })
            })
            .collect();
        let releases: Vec<Value> = self
            .releases
            .iter()
            .flatten()
            .map(|(name, r)| {
                let (release, detail) = release_json(r);
                json!({"server": name, "release": release, "detail": detail})
            })
            .collect();
        let release_drift: Vec<Value> = self
            .release_drift()
            .into_iter()
            .map(|(id, names)| json!({"release": id, "servers": names}))
            .collect();
        let others: Vec<Value> = self
            .others
            .iter()
            .map(|(p, b, s)| json!({"proxy": p, "backend": b, "server": s}))
            .collect();
        json!({
            "ok": self.is_ok(),
            "servers": servers,
            "proxies": proxies,
            "drift": self.drift,
            "releases": releases,
            "release_drift": release_drift,
            "not_pooled_in_backends": others,
        })
    }
}

/// A release as JSON: its id (`null` when the live path is not one) and what was seen
/// instead.
fn release_json(r: &Release) -> (Value, Value) {
    match r {
        Release::Live(id) => (Value::from(id.as_str()), Value::Null),
        Release::Other(t) | Release::Unreadable(t) => (Value::Null, Value::from(t.as_str())),
    }
}

/// `L7OK Layer7 check passed`, or `no check`.
fn check_text(s: &ServerStatus) -> String {
    if !s.check.enabled {
        return "no check".to_string();
    }
    let text = match (&s.check.status, &s.check.description) {
        (Some(st), Some(d)) => format!("{st} {d}"),
        (Some(st), None) => st.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => "no result yet".to_string(),
    };
    Clean(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mwdeploy_haproxy::stat::{AdminState, OperationalState, Status};
    use mwdeploy_haproxy::{BackendStatus, CheckStatus, HaproxyError, ProxyStatus};

    fn server(name: &str, status: &str) -> ServerStatus {
        let word = Status::parse(status);
        ServerStatus {
            server: name.to_string(),
            status: status.to_string(),
            state: word.pool_state(),
            admin: Some(if word == Status::Maint {
                AdminState::Maint
            } else {
                AdminState::Ready
            }),
            operational: Some(OperationalState::Up),
            check: CheckStatus {
                enabled: true,
                status: Some("L7OK".into()),
                description: Some("Layer7 check passed".into()),
                health: Some((3, 2, 3)),
            },
            sessions: 4,
            queued: 0,
        }
    }

    fn proxy(name: &str, servers: Vec<ServerStatus>) -> ProxyStatus {
        ProxyStatus {
            proxy: name.to_string(),
            backends: vec![BackendStatus {
                backend: "mediawiki".into(),
                servers,
            }],
            error: None,
        }
    }

    fn pooled(names: &[&str]) -> Vec<Pooled> {
        names
            .iter()
            .map(|n| Pooled {
                name: n.to_string(),
                haproxy: n.to_string(),
            })
            .collect()
    }

    #[test]
    fn without_proxies_there_is_no_pool_but_the_releases_are_shown() {
        let status = PoolStatus {
            proxies: Vec::new(),
        };
        let p = pooled(&["mw1"]);
        let rel = vec![("mw1".to_string(), Release::Live("r1".into()))];
        let a = Assessment::new(&p, &status, Some(rel));
        assert!(a.is_ok());
        assert_eq!(
            a.plain(&status),
            "pool: none: the config lists no proxy_servers\nreleases:\n  SERVER  RELEASE\n  mw1     r1\n"
        );
    }

    #[test]
    fn every_server_up_everywhere_is_ok() {
        let status = PoolStatus {
            proxies: vec![
                proxy("lb1", vec![server("mw1", "UP"), server("mw2", "UP")]),
                proxy("lb2", vec![server("mw1", "UP"), server("mw2", "no check")]),
            ],
        };
        let p = pooled(&["mw1", "mw2"]);
        let rel = vec![
            ("mw1".to_string(), Release::Live("r1".into())),
            ("mw2".to_string(), Release::Live("r1".into())),
            ("job1".to_string(), Release::Live("r1".into())),
        ];
        let a = Assessment::new(&p, &status, Some(rel));
        assert!(a.is_ok());
        assert!(a.is_ok());
        let text = a.plain(&status);
        assert!(text.contains("mw1     lb2    mediawiki  UP        ready  up           4         0       L7OK Layer7 check passed"), "{text}");
        assert!(!text.contains("drift"), "{text}");
        assert!(
            text.ends_with("2 of 2 pooled servers UP on every proxy and backend\n"),
            "{text}"
        );
        let v = a.json(&status);
        assert_eq!(v["ok"], true);
        assert_eq!(v["servers"][1]["release"], "r1");
        assert_eq!(v["servers"][0]["pool"][1]["proxy"], "lb2");
        assert_eq!(v["servers"][0]["pool"][1]["state"], "UP");
    }

    #[test]
    fn a_server_in_maint_on_one_proxy_is_drift_and_not_ok() {
        let status = PoolStatus {
            proxies: vec![
                proxy("lb1", vec![server("mw1", "UP"), server("mw2", "MAINT")]),
                proxy("lb2", vec![server("mw1", "UP"), server("mw2", "UP")]),
            ],
        };
        let p = pooled(&["mw1", "mw2"]);
        let a = Assessment::new(&p, &status, None);
        assert!(!a.is_ok());
        let text = a.plain(&status);
        assert!(
            text.contains("drift between proxies: mw2 in mediawiki: MAINT on lb1, UP on lb2\n"),
            "{text}"
        );
        assert!(
            text.ends_with("1 of 2 pooled servers UP on every proxy and backend; not UP: mw2 (MAINT on lb1/mediawiki)\n"),
            "{text}"
        );
        assert!(!text.contains("releases:"), "{text}");
        let v = a.json(&status);
        assert_eq!(v["drift"][0]["server"], "mw2");
        assert_eq!(v["servers"][1]["up"], false);
    }

    #[test]
    fn an_unreachable_proxy_a_missing_server_and_release_drift_are_shown() {
        let status = PoolStatus {
            proxies: vec![
                proxy("lb1", vec![server("mw1", "UP"), server("old9", "DOWN")]),
                ProxyStatus {
                    proxy: "lb2".into(),
                    backends: vec![],
                    error: Some(HaproxyError::Config("socket gone".into())),
                },
            ],
        };
        let p = pooled(&["mw1", "mw2", "mw3"]);
        let rel = vec![
            ("mw1".to_string(), Release::Live("r2".into())),
            ("mw2".to_string(), Release::Live("r1".into())),
            (
                "mw3".to_string(),
                Release::Unreadable("ssh: refused\x1b[0m".into()),
            ),
            ("job1".to_string(), Release::Live("r1".into())),
        ];
        let a = Assessment::new(&p, &status, Some(rel));
        assert!(!a.is_ok());
        let text = a.plain(&status);
        assert!(
            text.contains("proxy lb2: cannot be read: haproxy configuration: socket gone\n"),
            "{text}"
        );
        assert!(
            text.contains("1 of 3 pooled servers UP on every proxy and backend that answered;"),
            "{text}"
        );
        assert!(
            text.contains("missing: mw2 is not a server of this backend"),
            "{text}"
        );
        assert!(
            text.contains("  mw3     cannot be read: ssh: refused?[0m\n"),
            "{text}"
        );
        assert!(
            text.contains("release drift between servers: r2 on mw1; r1 on mw2, job1\n"),
            "{text}"
        );
        assert!(
            text.contains("not pooled servers of the config: old9"),
            "{text}"
        );
        assert!(text.ends_with("; not read: lb2\n"), "{text}");
        let v = a.json(&status);
        assert_eq!(v["proxies"][1]["answered"], false);
        assert_eq!(v["releases"][3]["server"], "job1");
        assert_eq!(v["servers"][1]["pool"][0]["missing"], true);
        assert_eq!(v["release_drift"][1]["servers"][0], "mw2");
        assert_eq!(v["servers"][2]["release"], Value::Null);
    }
}
