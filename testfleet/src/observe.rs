//! Observers: a load generator that counts failed requests, and a pool monitor that records
//! how many servers are out of the pool and for how long.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::http::{self, MAIN_PAGE};
use crate::site::Proxy;

/// How a [`LoadGenerator`] sends requests.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    workers: usize,
    pause: Duration,
    timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            workers: 2,
            pause: Duration::from_millis(5),
            timeout: Duration::from_secs(5),
        }
    }
}

impl LoadOptions {
    /// Threads sending requests, one at a time each (default 2).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Pause after each request of a worker (default 5 ms).
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// A request that takes longer fails (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Why a request counted as failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// An HTTP status other than 200.
    Status(u16),
    /// HTTP 200 without `wikioasis` in the body.
    NoMarker,
    /// One page with the stamps of two releases.
    Mixed {
        /// The stamp of the first file.
        a: String,
        /// The stamp of the second file.
        b: String,
    },
    /// No answer: refused, reset, timed out.
    Io(String),
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Status(s) => write!(f, "HTTP {s}"),
            FailureKind::NoMarker => f.write_str("no `wikioasis` in the page"),
            FailureKind::Mixed { a, b } => write!(f, "mixed releases ({a} and {b})"),
            FailureKind::Io(e) => write!(f, "no answer: {e}"),
        }
    }
}

/// One failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadFailure {
    /// Where it was sent: a proxy (`lb1`) or a server (`mw1`).
    pub target: String,
    /// The server that answered, when the page said.
    pub server: Option<String>,
    /// When, since the load started.
    pub at: Duration,
    /// What was wrong.
    pub kind: FailureKind,
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}s via {}", self.at.as_secs_f64(), self.target)?;
        if let Some(s) = &self.server {
            write!(f, " from {s}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// Requests and failures through one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetLoad {
    /// The proxy or server name.
    pub target: String,
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed.
    pub failed: u64,
}

/// What a [`LoadGenerator`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadReport {
    /// Requests sent.
    pub requests: u64,
    /// Requests that failed (any [`FailureKind`]).
    pub failed: u64,
    /// Per target, in the order given.
    pub per_target: Vec<TargetLoad>,
    /// Good pages by the release stamp they showed.
    pub stamps: BTreeMap<String, u64>,
    /// Good pages by the server that served them.
    pub servers: BTreeMap<String, u64>,
    /// The first 200 failures.
    pub failures: Vec<LoadFailure>,
    /// How long the load ran.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Failed requests through `target` (`lb1`, `mw3`).
    pub fn failed_via(&self, target: &str) -> u64 {
        self.per_target
            .iter()
            .find(|t| t.target == target)
            .map_or(0, |t| t.failed)
    }

    /// Failures of one kind (compared by variant only).
    pub fn count(&self, kind: &FailureKind) -> usize {
        self.failures
            .iter()
            .filter(|f| std::mem::discriminant(&f.kind) == std::mem::discriminant(kind))
            .count()
    }
}

const KEEP_FAILURES: usize = 200;

/// Sends requests for the main page through proxy frontends (or straight to a server) from
/// background threads until stopped, and counts what failed: a status other than 200, a
/// body without `wikioasis`, a page mixing two releases, no answer.
///
/// Started by [`Fleet::start_load`](crate::Fleet::start_load); dropping it stops it.
#[derive(Debug)]
pub struct LoadGenerator {
    state: Arc<Mutex<LoadReport>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl LoadGenerator {
    pub(crate) fn start(targets: Vec<(String, u16)>, options: LoadOptions) -> LoadGenerator {
        let started = Instant::now();
        let state = Arc::new(Mutex::new(LoadReport {
            per_target: targets
                .iter()
                .map(|(name, _)| TargetLoad {
                    target: name.clone(),
                    ..TargetLoad::default()
                })
                .collect(),
            ..LoadReport::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(targets);
        let threads = (0..options.workers)
            .map(|w| {
                let (state, stop, targets, options) = (
                    state.clone(),
                    stop.clone(),
                    targets.clone(),
                    options.clone(),
                );
                std::thread::spawn(move || {
                    let mut next = w;
                    while !stop.load(Ordering::SeqCst) {
                        let t = next % targets.len();
                        next += 1;
                        let (name, port) = &targets[t];
                        let outcome = http::get(*port, MAIN_PAGE, options.timeout);
                        record(&state, t, name, outcome, started.elapsed());
                        if !options.pause.is_zero() {
                            std::thread::sleep(options.pause);
                        }
                    }
                })
            })
            .collect();
        LoadGenerator {
            state,
            stop,
            threads,
            started,
        }
    }

    /// What it has seen so far; it keeps running.
    pub fn report(&self) -> LoadReport {
        let mut r = self.state.lock().map(|s| s.clone()).unwrap_or_default();
        r.elapsed = self.started.elapsed();
        r
    }

    /// Stops it (requests in flight finish) and returns what it saw.
    pub fn stop(mut self) -> LoadReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        self.halt();
    }
}

fn record(
    state: &Mutex<LoadReport>,
    t: usize,
    target: &str,
    outcome: std::io::Result<http::Page>,
    at: Duration,
) {
    let (kind, server, stamp) = match outcome {
        Err(e) => (Some(FailureKind::Io(e.to_string())), None, None),
        Ok(page) => {
            let server = page.server().map(str::to_string);
            let kind = if page.status != 200 {
                Some(FailureKind::Status(page.status))
            } else if !page.has_marker() {
                Some(FailureKind::NoMarker)
            } else if page.is_mixed() {
                Some(FailureKind::Mixed {
                    a: page.field("stamp-a").unwrap_or_default().to_string(),
                    b: page.field("stamp-b").unwrap_or_default().to_string(),
                })
            } else {
                None
            };
            (kind, server, page.stamp().map(str::to_string))
        }
    };
    let Ok(mut s) = state.lock() else {
        return;
    };
    s.requests += 1;
    s.per_target[t].requests += 1;
    match kind {
        Some(kind) => {
            s.failed += 1;
            s.per_target[t].failed += 1;
            if s.failures.len() < KEEP_FAILURES {
                s.failures.push(LoadFailure {
                    target: target.to_string(),
                    server,
                    at,
                    kind,
                });
            }
        }
        None => {
            if let Some(stamp) = stamp {
                *s.stamps.entry(stamp).or_default() += 1;
            }
            if let Some(server) = server {
                *s.servers.entry(server).or_default() += 1;
            }
        }
    }
}

/// How long one server was out of the pool while a [`PoolMonitor`] watched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOut {
    /// Total time out of the pool (on any proxy).
    pub time_out: Duration,
    /// The longest single stretch out.
    pub longest_out: Duration,
    /// How many times it went out.
    pub times_out: u32,
    /// The part of `time_out` it spent in maintenance (MAINT) on some proxy: a deploy's
    /// window without the drain before it and the wait for a health check after it.
    pub time_in_maint: Duration,
}

/// What a [`PoolMonitor`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolReport {
    /// Sampling rounds done (each asks every proxy).
    pub samples: u64,
    /// The most servers out of the pool at once: a server counts when any proxy that
    /// answered has it in a state other than UP (MAINT, DRAIN, DOWN).
    pub max_out: usize,
    /// Which servers were out when `max_out` was first reached.
    pub max_out_servers: Vec<String>,
    /// The most servers out at once on each proxy.
    pub max_out_per_proxy: BTreeMap<String, usize>,
    /// Per server (every server of the backend), its time out of the pool.
    pub servers: BTreeMap<String, ServerOut>,
    /// Per proxy, samples where it did not answer (stopped, reloading).
    pub unreachable: BTreeMap<String, u64>,
    /// How long the monitor ran.
    pub elapsed: Duration,
}

#[derive(Debug, Default)]
struct PoolState {
    report: PoolReport,
    out_since: BTreeMap<String, Instant>,
    maint_since: BTreeMap<String, Instant>,
}

/// Samples every server's state on every proxy through the admin sockets
/// (`show servers state`) at a fixed interval, from a background thread.
///
/// Started by [`Fleet::start_pool_monitor`](crate::Fleet::start_pool_monitor); dropping it
/// stops it.
#[derive(Debug)]
pub struct PoolMonitor {
    state: Arc<Mutex<PoolState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl PoolMonitor {
    pub(crate) fn start(proxies: Vec<Proxy>, servers: Vec<String>, every: Duration) -> Self {
        let started = Instant::now();
        let mut report = PoolReport::default();
        for s in &servers {
            report.servers.insert(s.clone(), ServerOut::default());
        }
        for p in &proxies {
            report.max_out_per_proxy.insert(p.name().to_string(), 0);
            report.unreachable.insert(p.name().to_string(), 0);
        }
        let state = Arc::new(Mutex::new(PoolState {
            report,
            out_since: BTreeMap::new(),
            maint_since: BTreeMap::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let round = Instant::now();
                    sample(&state, &proxies);
                    if let Some(left) = every.checked_sub(round.elapsed()) {
                        std::thread::sleep(left);
                    }
                }
            })
        };
        PoolMonitor {
            state,
            stop,
            thread: Some(thread),
            started,
        }
    }

    /// What it has seen so far (stretches still out counted up to now); it keeps running.
    pub fn report(&self) -> PoolReport {
        let Ok(s) = self.state.lock() else {
            return PoolReport::default();
        };
        let mut r = s.report.clone();
        let now = Instant::now();
        for (name, since) in &s.out_since {
            if let Some(o) = r.servers.get_mut(name) {
                let d = now - *since;
                o.time_out += d;
                o.longest_out = o.longest_out.max(d);
            }
        }
        for (name, since) in &s.maint_since {
            if let Some(o) = r.servers.get_mut(name) {
                o.time_in_maint += now - *since;
            }
        }
        r.elapsed = self.started.elapsed();
        r
    }

    /// Stops it and returns what it saw.
    pub fn stop(mut self) -> PoolReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PoolMonitor {
    fn drop(&mut self) {
        self.halt();
    }
}

fn sample(state: &Mutex<PoolState>, proxies: &[Proxy]) {
    let mut out_any: BTreeSet<String> = BTreeSet::new();
    let mut maint_any: BTreeSet<String> = BTreeSet::new();
    let mut per_proxy: Vec<(String, Option<usize>)> = Vec::new();
    for p in proxies {
        match p.server_states() {
            Ok(states) => {
                maint_any.extend(
                    states
                        .iter()
                        .filter(|s| s.state == mwdeploy_core::PoolState::Maint)
                        .map(|s| s.name.clone()),
                );
                let out: Vec<String> = states
                    .into_iter()
                    .filter(|s| !s.in_pool())
                    .map(|s| s.name)
                    .collect();
                per_proxy.push((p.name().to_string(), Some(out.len())));
                out_any.extend(out);
            }
            Err(_) => per_proxy.push((p.name().to_string(), None)),
        }
    }
    let now = Instant::now();
    let Ok(mut s) = state.lock() else {
        return;
    };
    let PoolState {
        report,
        out_since,
        maint_since,
    } = &mut *s;
    report.samples += 1;
    let answered = per_proxy.iter().any(|(_, out)| out.is_some());
    for (name, out) in per_proxy {
        match out {
            Some(n) => {
                let m = report.max_out_per_proxy.entry(name).or_default();
                *m = (*m).max(n);
            }
            None => *report.unreachable.entry(name).or_default() += 1,
        }
    }
    if !answered {
        // Nobody answered: what is out is unknown, keep the last picture.
        return;
    }
    if out_any.len() > report.max_out {
        report.max_out = out_any.len();
        report.max_out_servers = out_any.iter().cloned().collect();
    }
    let (went_out, came_back) = stretches(out_since, &out_any, now);
    for name in went_out {
        report.servers.entry(name).or_default().times_out += 1;
    }
    for (name, d) in came_back {
        let o = report.servers.entry(name).or_default();
        o.time_out += d;
        o.longest_out = o.longest_out.max(d);
    }
    for (name, d) in stretches(maint_since, &maint_any, now).1 {
        report.servers.entry(name).or_default().time_in_maint += d;
    }
}

/// Follows stretches of time a name spends in a set: starts one (at `now`) for every
/// name of `now_in` that `since` lacks, and ends those of the names no longer in it.
/// Returns the names that started one, and the stretches that ended.
fn stretches(
    since: &mut BTreeMap<String, Instant>,
    now_in: &BTreeSet<String>,
    now: Instant,
) -> (Vec<String>, Vec<(String, Duration)>) {
    let mut started = Vec::new();
    for name in now_in {
        if !since.contains_key(name) {
            since.insert(name.clone(), now);
            started.push(name.clone());
        }
    }
    let gone: Vec<String> = since
        .keys()
        .filter(|n| !now_in.contains(*n))
        .cloned()
        .collect();
    let ended = gone
        .into_iter()
        .filter_map(|name| since.remove(&name).map(|t| (name, now - t)))
        .collect();
    (started, ended)
}
