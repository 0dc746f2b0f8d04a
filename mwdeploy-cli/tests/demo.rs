//! `mwdeploy demo`, run as a process without a terminal: a real-time deploy to the
//! simulated fleet, its rollback and prompt with `--fail`, its usage errors and SIGINT.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mwdeploy");

/// Far beyond what a demo of 3 servers takes: only a hung demo reaches it.
const HANG: Duration = Duration::from_secs(120);

/// `mwdeploy demo ARGS` started, stdin null (no terminal), stdout and stderr piped.
fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("demo")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the mwdeploy binary runs")
}

/// Kills `child` if it still runs after [`HANG`]; send on the sender once it ended.
fn watchdog(child: &Child) -> mpsc::Sender<()> {
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HANG) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    tx
}

struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn context(&self) -> String {
        format!(
            "status {:?}\n--- stdout\n{}--- stderr\n{}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }
}

/// Runs the demo to its end.
fn demo(args: &[&str]) -> Ran {
    let child = spawn(args);
    let done = watchdog(&child);
    let out = child.wait_with_output().expect("the demo ends");
    let _ = done.send(());
    Ran {
        status: out.status,
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The plain lines about `server`, as `(state, detail)`.
fn server_lines<'a>(stdout: &'a str, server: &str) -> Vec<(&'a str, &'a str)> {
    stdout
        .lines()
        .filter_map(|l| {
            // "      3.2s  mw1       done"
            let rest = l.trim_start().split_once("s  ")?.1;
            let (name, rest) = rest.split_once(' ')?;
            (name == server).then(|| {
                let rest = rest.trim_start();
                rest.split_once("  ")
                    .map(|(s, d)| (s.trim(), d.trim()))
                    .unwrap_or((rest.trim(), ""))
            })
        })
        .collect()
}

#[test]
fn a_demo_deploys_every_server_one_state_line_at_a_time_and_exits_0() {
    let r = demo(&["--servers", "2"]);
    assert_eq!(r.status.code(), Some(0), "{}", r.context());
    assert!(
        r.stdout.starts_with(
            "mwdeploy demo: a simulated fleet of 2 servers (mw1 .. mw2), releases layout; \
             nothing real is touched.\n"
        ),
        "{}",
        r.context()
    );
    for server in ["mw1", "mw2"] {
        let states: Vec<&str> = server_lines(&r.stdout, server)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(
            states,
            [
                "copying",
                "depooling",
                "activating",
                "canary",
                "repooling",
                "done"
            ],
            "{server}: {}",
            r.context()
        );
    }
    // One server at a time: mw2 starts after mw1 is done.
    let at = |line: &str| r.stdout.find(line).unwrap_or_else(|| panic!("{line}"));
    assert!(
        at("mw1       done") < at("mw2       copying"),
        "{}",
        r.context()
    );
    let last = r.stdout.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "✓ 2 succeeded   ✗ 0 failed   – 0 skipped/rolled back",
        "{}",
        r.context()
    );
    assert!(r.stderr.is_empty(), "{}", r.context());
}

#[test]
fn a_failing_canary_is_rolled_back_and_the_prompt_answered_no_without_a_terminal() {
    let r = demo(&["--servers", "3", "--fail", "mw2"]);
    assert_eq!(r.status.code(), Some(1), "{}", r.context());
    let mw2 = server_lines(&r.stdout, "mw2");
    assert!(
        mw2.iter()
            .any(|(s, d)| *s == "canary" && d.starts_with("attempt 1 failed")),
        "{}",
        r.context()
    );
    assert!(
        mw2.iter().any(|(s, _)| *s == "rolling_back"),
        "{}",
        r.context()
    );
    assert_eq!(
        mw2.last().map(|(s, _)| *s),
        Some("rolled_back"),
        "{}",
        r.context()
    );
    assert!(r.stdout.contains("  prompt: "), "{}", r.context());
    assert!(
        r.stdout.contains("  prompt answered no: "),
        "{}",
        r.context()
    );
    // The answer stops the deploy: mw3 never starts.
    let mw3 = server_lines(&r.stdout, "mw3");
    assert_eq!(mw3.len(), 1, "{}", r.context());
    assert_eq!(mw3[0].0, "skipped", "{}", r.context());
    assert_eq!(
        server_lines(&r.stdout, "mw1").last().map(|(s, _)| *s),
        Some("done")
    );
    assert!(
        r.stdout
            .contains("✓ 1 succeeded   ✗ 0 failed   – 2 skipped/rolled back\n"),
        "{}",
        r.context()
    );
    // Without a terminal nothing is asked on stderr.
    assert!(!r.stderr.contains("[y/N]"), "{}", r.context());
}

#[test]
fn usage_errors_exit_2_before_anything_runs() {
    let r = demo(&["--servers", "3", "--fail", "mw7"]);
    assert_eq!(r.status.code(), Some(2), "{}", r.context());
    assert!(r.stdout.is_empty(), "{}", r.context());
    assert!(
        r.stderr.contains(
            "--fail mw7: the demo fleet has no such server; its servers are mw1, mw2, mw3"
        ),
        "{}",
        r.context()
    );

    for servers in ["0", "51"] {
        let r = demo(&["--servers", servers]);
        assert_eq!(r.status.code(), Some(2), "{}", r.context());
        assert!(r.stdout.is_empty(), "{}", r.context());
        assert!(r.stderr.contains("--servers"), "{}", r.context());
    }
}

#[test]
fn sigint_stops_the_demo_gracefully_with_exit_130() {
    let mut child = spawn(&["--servers", "3"]);
    let done = watchdog(&child);
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut seen = String::new();
    // Interrupt once the second server is on its way.
    loop {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("stdout reads");
        assert!(n > 0, "the demo ended before mw2 started:\n{seen}");
        seen += &line;
        if line.contains("mw2       copying") {
            break;
        }
    }
    let pid = child.id().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    stdout.read_to_string(&mut seen).expect("stdout reads");
    let status = child.wait().expect("the demo ends");
    let _ = done.send(());
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("stopping (interrupted)"), "{seen}");
    assert_eq!(
        server_lines(&seen, "mw3").first().map(|(s, _)| *s),
        Some("skipped"),
        "{seen}"
    );
    assert!(seen.contains("✓ 1 succeeded"), "{seen}");
}
