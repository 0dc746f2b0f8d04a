//! `kill -9` of a deploy at several points, then `mwdeploy recover`, run as processes
//! against the test fleet: each case ends with every server back in the pool, serving
//! one whole release; a second `recover` finds nothing to do.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

mod support;
use support::*;
use testfleet::{write_stamp, Fleet, Layout, INITIAL_STAMP};

/// Runs `--rsync --rollout --json` and kills it (SIGKILL) at the first record `at`
/// accepts; returns the records seen.
fn deploy_killed(config: &Path, at: impl Fn(&Value) -> bool) -> Vec<Value> {
    let child = Command::new(BIN)
        .arg("-C")
        .arg(config)
        .args(["--rsync", "--rollout", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env_remove("MWDEPLOY_CONFIG")
        .spawn()
        .expect("mwdeploy starts");
    // Killed and reaped however this function ends.
    let mut child = Killed(child);
    let mut reader = BufReader::new(child.0.stdout.take().unwrap());
    let mut seen = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("the deploy ended before the kill point: {seen:?}");
        }
        let record = parse(line.trim_end());
        let hit = at(&record);
        seen.push(record);
        if hit {
            return seen;
        }
    }
}

/// A child process that gets SIGKILL and is reaped when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every server in the pool of every proxy.
fn all_pooled(fleet: &Fleet) -> bool {
    fleet
        .proxies()
        .iter()
        .all(|p| p.server_states().unwrap().iter().all(|s| s.in_pool()))
}

/// Runs `recover` and checks the fleet is whole; then a second run does nothing.
fn recover_and_check(fleet: &Fleet, config: &Path, case: &str, stamps_ok: &[&str]) {
    let o = mwdeploy(config, &["recover"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{case}: stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(all_pooled(fleet), "{case}: {out}");
    for s in stamps(fleet) {
        assert!(stamps_ok.contains(&s.as_str()), "{case}: {s} {out}");
    }
    let again = mwdeploy(config, &["recover"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{case}: {}",
        text(&again.stderr)
    );
    assert!(
        text(&again.stdout).contains("nothing to recover"),
        "{case}: {}",
        text(&again.stdout)
    );
    // The lock is free again: a deploy may start.
    let dry = mwdeploy(config, &["--rsync", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{case}: {}", text(&dry.stderr));
}

fn is_state(r: &Value, server: &str, state: &str) -> bool {
    r["event"] == "server_state" && r["server"] == server && r["state"] == state
}

#[test]
fn in_place_a_deploy_killed_before_a_depool_or_mid_copy_is_recovered() {
    let fleet = fleet(2, Layout::Inplace, 400);
    let c = config(&fleet, Layout::Inplace, |y| y);

    // Before any depool: nothing is out; recover closes the journal.
    write_stamp(fleet.staging().path(), "v2").unwrap();
    deploy_killed(&c, |r| {
        r["event"] == "prep_step" && r["step"] == "staging_sync"
    });
    assert!(all_pooled(&fleet));
    let o = mwdeploy(&c, &["recover"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("no server was left out of the pool"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(stamps(&fleet), [INITIAL_STAMP, INITIAL_STAMP]);

    // Between the depool and the end of the copy into the live tree.
    write_stamp(fleet.staging().path(), "v3").unwrap();
    let seen = deploy_killed(&c, |r| is_state(r, "mw1", "transferring"));
    assert!(!all_pooled(&fleet), "mw1 is out: {seen:?}");
    recover_and_check(&fleet, &c, "mid-copy", &["v3", INITIAL_STAMP]);
    // The cut copy was finished from staging.
    assert_eq!(stamps(&fleet)[0], "v3");
}

#[test]
fn release_layout_a_deploy_killed_after_activate_is_recovered() {
    let fleet = fleet(2, Layout::Releases, 100);
    let c = config(&fleet, Layout::Releases, |y| y);
    write_stamp(fleet.staging().path(), "v2").unwrap();

    // After the switch, before the canary: the live release is whole; it is canaried
    // and repooled.
    let seen = deploy_killed(&c, |r| is_state(r, "mw1", "hooks"));
    assert!(!all_pooled(&fleet), "mw1 is out: {seen:?}");
    recover_and_check(&fleet, &c, "after activate", &["v2", INITIAL_STAMP]);
    let lines = journals(&fleet);
    assert!(lines.contains("took over mw1"), "{lines}");

    // Between the depool and the switch.
    write_stamp(fleet.staging().path(), "v3").unwrap();
    deploy_killed(&c, |r| {
        r["event"] == "pool" && r["server"] == "mw1" && r["phase"] == "result"
    });
    recover_and_check(&fleet, &c, "after depool", &["v3", "v2", INITIAL_STAMP]);
}
