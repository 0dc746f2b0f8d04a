//! The fault matrix's machinery: a case (how to inject a fault, when, and what the
//! journal must show), the runner that deploys against a shared fleet with steady load
//! and a pool monitor, the one checker every case goes through, and the restore between
//! cases.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mwdeploy_runtime::journal;
use serde_json::Value;
use testfleet::{write_stamp, Fault, Fleet, Layout, LoadOptions};

use crate::support::{text, BIN};

/// `max_unavailable` in every case's config (the fleet's default config leaves it at 1).
pub(crate) const MAX_UNAVAILABLE: usize = 1;

/// A deploy that has not ended within this is killed and the case fails.
const DEPLOY_LIMIT: Duration = Duration::from_secs(150);

/// What a case does at a journal record, in the watcher thread.
pub(crate) type Action = Box<dyn Fn(&Ctx) + Send + Sync>;
/// Which journal record a trigger waits for.
pub(crate) type When = Box<dyn Fn(&Value) -> bool + Send + Sync>;

/// A case's change to the config text: `(ctx, stamp of the case's release, text)`.
pub(crate) type Edit = Box<dyn Fn(&Ctx, &str, String) -> String>;
/// A case's check that its step happened, on the deploy's journal.
pub(crate) type Exercised = Box<dyn Fn(&[Value]) -> Result<(), String>>;

/// One row of the matrix.
pub(crate) struct Case {
    /// Short name: `<step>_<fault>`.
    pub(crate) name: &'static str,
    /// The step of the cycle it breaks, for the report.
    pub(crate) step: &'static str,
    /// Extra deploy flags (`--on-failure` is always given explicitly).
    pub(crate) args: Vec<&'static str>,
    /// `--on-failure` value.
    pub(crate) on_failure: &'static str,
    /// Changes to the fleet's config text.
    pub(crate) edit: Edit,
    /// Done before the deploy starts.
    pub(crate) before: Option<Action>,
    /// Done once, when the first journal record `When` accepts is written.
    pub(crate) triggers: Vec<(When, Action)>,
    /// Proxies this case takes down (stopped or frozen): their load does not count.
    pub(crate) down_proxies: Vec<usize>,
    /// Kill mwdeploy (SIGKILL) once this fraction of a clean deploy's journal records
    /// is written, then `recover`.
    pub(crate) kill_at: Option<f64>,
    /// Checks the journal shows the step was really exercised.
    pub(crate) exercised: Exercised,
    /// Final `server_state` of each server and the exit code expected.
    pub(crate) expect: Expect,
}

/// The outcome a case expects.
#[derive(Debug, Clone)]
pub(crate) struct Expect {
    pub(crate) states: Vec<(&'static str, &'static str)>,
    pub(crate) exit: Option<i32>,
}

impl Case {
    pub(crate) fn new(name: &'static str, step: &'static str) -> Case {
        Case {
            name,
            step,
            args: Vec::new(),
            on_failure: "abort",
            edit: Box::new(|_, _, y| y),
            before: None,
            triggers: Vec::new(),
            down_proxies: Vec::new(),
            kill_at: None,
            exercised: Box::new(|_| Ok(())),
            expect: Expect {
                states: Vec::new(),
                exit: None,
            },
        }
    }
    pub(crate) fn on_failure(mut self, v: &'static str) -> Case {
        self.on_failure = v;
        self
    }
    pub(crate) fn args(mut self, a: &[&'static str]) -> Case {
        self.args.extend_from_slice(a);
        self
    }
    /// `f(ctx, stamp of this case's release, config text)`.
    pub(crate) fn edit(mut self, f: impl Fn(&Ctx, &str, String) -> String + 'static) -> Case {
        self.edit = Box::new(f);
        self
    }
    pub(crate) fn before(mut self, f: impl Fn(&Ctx) + Send + Sync + 'static) -> Case {
        self.before = Some(Box::new(f));
        self
    }
    pub(crate) fn at(
        mut self,
        when: impl Fn(&Value) -> bool + Send + Sync + 'static,
        then: impl Fn(&Ctx) + Send + Sync + 'static,
    ) -> Case {
        self.triggers.push((Box::new(when), Box::new(then)));
        self
    }
    pub(crate) fn proxy_down(mut self, p: usize) -> Case {
        self.down_proxies.push(p);
        self
    }
    pub(crate) fn kill_at(mut self, k: f64) -> Case {
        self.kill_at = Some(k);
        self
    }
    pub(crate) fn exercised(
        mut self,
        f: impl Fn(&[Value]) -> Result<(), String> + 'static,
    ) -> Case {
        self.exercised = Box::new(f);
        self
    }
    pub(crate) fn expect(mut self, exit: i32, states: &[(&'static str, &'static str)]) -> Case {
        self.expect = Expect {
            states: states.to_vec(),
            exit: Some(exit),
        };
        self
    }
}

/// What a case's actions reach: the fleet, and what they changed that restore undoes.
pub(crate) struct Ctx<'a> {
    pub(crate) fleet: &'a Fleet,
    pub(crate) layout: Layout,
    /// Processes stopped with SIGSTOP, continued by `heal`.
    stopped: Mutex<Vec<u32>>,
    /// Paths made immutable (`chattr +i`), undone by `heal`.
    immutable: Mutex<Vec<PathBuf>>,
    /// Listeners that accept and never answer (a canary that times out).
    pub(crate) silent: Mutex<Vec<std::net::TcpListener>>,
    /// Held connections (sessions a drain waits for).
    pub(crate) held: Mutex<Vec<std::net::TcpStream>>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(fleet: &'a Fleet, layout: Layout) -> Ctx<'a> {
        Ctx {
            fleet,
            layout,
            stopped: Mutex::new(Vec::new()),
            immutable: Mutex::new(Vec::new()),
            silent: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn inject(&self, f: Fault) {
        self.fleet
            .inject(f)
            .unwrap_or_else(|e| panic!("injecting {f:?}: {e}"));
    }

    pub(crate) fn clear(&self, f: Fault) {
        self.fleet
            .clear(f)
            .unwrap_or_else(|e| panic!("clearing {f:?}: {e}"));
    }

    /// SIGSTOP to `pids` (continued by `heal`).
    pub(crate) fn freeze(&self, pids: Vec<u32>) {
        let mut stopped = self.stopped.lock().unwrap();
        for p in pids {
            let _ = Command::new("kill")
                .args(["-STOP", &p.to_string()])
                .status();
            stopped.push(p);
        }
    }

    /// Proxy `i`'s HAProxy worker (its frontend and admin socket), stopped.
    pub(crate) fn freeze_proxy(&self, i: usize) {
        let info = self.fleet.proxies()[i].command("show info").unwrap();
        let pid: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Pid in show info: {info}"));
        self.freeze(vec![pid]);
    }

    /// Server `i`'s sshd and every session under it, stopped: ssh to it hangs.
    pub(crate) fn freeze_ssh(&self, i: usize) {
        let pidfile = self.fleet.servers()[i].dir().join("sshd.pid");
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()))
            .trim()
            .parse()
            .unwrap();
        // To a fixed point: a session forked after one read of the tree would keep the
        // server reachable (CI caught a copy that went through a "frozen" sshd).
        let stopped = testfleet::freeze_tree(pid);
        self.stopped.lock().unwrap().extend(stopped);
    }

    /// Server `i`'s ssh cut as when its host drops off the network: `Fault::SshDown`.
    /// No process may still hold a socket on its ssh port afterwards (the server side of
    /// a session, a multiplexed master's included): a connection that outlived the cut
    /// would let the deploy go on as if nothing happened.
    pub(crate) fn cut_ssh(&self, i: usize) {
        self.inject(Fault::SshDown(i));
        let port = self.fleet.servers()[i].ssh_port();
        let left = testfleet::socket_owners(port);
        assert!(
            left.is_empty(),
            "Fault::SshDown({i}) left processes {left:?} with a socket on ssh port {port}"
        );
    }

    /// `path`, made immutable by something else (a hook), made mutable again by `heal`.
    pub(crate) fn immutable_later(&self, path: &Path) {
        self.immutable.lock().unwrap().push(path.to_path_buf());
    }

    /// A URL on 127.0.0.1 that accepts connections and never answers.
    pub(crate) fn silent_url(&self) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/wiki/Main_Page",
            l.local_addr().unwrap().port()
        );
        self.silent.lock().unwrap().push(l);
        url
    }

    /// Undoes what stops the fleet from being read: frozen processes go on, immutable
    /// paths become writable, silent listeners and held sessions close.
    pub(crate) fn heal(&self) {
        for p in self.stopped.lock().unwrap().drain(..) {
            let _ = Command::new("kill")
                .args(["-CONT", &p.to_string()])
                .status();
        }
        for path in self.immutable.lock().unwrap().drain(..) {
            let _ = Command::new("chattr").arg("-i").arg(&path).status();
        }
        self.silent.lock().unwrap().clear();
        self.held.lock().unwrap().clear();
    }
}

/// The text of the mw_servers entry of `server` changed by `f` (up to the next entry).
pub(crate) fn edit_server(y: &str, server: &str, f: impl FnOnce(&str) -> String) -> String {
    let start = y
        .find(&format!("  - name: \"{server}\"\n"))
        .unwrap_or_else(|| panic!("{server} in the config"));
    let rest = &y[start + 4..];
    let len = rest
        .find("  - name: ")
        .or_else(|| rest.find("\nproxy_servers:").map(|n| n + 1))
        .unwrap()
        + 4;
    format!(
        "{}{}{}",
        &y[..start],
        f(&y[start..start + len]),
        &y[start + len..]
    )
}

/// Adds an argv to `server`'s `post_activate` hooks (after its php-fpm reload).
pub(crate) fn add_post_activate(y: &str, server: &str, argv: &[&str]) -> String {
    edit_server(y, server, |s| {
        format!("{s}        - {}\n", serde_json::to_string(&argv).unwrap())
    })
}

/// Sets keys under `rollout:` (the fleet's config has the block), replacing a key the
/// fleet's config already sets (`drain_timeout`, `repool_timeout`).
pub(crate) fn rollout(y: &str, keys: &str) -> String {
    let mut y = y.to_string();
    for k in keys.lines() {
        let key = k.split(':').next().unwrap();
        let old = y
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .map(str::to_string);
        y = match old {
            Some(old) => y.replacen(&format!("{old}\n"), &format!("{k}\n"), 1),
            None => y.replacen("rollout:\n", &format!("rollout:\n{k}\n"), 1),
        };
    }
    y
}

/// Sets keys under `canary:` (replacing the timeout/attempts lines given).
pub(crate) fn canary(y: &str, timeout: &str, attempts: u32) -> String {
    let mut out = String::new();
    for l in y.lines() {
        if l.starts_with("  timeout: ") {
            out.push_str(&format!("  timeout: \"{timeout}\"\n"));
        } else if l.starts_with("  attempts: ") {
            out.push_str(&format!("  attempts: {attempts}\n"));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Record matchers.
pub(crate) fn is_state(r: &Value, server: &str, state: &str) -> bool {
    r["event"] == "server_state" && r["server"] == server && r["state"] == state
}

pub(crate) fn is_event(r: &Value, event: &str, server: &str) -> bool {
    r["event"] == event && r["server"] == server
}

/// `Ok` when some record matches, else the journal's records for `what`.
pub(crate) fn has(lines: &[Value], what: &str, f: impl Fn(&Value) -> bool) -> Result<(), String> {
    if lines.iter().any(f) {
        Ok(())
    } else {
        Err(format!("the journal shows no {what}"))
    }
}

/// Every journal file of the fleet, oldest first (by deploy id, which starts with the time).
pub(crate) fn journal_files(fleet: &Fleet) -> Vec<PathBuf> {
    let dir = journal::dir(&fleet.state_dir());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// A journal file's complete lines, parsed (a torn last line is left out).
pub(crate) fn read_journal(path: &Path) -> Vec<Value> {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match t.rfind('\n') {
        Some(n) => &t[..n + 1],
        None => "",
    };
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A small deterministic generator (splitmix64) for the kill points.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// The seed for the kill points: `MWDEPLOY_FAULT_SEED`, else a fixed default.
pub(crate) fn seed() -> u64 {
    std::env::var("MWDEPLOY_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(20_261_122)
}

/// What one case did.
pub(crate) struct Outcome {
    pub(crate) name: String,
    pub(crate) step: &'static str,
    pub(crate) secs: f64,
    pub(crate) exit: Option<i32>,
    pub(crate) states: BTreeMap<String, String>,
    pub(crate) records: usize,
    pub(crate) problems: Vec<String>,
    pub(crate) journal: Vec<Value>,
    pub(crate) output: String,
}

fn stamp_for(layout: Layout, n: usize) -> String {
    format!("{}{n}", if layout == Layout::Releases { "r" } else { "i" })
}

/// Puts the fleet back as a case found it: faults cleared, frozen processes continued,
/// in place a tree left half copied made whole again from staging, every server in the
/// pool of every proxy, no journal.
pub(crate) fn restore(ctx: &Ctx) {
    let fleet = ctx.fleet;
    ctx.heal();
    let n = fleet.servers().len();
    for i in 0..n {
        for f in [
            Fault::PageError(i),
            Fault::PageHang(i),
            Fault::PageWarning(i),
            Fault::PhpFpmDown(i),
            Fault::WebServerDown(i),
            Fault::SshDown(i),
            Fault::SshHostKeyChanged(i),
            Fault::DiskWriteFails(i),
        ] {
            ctx.clear(f);
        }
    }
    for p in 0..fleet.proxies().len() {
        ctx.clear(Fault::ProxyDown(p));
    }
    for s in fleet.servers() {
        if s.served_stamp().is_err() && ctx.layout == Layout::Inplace {
            // A cut in-place copy: the tree is made whole from staging, as recover would.
            let st = Command::new("rsync")
                .args(["-a", "--delete", "--exclude=/.git/", "--exclude=/cache/"])
                .arg(format!("{}/", fleet.staging().path().display()))
                .arg(format!("{}/", s.live_path().display()))
                .status()
                .expect("rsync (scripts/install-deps.sh)");
            assert!(st.success());
            s.reload().unwrap();
        }
    }
    for p in fleet.proxies() {
        for s in fleet.servers() {
            let _ = p.command(&format!("set server mediawiki/{} state ready", s.name()));
        }
    }
    fleet
        .wait_all_up(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("restore: {e}"));
    for s in fleet.servers() {
        s.served_stamp()
            .unwrap_or_else(|e| panic!("restore: {} not whole: {e}", s.name()));
    }
    for f in journal_files(fleet) {
        std::fs::remove_file(f).unwrap();
    }
}

/// Runs one case: restore, config, stamp, load and pool monitor, the deploy (with its
/// triggers, and for a kill case SIGKILL then `recover`), then the shared checker.
pub(crate) fn run_case(ctx: &Ctx, n: usize, case: &Case, baseline: usize) -> Outcome {
    let fleet = ctx.fleet;
    let started = Instant::now();
    restore(ctx);
    let stamp = stamp_for(ctx.layout, n);
    let config = {
        use std::os::unix::fs::PermissionsExt;
        let path = fleet.root().join(format!("fault-{}.yaml", case.name));
        // Failing canaries fail fast: 2 s a try, 2 tries (cases may change it again).
        let y = canary(&fleet.config_yaml(ctx.layout), "2s", 2);
        std::fs::write(&path, (case.edit)(ctx, &stamp, y)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    write_stamp(fleet.staging().path(), &stamp).unwrap();
    let load = fleet
        .start_load(
            LoadOptions::default()
                .pause(Duration::from_millis(20))
                .timeout(Duration::from_secs(8)),
        )
        .unwrap();
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));
    if let Some(b) = &case.before {
        b(ctx);
    }

    let mut args = vec![
        "--rsync",
        "--rollout",
        "--no-tui",
        "--on-failure",
        case.on_failure,
    ];
    args.extend(case.args.iter().copied());
    let child = Command::new(BIN)
        .arg("-C")
        .arg(&config)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("MWDEPLOY_CONFIG")
        .spawn()
        .expect("mwdeploy starts");
    let pid = child.id();
    let done = AtomicBool::new(false);
    let mut killed = false;
    let (triggers, kill_frac) = (&case.triggers, case.kill_at);
    let (status, out, err) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut fired = vec![false; triggers.len()];
            let mut kill_done = false;
            let kill_at =
                kill_frac.map(|f| ((baseline as f64 * f) as usize).clamp(1, baseline.max(2) - 1));
            loop {
                let finished = done.load(Ordering::SeqCst);
                let lines = journal_files(fleet)
                    .first()
                    .map(|p| read_journal(p))
                    .unwrap_or_default();
                if let Some(k) = kill_at {
                    if !kill_done && lines.len() > k {
                        let _ = Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                        kill_done = true;
                    }
                }
                for (i, (when, then)) in triggers.iter().enumerate() {
                    if !fired[i] && lines.iter().any(when) {
                        fired[i] = true;
                        then(ctx);
                    }
                }
                if finished {
                    return kill_done;
                }
                std::thread::sleep(Duration::from_millis(15));
            }
        });
        let r = wait_limited(child);
        done.store(true, Ordering::SeqCst);
        killed = watcher.join().unwrap();
        r
    });
    let mut output = format!("{out}{err}");
    let mut problems = Vec::new();
    if status.is_none() {
        problems.push(format!("the deploy did not end within {DEPLOY_LIMIT:?}"));
    }
    let mut exit = status.flatten();
    let deploy_journal = journal_files(fleet).first().cloned();

    // A killed deploy is finished by `recover`, with the faults still there.
    if case.kill_at.is_some() {
        if !killed {
            problems.push("the deploy ended before the kill point".into());
        }
        let o = Command::new(BIN)
            .arg("-C")
            .arg(&config)
            .arg("recover")
            .stdin(Stdio::null())
            .env_remove("MWDEPLOY_CONFIG")
            .output()
            .expect("mwdeploy recover runs");
        output.push_str(&format!(
            "--- recover (exit {:?}):\n{}{}",
            o.status.code(),
            text(&o.stdout),
            text(&o.stderr)
        ));
        exit = o.status.code();
    }
    if case.step == "error gate" {
        // What the gate read: the end of mw1's PHP error log.
        let log = std::fs::read_to_string(fleet.servers()[0].php_error_log()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(6).collect();
        output.push_str(&format!(
            "--- mw1's php error log, last lines (newest first):\n{}\n",
            tail.join("\n")
        ));
    }
    // What froze a proxy or a server goes on, so the fleet can be read; faults that
    // keep a server out (php-fpm down, a proxy down) stay until the check is done.
    ctx.heal();
    let (load, pool) = (load.stop(), pool.stop());

    let journal = deploy_journal
        .as_deref()
        .map(read_journal)
        .unwrap_or_default();
    check(
        ctx,
        case,
        &journal,
        &output,
        exit,
        &load,
        &pool,
        &mut problems,
    );
    let mut states = BTreeMap::new();
    for s in fleet.servers() {
        if let Some(st) = crate::support::final_state(&journal, s.name()) {
            states.insert(s.name().to_string(), st);
        }
    }
    Outcome {
        name: format!("{}/{}", ctx.layout, case.name),
        step: case.step,
        secs: started.elapsed().as_secs_f64(),
        exit,
        states,
        records: journal.len(),
        problems,
        journal,
        output,
    }
}

/// Waits for the child within `DEPLOY_LIMIT`, collecting its output: `None` if it had
/// to be killed.
fn wait_limited(mut child: Child) -> (Option<Option<i32>>, String, String) {
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t1 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t2 = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st.code());
        }
        if start.elapsed() > DEPLOY_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, t1.join().unwrap(), t2.join().unwrap())
}

/// States in which a server's cycle ended badly.
const BAD: [&str; 4] = ["failed", "rolled_back", "skipped", "warned"];

/// The one checker of every case, after the deploy (and `recover`) ended:
/// - every server is either in the pool of every proxy that is up, serving one whole
///   release (its page: HTTP 200, `wikioasis`, one stamp), or out of the pool and named
///   in the output's "left out of the pool:" lines;
/// - never more than `max_unavailable` out at once (pool monitor);
/// - no failed request through the proxies that stayed up (steady load);
/// - the journal ends with `deploy_finished` (a killed deploy's: closed by `recover`),
///   and each server that did not end `done` has a record that says why;
/// - the case's own step really happened (`exercised`) and its outcome is the one expected.
#[allow(clippy::too_many_arguments)]
fn check(
    ctx: &Ctx,
    case: &Case,
    journal: &[Value],
    output: &str,
    exit: Option<i32>,
    load: &testfleet::LoadReport,
    pool: &testfleet::PoolReport,
    problems: &mut Vec<String>,
) {
    let fleet = ctx.fleet;
    let up: Vec<usize> = (0..fleet.proxies().len())
        .filter(|p| !case.down_proxies.contains(p))
        .collect();
    for s in fleet.servers() {
        let name = s.name();
        let mut out_on = Vec::new();
        for &p in &up {
            let proxy = &fleet.proxies()[p];
            match proxy.server_states() {
                Ok(states) => {
                    let st = states.iter().find(|x| x.name == name);
                    if !st.is_some_and(|x| x.in_pool()) {
                        out_on.push(format!("{} {:?}", proxy.name(), st.map(|x| &x.state)));
                    }
                }
                Err(e) => problems.push(format!("{} does not answer: {e}", proxy.name())),
            }
        }
        let reported = output
            .lines()
            .any(|l| l.starts_with(&format!("left out of the pool: {name}")));
        if out_on.is_empty() {
            if let Err(e) = s.served_stamp() {
                problems.push(format!("{name} is in the pool but not whole: {e}"));
            }
        } else if !reported {
            problems.push(format!(
                "{name} is out of the pool ({}) and not reported as left out",
                out_on.join(", ")
            ));
        }
    }
    if pool.max_out > MAX_UNAVAILABLE {
        problems.push(format!(
            "{} servers out of the pool at once ({:?}), max_unavailable {MAX_UNAVAILABLE}",
            pool.max_out, pool.max_out_servers
        ));
    }
    let failed: u64 = up
        .iter()
        .map(|&p| load.failed_via(fleet.proxies()[p].name()))
        .sum();
    if failed > 0 {
        let firsts: Vec<String> = load
            .failures
            .iter()
            .take(3)
            .map(|f| format!("{f:?}"))
            .collect();
        problems.push(format!(
            "{failed} failed requests through the proxies that stayed up: {}",
            firsts.join("; ")
        ));
    }
    if load.requests == 0 {
        problems.push("the load did not run".into());
    }
    // Every journal (a killed deploy's, closed by recover, and recover's own) ends.
    for path in journal_files(fleet) {
        match read_journal(&path).last() {
            Some(l) if l["event"] == "deploy_finished" => {}
            other => problems.push(format!(
                "{} does not end with deploy_finished: {other:?}",
                path.display()
            )),
        }
    }
    for s in fleet.servers() {
        let name = s.name();
        let Some(state) = crate::support::final_state(journal, name) else {
            continue;
        };
        if BAD.contains(&state.as_str()) && state != "skipped" {
            let explained = journal.iter().any(|r| {
                r["server"] == name
                    && ((r["event"] == "server_state" && r["detail"].is_string())
                        || r["ok"] == false)
            });
            if !explained {
                problems.push(format!("{name} ended {state} with no record saying why"));
            }
        }
    }
    if let Err(e) = (case.exercised)(journal) {
        problems.push(format!("not exercised: {e}"));
    }
    if let Some(want) = case.expect.exit {
        if exit != Some(want) {
            problems.push(format!("exit {exit:?}, expected {want}"));
        }
    }
    for (server, want) in &case.expect.states {
        let got = crate::support::final_state(journal, server);
        if got.as_deref() != Some(*want) {
            problems.push(format!("{server} ended {got:?}, expected {want}"));
        }
    }
}

/// Runs every case in order on one fleet; prints a table; panics listing every case
/// whose checks failed (each with its journal and output).
pub(crate) fn run_matrix(fleet: &Fleet, layout: Layout, cases: &[Case]) {
    let ctx = Ctx::new(fleet, layout);
    let started = Instant::now();
    let mut results = Vec::new();
    let mut baseline = 0;
    // `MWDEPLOY_FAULT_CASES=a,b` runs only those cases (and the baseline), for debugging.
    let only: Option<Vec<String>> = std::env::var("MWDEPLOY_FAULT_CASES")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    for (n, case) in cases.iter().enumerate() {
        if n > 0
            && only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|x| x == case.name))
        {
            continue;
        }
        let o = run_case(&ctx, n, case, baseline);
        // Each case's output and journal, kept for reading after the run.
        let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault-matrix");
        let _ = std::fs::create_dir_all(&logs);
        let mut log = format!("{}\n{}\n--- journal:\n", o.problems.join("\n"), o.output);
        for r in &o.journal {
            log.push_str(&format!("{r}\n"));
        }
        let _ = std::fs::write(logs.join(format!("{}.log", o.name.replace('/', "-"))), log);
        if n == 0 {
            // The first case is a clean deploy: its journal sizes the kill points.
            baseline = o.records;
        }
        eprintln!(
            "case {:<34} {:>5.1}s exit {:?} {:?} records {}{}",
            o.name,
            o.secs,
            o.exit,
            o.states,
            o.records,
            if o.problems.is_empty() {
                ""
            } else {
                "  FAILED"
            }
        );
        results.push(o);
    }
    restore(&ctx);
    eprintln!(
        "{layout}: {} cases in {:.1}s (seed {})",
        results.len(),
        started.elapsed().as_secs_f64(),
        seed()
    );
    let failed: Vec<&Outcome> = results.iter().filter(|o| !o.problems.is_empty()).collect();
    if !failed.is_empty() {
        let mut msg = format!(
            "{} of {} cases failed (MWDEPLOY_FAULT_SEED={}):\n",
            failed.len(),
            results.len(),
            seed()
        );
        for o in &failed {
            msg.push_str(&format!(
                "\n=== {} ({}): {}\n--- output:\n{}\n--- journal:\n",
                o.name,
                o.step,
                o.problems.join("\n    "),
                o.output
            ));
            for r in &o.journal {
                msg.push_str(&format!("{r}\n"));
            }
        }
        panic!("{msg}");
    }
}
