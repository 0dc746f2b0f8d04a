//! A real `--rsync` deploy, run as the `mwdeploy` process against the test fleet (HAProxy,
//! nginx + php-fpm servers with their own sshd, release layout): the new code reaches
//! every server without a failed request, a failed canary is rolled back and repooled,
//! and a held lock refuses the deploy.

use std::time::Duration;

use mwdeploy_runtime::journal;
use mwdeploy_runtime::lock::{DeployLock, Holder};
use serde_json::Value;

mod support;
use support::*;
use testfleet::{write_stamp, Layout, LoadOptions, INITIAL_STAMP};

/// Every line of `out` as JSON; the last one must be `deploy_finished`.
fn json_lines(out: &str) -> Vec<Value> {
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let last = lines.last().expect("at least one JSON line");
    assert_eq!(last["event"], "deploy_finished", "{out}");
    lines
}

#[test]
fn a_rolling_rsync_deploy_reaches_every_server_without_a_failed_request() {
    let fleet = fleet(3, Layout::Releases, 120);
    let c = config(&fleet, Layout::Releases, |y| y);
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let load = fleet.start_load(LoadOptions::default()).unwrap();
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));

    let o = mwdeploy(&c, &["--rsync", "--rollout", "--json", "-m", "test deploy"]);
    let (load, pool) = (load.stop(), pool.stop());
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");

    for (server, stamp) in fleet.served_stamps() {
        assert_eq!(stamp.unwrap(), "v2", "{server}\n{out}");
    }
    assert!(load.requests > 0, "the load ran: {load:?}");
    assert_eq!(load.failed, 0, "{:?}", load.failures);
    assert!(pool.max_out >= 1, "servers were depooled: {pool:?}");
    assert!(pool.max_out <= 1, "max_unavailable 1: {pool:?}");
    // stdout is the journal, line for line.
    let lines = json_lines(&out);
    assert!(lines
        .iter()
        .all(|l| l["ts"].is_string() && l["deploy"] == lines[0]["deploy"]));
    assert_eq!(journal_of(&fleet), lines);
    let started = lines
        .iter()
        .find(|l| l["event"] == "deploy_started")
        .expect("deploy_started");
    assert_eq!(started["message"], "test deploy");
    assert!(
        lines.iter().any(|l| l["event"] == "prep_step"
            && l["step"] == "staging_sync"
            && l["status"] == "ok"),
        "{out}"
    );
    let end = lines.last().unwrap();
    assert_eq!(end["exit_code"], 0);
    assert_eq!(end["summary"]["succeeded"], 3);
    for s in ["mw1", "mw2", "mw3"] {
        assert_eq!(final_state(&lines, s).as_deref(), Some("done"), "{s}");
        // Each proxy's answer is its own record, before the server's result.
        for action in ["depool", "repool"] {
            let at = |proxy: Option<&str>| {
                lines.iter().position(|l| {
                    l["event"] == "pool"
                        && l["server"] == s
                        && l["action"] == action
                        && l["phase"] == "result"
                        && l["proxy"].as_str() == proxy
                })
            };
            let server = at(None).unwrap_or_else(|| panic!("{s} {action} result\n{out}"));
            for proxy in fleet.proxies().iter().map(|p| p.name()) {
                let p = at(Some(proxy)).unwrap_or_else(|| panic!("{s} {action} on {proxy}\n{out}"));
                assert!(
                    p < server,
                    "{s} {action}: {proxy}'s answer after the result\n{out}"
                );
                assert_eq!(lines[p]["backend"], "mediawiki", "{}", lines[p]);
                assert_eq!(lines[p]["ok"], true, "{}", lines[p]);
            }
        }
    }
    // The lock is released at the end.
    let again = mwdeploy(&c, &["--rsync", "--dry-run"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    // Without a deploy flag (and without a terminal): a summary of the latest deploy.
    let viewer = mwdeploy(&c, &[]);
    let shown = text(&viewer.stdout);
    assert_eq!(viewer.status.code(), Some(0), "{}", text(&viewer.stderr));
    assert!(
        shown.contains(&format!(
            "latest deploy: {}",
            lines[0]["deploy"].as_str().unwrap()
        )),
        "{shown}"
    );
    assert!(shown.contains("\"test deploy\""), "{shown}");
    assert!(
        shown.contains("finished") && shown.contains("✓ 3 succeeded"),
        "{shown}"
    );
}

#[test]
fn a_failed_canary_is_rolled_back_and_repooled_and_the_prompt_without_a_terminal_aborts() {
    let fleet = fleet(3, Layout::Releases, 120);
    // mw2's canary fails on the release stamped v3 and passes after the rollback.
    let c = config(&fleet, Layout::Releases, mw2_fails_on(&fleet, "v3"));
    write_stamp(fleet.staging().path(), "v3").unwrap();

    // No terminal (stdin is /dev/null): the prompt after the failure answers no.
    let o = mwdeploy(&c, &["--rsync", "--rollout", "--no-tui"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.ends_with("✓ 1 succeeded   ✗ 0 failed   – 2 skipped/rolled back\n"),
        "{out}"
    );
    assert!(out.contains("prompt answered no"), "{out}");
    let lines = journal_of(&fleet);
    assert_eq!(
        lines.last().map(|l| &l["event"]),
        Some(&Value::from("deploy_finished"))
    );
    assert_eq!(lines.last().unwrap()["exit_code"], 1);
    assert_eq!(final_state(&lines, "mw1").as_deref(), Some("done"));
    assert_eq!(
        final_state(&lines, "mw2").as_deref(),
        Some("rolled_back"),
        "{out}"
    );
    assert_eq!(final_state(&lines, "mw3").as_deref(), Some("skipped"));
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "rollback" && l["server"] == "mw2" && l["ok"] == true),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "prompt" && l["answer"] == "no"),
        "{out}"
    );

    let stamps: Vec<String> = fleet
        .served_stamps()
        .into_iter()
        .map(|(_, s)| s.unwrap())
        .collect();
    assert_eq!(stamps, ["v3", INITIAL_STAMP, INITIAL_STAMP]);
    let states = fleet.proxies()[0].server_states().unwrap();
    assert_eq!(states.len(), 3);
    assert!(states.iter().all(|s| s.in_pool()), "{states:?}");
}

#[test]
fn a_held_lock_refuses_the_deploy_and_names_its_holder() {
    let fleet = fleet(1, Layout::Releases, 120);
    let c = config(&fleet, Layout::Releases, |y| y);
    // This process holds the lock; the deploy runs in another one.
    let held = DeployLock::acquire(&fleet.state_dir(), Holder::current("hotfix by alice")).unwrap();
    let o = mwdeploy(&c, &["--rsync", "--rollout", "--no-tui"]);
    drop(held);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("held by"), "{err}");
    assert!(err.contains("hotfix by alice"), "{err}");
    assert!(
        err.contains(&format!("(pid {})", std::process::id())),
        "{err}"
    );
    assert!(text(&o.stdout).is_empty());
    assert!(
        !journal::dir(&fleet.state_dir()).exists(),
        "nothing started: no journal"
    );
}

/// A config edit: mw1's `post_repool` hook runs `script` (sh) on mw1, and `rollout:` gets
/// `keys`.
fn mw1_post_repool(script: String, keys: &'static str) -> impl FnOnce(String) -> String {
    move |y: String| {
        let mw1 = y.find("name: \"mw1\"").expect("mw1 in the config");
        let hooks = mw1 + y[mw1..].find("post_activate:\n").unwrap();
        let end = hooks + y[hooks..].find("]\n").unwrap() + 2;
        let hook = serde_json::json!(["sh", "-c", script]);
        let y = format!(
            "{}      post_repool:\n        - {hook}\n{}",
            &y[..end],
            &y[end..]
        );
        y.replacen("rollout:\n", &format!("rollout:\n{keys}"), 1)
    }
}

/// mw3 is not deployed; mw1's `post_repool` takes it out of the pool on the proxy (as an
/// operator or a failing check could, after the preflight). The pool is read again before
/// mw2's depool, so mw3 counts under `max_unavailable` 1: mw2 waits for it. Brought back a
/// second later, mw2 goes on; left out, the deploy stops after `room_timeout` and mw2 is
/// skipped, never depooled. Never two out at once.
#[test]
fn a_server_taken_out_during_the_deploy_is_counted_before_the_next_depool() {
    let fleet = fleet(3, Layout::Releases, 60);
    let sock = fleet.proxies()[0].admin_socket();
    let say = |cmd: &str| {
        format!(
            "printf '{cmd} server mediawiki/mw3\\n' | socat stdio '{}'",
            sock.display()
        )
    };
    let keys = "  room_timeout: \"3s\"\n";
    let args = ["--rsync", "--rollout", "--json", "--servers", "mw1,mw2"];

    // 1. mw3 comes back a second after mw1's repool.
    let back = format!(
        "{}; ( sleep 1; {} ) </dev/null >/dev/null 2>&1 &",
        say("disable"),
        say("enable")
    );
    let c = config(&fleet, Layout::Releases, mw1_post_repool(back, keys));
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));
    let o = mwdeploy(&c, &args);
    let pool = pool.stop();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    let lines = json_lines(&out);
    let at = |f: &dyn Fn(&Value) -> bool| lines.iter().position(f).unwrap_or(usize::MAX);
    let waited = at(&|l| {
        l["event"] == "warning"
            && l["detail"]
                .as_str()
                .is_some_and(|d| d.contains("waiting for room") && d.contains("mw3 MAINT"))
    });
    let mw2_depool = at(&|l| l["event"] == "pool" && l["server"] == "mw2");
    assert!(waited < mw2_depool && mw2_depool < lines.len(), "{out}");
    assert_eq!(pool.max_out, 1, "mw3, then mw2, never both: {pool:?}");
    assert_eq!(stamps(&fleet)[..2], ["v2", "v2"]);

    // 2. mw3 stays out: no room for mw2 within room_timeout.
    let c = config(
        &fleet,
        Layout::Releases,
        mw1_post_repool(say("disable"), keys),
    );
    write_stamp(fleet.staging().path(), "v3").unwrap();
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));
    let o = mwdeploy(&c, &args);
    let pool = pool.stop();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", text(&o.stderr));
    let lines = json_lines(&out);
    assert_eq!(final_state(&lines, "mw1").as_deref(), Some("done"), "{out}");
    assert_eq!(
        final_state(&lines, "mw2").as_deref(),
        Some("skipped"),
        "{out}"
    );
    assert!(
        lines.iter().any(|l| l["event"] == "stopping"
            && l["reason"] == "no_room"
            && l["detail"]
                .as_str()
                .is_some_and(|d| d.contains("mw3 MAINT"))),
        "{out}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l["event"] == "pool" && l["server"] == "mw2"),
        "{out}"
    );
    assert_eq!(pool.max_out, 1, "{pool:?}");
    assert_eq!(stamps(&fleet)[..2], ["v3", "v2"]);
    proxy_command(&fleet, 0, "enable server mediawiki/mw3");
}
