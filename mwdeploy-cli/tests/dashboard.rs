//! The dashboard end to end: the real binary in a tmux pane (a real terminal), driven
//! with send-keys and read with capture-pane, against the test fleet. A failed canary
//! answered with Esc stops the deploy with nothing left out; Ctrl+X then y stops it
//! gracefully; a viewer in a second pane follows a deploy to its end.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use mwdeploy_runtime::lock::{DeployLock, LockStatus};
use support::*;
use testfleet::{write_stamp, Fleet, Layout};

/// One terminal test at a time: each drives a whole deploy, and overlapping ones only
/// slow each other down on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tmux session running one command in a 100x30 terminal; killed on drop.
struct Pane {
    name: String,
    /// Where the command's exit status is written when it ends.
    status: std::path::PathBuf,
}

impl Pane {
    /// Starts `argv` in a new detached session. A constant `sh -c` script runs it (as
    /// positional arguments, never spliced into the script) and writes its exit status
    /// to a file: tmux's own record of it is not reliable when the pane closes.
    fn start(name: &str, argv: &[&str]) -> Pane {
        let name = format!("mwdeploy-{}-{name}", std::process::id());
        let status = std::env::temp_dir().join(format!("{name}.status"));
        let _ = std::fs::remove_file(&status);
        let status_arg = status.to_str().unwrap().to_string();
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            &name,
            "-x",
            "100",
            "-y",
            "30",
            "-e",
            "TERM=xterm-256color",
            "-e",
            "NO_COLOR=1",
            "sh",
            "-c",
            "\"$@\"; echo $? > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"; sleep 600",
            &status_arg,
        ];
        args.extend_from_slice(argv);
        let o = Command::new("tmux")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("tmux (scripts/install-deps.sh): {e}"));
        assert!(o.status.success(), "tmux {args:?}: {}", text(&o.stderr));
        Pane { name, status }
    }

    /// The screen as text.
    fn screen(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        text(&o.stdout)
    }

    /// Waits (up to 90 s) until the screen holds `what`; returns the screen.
    fn wait_for(&self, what: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "waited for {what:?}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.name.as_str()];
        args.extend_from_slice(keys);
        let o = Command::new("tmux").args(&args).output().unwrap();
        assert!(o.status.success(), "send-keys {keys:?}");
    }

    /// The command's exit status once it ended (waits up to 90 s).
    fn exit_status(&self) -> i32 {
        let start = Instant::now();
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.status) {
                return text.trim().parse().unwrap_or(-1);
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the command did not end; the screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output();
        let _ = std::fs::remove_file(&self.status);
    }
}

fn all_pooled(fleet: &Fleet) -> bool {
    fleet
        .proxies()
        .iter()
        .all(|p| p.server_states().unwrap().iter().all(|s| s.in_pool()))
}

fn deploy_argv<'a>(config: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![BIN, "-C", config.to_str().unwrap(), "--rsync", "--rollout"];
    v.extend_from_slice(extra);
    v
}

#[test]
fn esc_at_the_failure_prompt_stops_the_deploy_with_nothing_left_out() {
    let _serial = serial();
    let fleet = fleet(3, Layout::Releases, 40);
    // mw2's page answers 500 while it serves the release stamped v2 (its post_activate
    // hook sets the fleet's page fault then), and is healthy again after the rollback.
    let c = config(&fleet, Layout::Releases, mw2_fails_on(&fleet, "v2"));
    write_stamp(fleet.staging().path(), "v2").unwrap();

    let pane = Pane::start("esc", &deploy_argv(&c, &[]));
    let screen = pane.wait_for("Canary failed on mw2");
    assert!(screen.contains("rolled back"), "{screen}");
    assert!(screen.contains("[Y] Yes, continue"), "{screen}");
    pane.keys(&["Escape"]);
    pane.wait_for("press any key to close");
    pane.keys(&["q"]);
    assert_eq!(pane.exit_status(), 1, "{}", pane.screen());
    assert!(all_pooled(&fleet));
    let lines = journal_of(&fleet);
    assert_eq!(final_state(&lines, "mw2").as_deref(), Some("rolled_back"));
    assert_eq!(final_state(&lines, "mw3").as_deref(), Some("skipped"));
    assert!(lines
        .iter()
        .any(|l| l["event"] == "prompt" && l["answer"] == "no"));
}

#[test]
fn ctrl_x_stops_gracefully_and_a_viewer_follows_from_another_terminal() {
    let _serial = serial();
    let fleet = fleet(3, Layout::Releases, 40);
    let slow = |y: String| {
        y.replace(
            "\n      post_activate:\n",
            "\n      post_activate:\n        - [\"sleep\", \"2\"]\n",
        )
    };
    let c = config(&fleet, Layout::Releases, slow);
    write_stamp(fleet.staging().path(), "v2").unwrap();

    // A viewer in a second terminal follows the whole deploy.
    let deploy = Pane::start("deploy", &deploy_argv(&c, &["--exit-when-done"]));
    deploy.wait_for("mw1");
    let viewer = Pane::start("viewer", &[BIN, "-C", c.to_str().unwrap()]);
    // Its first frame can come before the first journal read: wait for the servers.
    let screen = viewer.wait_for("mw3");
    assert!(screen.contains("viewer"), "{screen}");
    viewer.wait_for("3 succeeded");
    viewer.keys(&["q"]);
    assert_eq!(viewer.exit_status(), 0, "{}", viewer.screen());
    assert_eq!(deploy.exit_status(), 0, "{}", deploy.screen());

    // Ctrl+X mid-deploy, then y: running servers finish, nothing new starts.
    write_stamp(fleet.staging().path(), "v3").unwrap();
    let pane = Pane::start("stop", &deploy_argv(&c, &[]));
    pane.wait_for("hooks");
    pane.keys(&["C-x"]);
    pane.wait_for("Stop the deploy?");
    pane.keys(&["y"]);
    pane.wait_for("press any key to close");
    pane.keys(&["q"]);
    assert_eq!(pane.exit_status(), 1, "{}", pane.screen());
    assert!(all_pooled(&fleet));
    let journal = journals(&fleet);
    assert!(journal.contains("\"event\":\"stopping\""), "{journal}");
    assert!(journal.contains("\"state\":\"skipped\""), "{journal}");
}

#[test]
fn ctrl_r_depools_and_repools_a_done_server_through_the_running_deploy() {
    let _serial = serial();
    let fleet = fleet(4, Layout::Releases, 40);
    let c = config(&fleet, Layout::Releases, |y| {
        y.replace(
            "\n      post_activate:\n",
            "\n      post_activate:\n        - [\"sleep\", \"3\"]\n",
        )
        .replace("\nrollout:\n", "\nrollout:\n  max_unavailable: 2\n")
    });
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let state = |name: &str| {
        fleet.proxies()[0]
            .server_states()
            .unwrap()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .in_pool()
    };

    let pane = Pane::start("pool", &deploy_argv(&c, &["--exit-when-done"]));
    // mw1 (the selected row) is done while mw2 is deployed.
    pane.wait_for("mw1    ✓ done");
    pane.keys(&["C-r"]);
    pane.wait_for("[D] Depool");
    pane.keys(&["d"]);
    let screen = pane.wait_for("pool: ");
    assert!(
        screen.contains("mw1 taken out of the pool by the operator"),
        "{screen}"
    );
    assert!(!state("mw1"), "{}", pane.screen());
    pane.keys(&["C-r"]);
    pane.wait_for("[R] Repool");
    pane.keys(&["r"]);
    pane.wait_for("mw1 put back into the pool by the operator");
    assert!(state("mw1"), "{}", pane.screen());
    assert_eq!(pane.exit_status(), 0, "{}", pane.screen());
    assert!(all_pooled(&fleet));
    let journal = journals(&fleet);
    assert_eq!(journal.matches(r#""server":"mw1","proxy":null,"backend":null,"action":"depool","phase":"result","ok":true"#).count(), 2, "{journal}");
}

/// The pid of the process holding the deploy lock of `fleet`'s state dir.
fn lock_holder(fleet: &Fleet) -> Option<u32> {
    match DeployLock::status(&fleet.state_dir()) {
        Ok(LockStatus::Held(Some(h))) => Some(h.pid),
        _ => None,
    }
}

/// `pid`'s CPU time (user + system, in clock ticks), or `None` once it exited (gone, or
/// a zombie nobody reaped).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The journals of `fleet` so far (nothing before the first is created).
fn journals_so_far(fleet: &Fleet) -> String {
    let dir = mwdeploy_runtime::journal::dir(&fleet.state_dir());
    if !dir.exists() {
        return String::new();
    }
    journals(fleet)
}

/// Waits (up to 90 s) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "waited for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_deploy_whose_terminal_went_away_finishes_without_spinning() {
    let _serial = serial();
    let fleet = fleet(3, Layout::Releases, 40);
    let c = config(&fleet, Layout::Releases, |y| {
        y.replace(
            "\n      post_activate:\n",
            "\n      post_activate:\n        - [\"sleep\", \"3\"]\n",
        )
    });
    write_stamp(fleet.staging().path(), "v2").unwrap();

    let pane = Pane::start("hangup", &deploy_argv(&c, &[]));
    wait_until("mw1 in its hooks", || {
        journals_so_far(&fleet).contains(r#""server":"mw1","state":"hooks""#)
    });
    let pid = lock_holder(&fleet).expect("the deploy holds the lock");
    // The terminal goes away: tmux closes the pane's pty.
    drop(pane);

    // The rest of the deploy (mw2 and mw3, each at least 3 s) runs without its terminal;
    // a reader spinning on the dead tty would take a whole core.
    std::thread::sleep(Duration::from_millis(500));
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(2));
    let (t1, c1) = (Instant::now(), cpu_ticks(pid));
    let (Some(c0), Some(c1)) = (c0, c1) else {
        panic!(
            "the deploy ended right after its terminal went away:\n{}",
            journals(&fleet)
        );
    };
    // Clock ticks are 1/100 s on Linux.
    let busy = (c1 - c0) as f64 / 100.0 / (t1 - t0).as_secs_f64();
    assert!(
        busy < 0.5,
        "the deploy used {:.0}% of a core without its terminal",
        busy * 100.0
    );

    wait_until("the deploy's end in its journal", || {
        journals(&fleet).contains(r#""event":"deploy_finished""#)
    });
    wait_until("the deploy's process to exit", || cpu_ticks(pid).is_none());
    let lines = journal_of(&fleet);
    for s in ["mw1", "mw2", "mw3"] {
        assert_eq!(
            final_state(&lines, s).as_deref(),
            Some("done"),
            "{s}: {}",
            journals(&fleet)
        );
    }
    let end = lines.last().unwrap();
    assert_eq!(end["event"], "deploy_finished", "{end}");
    assert_eq!(end["exit_code"], 0, "{end}");
    assert!(all_pooled(&fleet));
    assert_eq!(stamps(&fleet), ["v2", "v2", "v2"]);
}

#[test]
fn the_viewers_pool_menu_is_refused_during_a_deploy_and_works_after_it() {
    let _serial = serial();
    let fleet = fleet_behind(3, 2, Layout::Releases, 40);
    let c = config(&fleet, Layout::Releases, |y| {
        y.replace(
            "\n      post_activate:\n",
            "\n      post_activate:\n        - [\"sleep\", \"2\"]\n",
        )
    });
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let mw1 = |fleet: &Fleet| -> Vec<bool> {
        fleet
            .proxies()
            .iter()
            .map(|p| {
                let states = p.server_states().unwrap();
                states.iter().find(|s| s.name == "mw1").unwrap().in_pool()
            })
            .collect()
    };

    // A deploy without a terminal holds the lock while the viewer asks.
    let mut deploy = Command::new(BIN)
        .args(["-C", c.to_str().unwrap(), "--rsync", "--rollout"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the deploy's first server", || {
        journals_so_far(&fleet).contains(r#""event":"server_state""#)
    });
    let viewer = Pane::start("viewer-pool", &[BIN, "-C", c.to_str().unwrap()]);
    // Its servers come with the first journal read, after its first frame.
    viewer.wait_for("mw3");
    viewer.keys(&["C-r"]);
    viewer.wait_for("[D] Depool");
    viewer.keys(&["d"]);
    let screen = viewer.wait_for("pool: refused while a deploy runs");
    assert!(
        screen.contains("use Ctrl+R on its own dashboard"),
        "{screen}"
    );
    assert_eq!(deploy.wait().unwrap().code(), Some(0));
    let lines = journal_of(&fleet);
    for s in ["mw1", "mw2", "mw3"] {
        assert_eq!(final_state(&lines, s).as_deref(), Some("done"), "{s}");
    }
    assert!(all_pooled(&fleet));

    // No deploy now: the same menu depools mw1 (the selected row) on every proxy, and
    // repools it after its canary, each as its own journaled run.
    viewer.wait_for("3 succeeded");
    viewer.keys(&["C-r"]);
    viewer.wait_for("[D] Depool");
    viewer.keys(&["d"]);
    viewer.wait_for("mw1: depool: confirmed");
    assert_eq!(mw1(&fleet), [false, false], "{}", viewer.screen());
    for p in fleet.proxies() {
        let states = p.server_states().unwrap();
        let s = states.iter().find(|s| s.name == "mw1").unwrap();
        assert_eq!(s.state, testfleet::PoolState::Maint);
    }
    viewer.keys(&["C-r"]);
    viewer.wait_for("[R] Repool");
    viewer.keys(&["r"]);
    viewer.wait_for("mw1: repool: confirmed");
    assert_eq!(mw1(&fleet), [true, true], "{}", viewer.screen());
    assert_eq!(stamps(&fleet), ["v2", "v2", "v2"]);
    viewer.keys(&["q"]);
    assert_eq!(viewer.exit_status(), 0, "{}", viewer.screen());
    let journal = journals(&fleet);
    assert!(
        journal.contains(r#""event":"canary","server":"mw1""#),
        "{journal}"
    );
    assert_eq!(
        journal.matches(r#""event":"deploy_finished""#).count(),
        3,
        "the deploy and two pool runs: {journal}"
    );
}
