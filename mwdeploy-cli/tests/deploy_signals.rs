//! The `mwdeploy` process against the test fleet: an in-place `--rsync --rollout` deploy
//! without a failed request, and the signals a running deploy takes (SIGINT stops it and
//! puts every server back, SIGHUP is ignored).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

mod support;
use support::*;
use testfleet::{write_stamp, Fleet, Layout, LoadOptions, PoolState};

/// States a server is in after its depool intent, while its deploy is under way.
const IN_FLIGHT: [&str; 4] = ["depooling", "transferring", "activating", "hooks"];

/// Every production server's `post_activate` also sleeps 2 s, so a deploy can be caught
/// with a server out of the pool.
fn slow_hooks(y: String) -> String {
    let marker = "\n      post_activate:\n";
    assert!(y.contains(marker), "server hooks in the config:\n{y}");
    y.replace(marker, &format!("{marker}        - [\"sleep\", \"2\"]\n"))
}

fn server_names(fleet: &Fleet) -> Vec<String> {
    fleet
        .servers()
        .iter()
        .map(|s| s.name().to_string())
        .collect()
}

/// What a deploy that got `signal` while its first server was in flight printed and
/// returned.
struct Signalled {
    /// Every JSON line on stdout.
    lines: Vec<Value>,
    /// How many of them came before the signal.
    before: usize,
    code: Option<i32>,
    stderr: String,
}

impl Signalled {
    fn context(&self) -> String {
        let out: Vec<String> = self.lines.iter().map(Value::to_string).collect();
        format!("stdout:\n{}\nstderr:\n{}", out.join("\n"), self.stderr)
    }
}

/// Kills `child` (by its pid) unless `done` says it ended within `limit`: a hung deploy
/// fails the test instead of hanging it.
fn watchdog(child: &Child, limit: Duration) -> mpsc::Sender<()> {
    let pid = child.id().to_string();
    let (done, wait) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    done
}

/// Runs `--rsync --rollout --json`, sends `signal` once the first server is in flight
/// (after its depool intent), and reads the rest to the end.
fn deploy_with_signal(fleet: &Fleet, config: &Path, signal: &str) -> Signalled {
    let stderr_path = fleet.root().join(format!("mwdeploy-{signal}.stderr"));
    let mut child = Command::new(BIN)
        .arg("-C")
        .arg(config)
        .args(["--rsync", "--rollout", "--json", "-m", "signal test"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .env_remove("MWDEPLOY_CONFIG")
        .spawn()
        .expect("mwdeploy starts");
    let done = watchdog(&child, Duration::from_secs(90));
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut sent = false;
    let mut before = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let record = parse(line.trim_end());
        let in_flight =
            record["event"] == "server_state" && IN_FLIGHT.iter().any(|s| record["state"] == *s);
        lines.push(record);
        if in_flight && !sent {
            let pid = child.id().to_string();
            let kill = Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap();
            assert!(kill.success(), "kill -{signal} {pid}");
            sent = true;
            before = lines.len();
        }
    }
    let status = child.wait().unwrap();
    let _ = done.send(());
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let signalled = Signalled {
        before,
        lines,
        code: status.code(),
        stderr,
    };
    assert!(
        sent,
        "no server was seen in flight: {}",
        signalled.context()
    );
    signalled
}

#[test]
fn an_inplace_rolling_deploy_reaches_every_server_one_at_a_time_without_a_failed_request() {
    let fleet = fleet(3, Layout::Inplace, 120);
    let c = config(&fleet, Layout::Inplace, |y| y);
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let load = fleet.start_load(LoadOptions::default()).unwrap();
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));

    let o = mwdeploy(&c, &["--rsync", "--rollout", "--no-tui"]);
    let (load, pool) = (load.stop(), pool.stop());
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.ends_with("✓ 3 succeeded   ✗ 0 failed   – 0 skipped/rolled back\n"),
        "{out}"
    );
    for (server, stamp) in fleet.served_stamps() {
        assert_eq!(stamp.unwrap(), "v2", "{server}\n{out}");
    }
    let lines = journal_of(&fleet);
    for s in server_names(&fleet) {
        assert_eq!(final_state(&lines, &s).as_deref(), Some("done"), "{s}");
        assert!(
            lines.iter().any(|l| l["event"] == "server_state"
                && l["server"] == s.as_str()
                && l["state"] == "transferring"),
            "{s} was copied in place: {out}"
        );
    }
    assert!(pool.max_out >= 1, "servers were depooled: {pool:?}");
    assert!(pool.max_out <= 1, "max_unavailable 1: {pool:?}");
    assert!(load.requests > 0, "the load ran: {load:?}");
    assert_eq!(load.failed, 0, "{:?}", load.failures);
}

#[test]
fn sigint_mid_deploy_stops_it_puts_every_server_back_and_exits_130() {
    let fleet = fleet(3, Layout::Releases, 120);
    let c = config(&fleet, Layout::Releases, slow_hooks);
    write_stamp(fleet.staging().path(), "v2").unwrap();

    let run = deploy_with_signal(&fleet, &c, "INT");
    let ctx = run.context();
    assert_eq!(run.code, Some(130), "{ctx}");
    let lines = &run.lines;
    assert_eq!(lines.last().unwrap()["event"], "deploy_finished", "{ctx}");
    assert_eq!(lines.last().unwrap()["exit_code"], 130, "{ctx}");
    let stopping = lines
        .iter()
        .position(|l| l["event"] == "stopping")
        .unwrap_or_else(|| panic!("a stopping event: {ctx}"));
    assert_eq!(lines[stopping]["reason"], "interrupted", "{ctx}");
    assert!(stopping >= run.before, "stopped after the signal: {ctx}");
    // stdout is the journal.
    assert_eq!(&journal_of(&fleet), lines);

    // A server that had not been depooled when the deploy stopped never starts.
    let mut skipped = 0;
    for s in server_names(&fleet) {
        let started = lines[..stopping].iter().any(|l| {
            l["event"] == "server_state"
                && l["server"] == s.as_str()
                && IN_FLIGHT.iter().any(|st| l["state"] == *st)
        });
        let end = final_state(lines, &s);
        if started {
            assert!(
                matches!(end.as_deref(), Some("done" | "rolled_back")),
                "{s} finished or was rolled back: {end:?}\n{ctx}"
            );
        } else {
            assert_eq!(end.as_deref(), Some("skipped"), "{s}\n{ctx}");
            skipped += 1;
        }
    }
    assert!(
        skipped >= 1,
        "the signal came before the last server: {ctx}"
    );

    let states = fleet.proxies()[0].server_states().unwrap();
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(
        states.iter().all(|s| s.state == PoolState::Up),
        "every server back UP: {states:?}\n{ctx}"
    );
    // The lock is released.
    let again = mwdeploy(&c, &["--rsync", "--dry-run"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
}

#[test]
fn sighup_mid_deploy_is_ignored_and_the_deploy_finishes() {
    let fleet = fleet(3, Layout::Releases, 120);
    let c = config(&fleet, Layout::Releases, slow_hooks);
    write_stamp(fleet.staging().path(), "v3").unwrap();

    let run = deploy_with_signal(&fleet, &c, "HUP");
    let ctx = run.context();
    assert_eq!(run.code, Some(0), "{ctx}");
    let lines = &run.lines;
    let end = lines.last().unwrap();
    assert_eq!(end["event"], "deploy_finished", "{ctx}");
    assert_eq!(end["exit_code"], 0, "{ctx}");
    assert_eq!(end["summary"]["succeeded"], 3, "{ctx}");
    assert!(
        !lines.iter().any(|l| l["event"] == "stopping"),
        "no stopping event: {ctx}"
    );
    assert!(
        run.before < lines.len(),
        "the deploy went on after the signal: {ctx}"
    );
    for s in server_names(&fleet) {
        assert_eq!(
            final_state(lines, &s).as_deref(),
            Some("done"),
            "{s}\n{ctx}"
        );
    }
    for (server, stamp) in fleet.served_stamps() {
        assert_eq!(stamp.unwrap(), "v3", "{server}\n{ctx}");
    }
    let states = fleet.proxies()[0].server_states().unwrap();
    assert!(
        states.iter().all(|s| s.state == PoolState::Up),
        "{states:?}"
    );
}
