//! A small real fleet on loopback for these tests: tiny HTTP servers on std threads and
//! real HAProxy processes (`haproxy -f <cfg> -db`) with admin sockets in a temp dir.
//!
//! This stands in for `testfleet` until its `Fleet` exists; it starts the same
//! HAProxy the production code talks to.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mwdeploy_core::ports::Progress;
use mwdeploy_core::ServerId;
use mwdeploy_haproxy::stat::{parse_show_stat, RowKind};
use mwdeploy_haproxy::{HaproxyConfig, HaproxyPool, Proxy, Transport};

/// Finds a program the tests need, or fails naming the install script.
pub(crate) fn require(program: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"]);
    for dir in dirs.filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{program} is not installed, and this test runs against the real {program}: \
         run scripts/install-deps.sh (it installs haproxy and socat)"
    );
}

/// A fresh folder under the system's temp dir, removed when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // Short: a unix socket path has to fit in 108 bytes.
        let path = std::env::temp_dir().join(format!("mwhx-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
struct WebState {
    hits: AtomicUsize,
    holding: AtomicUsize,
    unhealthy: AtomicBool,
    slow_health: AtomicBool,
    release: AtomicBool,
    stop: AtomicBool,
}

/// A tiny HTTP server standing for a MediaWiki server.
///
/// - `GET /health`: 200, or 503 once [`Web::set_healthy`]`(false)`, no answer while
///   [`Web::set_slow_health`]`(true)`; not counted.
/// - a path ending in `/hold`: counted, then held open until [`Web::release_holds`]
///   (or the end of the test).
/// - anything else: counted, `200 served by <name>`.
pub(crate) struct Web {
    name: String,
    port: u16,
    state: Arc<WebState>,
}

impl Web {
    pub(crate) fn start(name: &str) -> Web {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(WebState::default());
        let (st, who) = (state.clone(), name.to_string());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, who) = (st.clone(), who.clone());
                thread::spawn(move || handle(conn, &st, &who));
            }
        });
        Web {
            name: name.to_string(),
            port,
            state,
        }
    }

    pub(crate) fn id(&self) -> ServerId {
        ServerId::new(&self.name).unwrap()
    }

    /// Requests served or held (health checks not counted).
    pub(crate) fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Requests held open right now.
    pub(crate) fn holding(&self) -> usize {
        self.state.holding.load(Ordering::SeqCst)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.state.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    /// While true, health checks get no answer (they pass once it is false again).
    pub(crate) fn set_slow_health(&self, slow: bool) {
        self.state.slow_health.store(slow, Ordering::SeqCst);
    }

    pub(crate) fn release_holds(&self) {
        self.state.release.store(true, Ordering::SeqCst);
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.release.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(mut conn: TcpStream, st: &WebState, who: &str) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (code, body) = if path == "/health" {
        while st.slow_health.load(Ordering::SeqCst) && !st.stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(10));
        }
        if st.unhealthy.load(Ordering::SeqCst) {
            ("503 Service Unavailable", "broken".to_string())
        } else {
            ("200 OK", "healthy".to_string())
        }
    } else if path.ends_with("/hold") {
        st.hits.fetch_add(1, Ordering::SeqCst);
        st.holding.fetch_add(1, Ordering::SeqCst);
        while !st.release.load(Ordering::SeqCst) && !st.stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(10));
        }
        st.holding.fetch_sub(1, Ordering::SeqCst);
        ("200 OK", format!("held by {who}"))
    } else {
        st.hits.fetch_add(1, Ordering::SeqCst);
        ("200 OK", format!("served by {who}"))
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A request through a proxy's frontend (a unix socket): status code and body.
pub(crate) fn get(frontend: &Path, path: &str) -> (u16, String) {
    let mut s = UnixStream::connect(frontend)
        .unwrap_or_else(|e| panic!("frontend {}: {e}", frontend.display()));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// A server of a backend in the HAProxy config.
pub(crate) struct Member<'a> {
    pub(crate) web: &'a Web,
    pub(crate) check: bool,
}

pub(crate) fn checked(web: &Web) -> Member<'_> {
    Member { web, check: true }
}

/// A real HAProxy with an admin socket (level admin), a user-level socket, and a
/// frontend on a unix socket whose requests go to the first backend.
pub(crate) struct Haproxy {
    pub(crate) name: String,
    dir: TempDir,
    child: Option<Child>,
    pub(crate) admin: PathBuf,
    pub(crate) user: PathBuf,
    pub(crate) frontend: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Haproxy {
    pub(crate) fn start(name: &str, backends: &[(&str, Vec<Member<'_>>)]) -> Haproxy {
        let dir = TempDir::new();
        let admin = dir.path().join("admin.sock");
        let user = dir.path().join("user.sock");
        let frontend = dir.path().join("fe.sock");
        let mut cfg = format!(
            "global\n\
             \x20   nbthread 1\n\
             \x20   stats socket {} level admin\n\
             \x20   stats socket {} level user\n\
             defaults\n\
             \x20   mode http\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 60s\n\
             \x20   timeout server 60s\n\
             \x20   timeout check 60s\n\
             \x20   option httpchk GET /health\n\
             \x20   default-server inter 100ms fastinter 100ms downinter 100ms rise 2 fall 2\n\
             frontend fe\n\
             \x20   bind unix@{}\n\
             \x20   default_backend {}\n",
            admin.display(),
            user.display(),
            frontend.display(),
            backends.first().map(|b| b.0).unwrap_or("mediawiki"),
        );
        for (backend, members) in backends {
            cfg.push_str(&format!("backend {backend}\n    balance roundrobin\n"));
            for m in members {
                // `/pin/<name>/...` goes to that server while it is up: the way to hold
                // a session open on one server.
                cfg.push_str(&format!(
                    "    use-server {0} if {{ path_beg /pin/{0}/ }}\n",
                    m.web.name
                ));
            }
            for m in members {
                cfg.push_str(&format!(
                    "    server {} 127.0.0.1:{}{}\n",
                    m.web.name,
                    m.web.port,
                    if m.check { " check" } else { "" }
                ));
            }
        }
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, cfg).unwrap();
        let log = dir.path().join("haproxy.log");
        let mut h = Haproxy {
            name: name.to_string(),
            dir,
            child: None,
            admin,
            user,
            frontend,
            config,
            log,
        };
        h.launch();
        h
    }

    fn launch(&mut self) {
        let haproxy = require("haproxy");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(haproxy)
            .arg("-f")
            .arg(&self.config)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Until the admin socket answers and every checked server passed a check.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "haproxy {} exited with {status}: {}",
                    self.name,
                    self.log_text()
                );
            }
            if let Some(stat) = self.try_command("show stat") {
                if let Ok(rows) = parse_show_stat(&stat) {
                    let servers: Vec<_> =
                        rows.iter().filter(|r| r.kind == RowKind::Server).collect();
                    if !servers.is_empty()
                        && servers
                            .iter()
                            .all(|r| r.status == "UP" || r.status == "no check")
                    {
                        return;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "haproxy {} not ready: {:?}\n{}",
                    self.name,
                    self.try_command("show stat"),
                    self.log_text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_command(&self, line: &str) -> Option<String> {
        let mut s = UnixStream::connect(&self.admin).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        writeln!(s, "{line}").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// A command on the admin socket, straight (to look at HAProxy from outside the
    /// code under test).
    pub(crate) fn command(&self, line: &str) -> String {
        self.try_command(line)
            .unwrap_or_else(|| panic!("haproxy {}: `{line}` failed", self.name))
    }

    /// A server's status in HAProxy's words, read from outside the code under test.
    pub(crate) fn status(&self, backend: &str, server: &str) -> String {
        let text = self.command("show stat");
        let header = text.lines().next().unwrap_or("");
        let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
        let at = |name: &str| cols.iter().position(|c| *c == name).unwrap();
        let (px, sv, st) = (at("pxname"), at("svname"), at("status"));
        text.lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.len() > st && f[px] == backend && f[sv] == server)
            .map(|f| f[st].to_string())
            .unwrap_or_else(|| panic!("no {backend}/{server} on {}", self.name))
    }

    /// Polls until `backend/server` has a status whose first word is `word`.
    pub(crate) fn wait_status(&self, backend: &str, server: &str, word: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.status(backend, server).split_whitespace().next() != Some(word) {
            assert!(
                Instant::now() < deadline,
                "{backend}/{server} on {} never became {word}: {}",
                self.name,
                self.status(backend, server)
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL: its socket file stays, refusing connections).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it and starts it again with the same config: runtime state is forgotten.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A proxy of the pool on `h`'s admin socket, reached directly.
pub(crate) fn local_proxy(h: &Haproxy) -> Proxy {
    Proxy::new(&h.name, Transport::local(&h.admin).unwrap()).unwrap()
}

/// A pool with short bounds and a fast poll.
pub(crate) fn pool(
    proxies: Vec<Proxy>,
    backends: &[&str],
    drain: Duration,
    repool: Duration,
) -> HaproxyPool {
    HaproxyPool::new(
        HaproxyConfig::new(proxies, backends.iter().map(|b| b.to_string()).collect())
            .timeouts(drain, repool)
            .poll_interval(Duration::from_millis(25))
            .command_timeout(Duration::from_secs(5)),
    )
    .unwrap()
}

/// A progress handle that keeps every line.
pub(crate) fn recorder(server: ServerId) -> (Progress, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    let progress = Progress::new(server, "pool", move |_, _, update| {
        if let Some(line) = update.line {
            l.lock().unwrap().push(line);
        }
    });
    (progress, lines)
}

/// Waits (polling, bounded) until `cond` holds.
pub(crate) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
