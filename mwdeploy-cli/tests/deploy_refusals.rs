//! Deploys that must not go as planned, run as the `mwdeploy` process against the test
//! fleet: a dry run changes nothing (balancer, servers, state dir); an unreachable proxy
//! refuses the deploy before any change, also with `--force`; in place, a failed canary
//! keeps its server out of the pool and reports it; `--force` turns a failed canary into
//! a warning with the server back in the pool.

use std::time::Duration;

use serde_json::Value;

mod support;
use support::*;
use testfleet::{write_stamp, Fault, Fleet, Layout, LoadOptions, INITIAL_STAMP};

/// The journals in the fleet's state dir.
fn journal_count(fleet: &Fleet) -> usize {
    std::fs::read_dir(mwdeploy_runtime::journal::dir(&fleet.state_dir()))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Every server's state on every proxy that answers, as `proxy server STATE`.
fn pool(fleet: &Fleet) -> Vec<String> {
    let mut v = Vec::new();
    for p in fleet.proxies() {
        if let Ok(states) = p.server_states() {
            for s in states {
                v.push(format!("{} {} {:?}", p.name(), s.name, s.state));
            }
        }
    }
    v
}

/// `server`'s canary asks a port nobody listens on (HAProxy's own check still passes).
fn failing_canary(y: String, server: &str, url: &str) -> String {
    let at = y.find(&format!("name: \"{server}\"")).expect("the server");
    let (head, tail) = y.split_at(at);
    format!(
        "{head}{}",
        tail.replacen(url, "http://127.0.0.1:9/wiki/Main_Page", 1)
    )
}

#[test]
fn a_dry_run_changes_nothing_and_an_unreachable_proxy_refuses_the_deploy() {
    let fleet = Fleet::builder()
        .servers(2)
        .proxies(2)
        .tree(40, 1)
        .layout(Layout::Releases)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet (scripts/install-deps.sh): {e}"));
    let c = config(&fleet, Layout::Releases, |y| y);
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let before = pool(&fleet);
    assert_eq!(before.len(), 4, "{before:?}");

    // A dry run reads the pool and changes nothing, not even the balancer.
    let monitor = fleet.start_pool_monitor(Duration::from_millis(10));
    let o = mwdeploy(&c, &["--rsync", "--rollout", "--dry-run"]);
    let report = monitor.stop();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("pool state (read now):"), "{out}");
    for proxy in ["lb1", "lb2"] {
        for server in ["mw1", "mw2"] {
            assert!(
                out.contains(&format!("  {proxy} mediawiki/{server}: UP")),
                "{out}"
            );
        }
    }
    assert!(out.contains("commands on mw1"), "{out}");
    assert_eq!(report.max_out, 0, "{report:?}");
    assert_eq!(pool(&fleet), before);
    assert_eq!(stamps(&fleet), [INITIAL_STAMP, INITIAL_STAMP]);
    assert!(!fleet
        .staging()
        .live_path()
        .join(".mwdeploy-release.json")
        .exists());
    assert_eq!(journal_count(&fleet), 0, "a dry run writes no journal");

    // lb2 is down: refused before any change, with or without --force.
    fleet.inject(Fault::ProxyDown(1)).unwrap();
    for force in [false, true] {
        let mut args = vec!["--rsync", "--rollout", "--json"];
        if force {
            args.push("--force");
        }
        let o = mwdeploy(&c, &args);
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert_eq!(o.status.code(), Some(3), "{args:?}\n{out}\n{err}");
        assert!(err.contains("proxy lb2"), "{err}");
        assert!(err.contains("refused: a proxy is unreachable"), "{err}");
        assert!(out.is_empty(), "{out}");
    }
    assert_eq!(stamps(&fleet), [INITIAL_STAMP, INITIAL_STAMP]);
    assert_eq!(journal_count(&fleet), 0, "nothing started");
    let lb1: Vec<String> = before
        .iter()
        .filter(|s| s.starts_with("lb1"))
        .cloned()
        .collect();
    assert_eq!(pool(&fleet), lb1);

    // The dry run reports it with the exit code of the refusal.
    let o = mwdeploy(&c, &["--rsync", "--rollout", "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let v = parse(text(&o.stdout).trim());
    assert_eq!(v["pool"]["unreachable"][0]["proxy"], "lb2", "{v}");
    assert_eq!(v["pool"]["servers"][0]["status"], "UP", "{v}");
}

#[test]
fn in_place_a_failed_canary_keeps_its_server_out_of_the_pool_and_reports_it() {
    let fleet = fleet(3, Layout::Inplace, 60);
    let url = fleet.servers()[1].canary_url();
    let c = config(&fleet, Layout::Inplace, |y| failing_canary(y, "mw2", &url));
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let load = fleet.start_load(LoadOptions::default()).unwrap();

    let o = mwdeploy(
        &c,
        &["--rsync", "--rollout", "--no-tui", "--on-failure", "abort"],
    );
    let load = load.stop();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("✓ 1 succeeded   ✗ 1 failed   – 1 skipped/rolled back\n"),
        "{out}"
    );
    assert!(out.contains("left out of the pool: mw2"), "{out}");
    let lines = journal_of(&fleet);
    assert_eq!(final_state(&lines, "mw1").as_deref(), Some("done"));
    assert_eq!(final_state(&lines, "mw2").as_deref(), Some("failed"));
    assert_eq!(final_state(&lines, "mw3").as_deref(), Some("skipped"));
    // No copy of the old tree exists in place: mw2 stays out, never back with a
    // failed canary.
    let states = fleet.proxies()[0].server_states().unwrap();
    let out_of_pool: Vec<&str> = states
        .iter()
        .filter(|s| !s.in_pool())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(out_of_pool, ["mw2"], "{states:?}");
    assert_eq!(load.failed, 0, "{:?}", load.failures);
}

#[test]
fn force_makes_a_failed_canary_a_warning_and_puts_the_server_back() {
    let fleet = fleet(2, Layout::Releases, 40);
    let url = fleet.servers()[1].canary_url();
    let c = config(&fleet, Layout::Releases, |y| failing_canary(y, "mw2", &url));
    write_stamp(fleet.staging().path(), "v2").unwrap();

    let o = mwdeploy(&c, &["--rsync", "--rollout", "--force", "--json"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<Value> = out.lines().map(parse).collect();
    assert_eq!(final_state(&lines, "mw1").as_deref(), Some("done"));
    assert_eq!(final_state(&lines, "mw2").as_deref(), Some("warned"));
    let end = lines.last().unwrap();
    assert_eq!(end["summary"]["warned"], 1, "{out}");
    assert_eq!(end["exit_code"], 0, "{out}");
    assert!(
        !lines.iter().any(|l| l["event"] == "prompt"),
        "--force never asks"
    );
    let states = fleet.proxies()[0].server_states().unwrap();
    assert!(states.iter().all(|s| s.in_pool()), "{states:?}");
    assert_eq!(stamps(&fleet), ["v2", "v2"]);
}

/// `--force` where HAProxy's own check fails too (mw2's page answers 500, to the canary
/// and to the check): mw2 is left READY, where that check decides, counted warned and
/// said DOWN; the run exits 0. Once its page is fixed, HAProxy serves it on its own.
#[test]
fn force_leaves_a_server_whose_check_fails_ready_for_haproxy_to_decide() {
    let fleet = fleet(2, Layout::Releases, 40);
    let c = config(&fleet, Layout::Releases, |y| y);
    write_stamp(fleet.staging().path(), "v2").unwrap();
    fleet.inject(Fault::PageError(1)).unwrap();

    let o = mwdeploy(&c, &["--rsync", "--rollout", "--force", "--json"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<Value> = out.lines().map(parse).collect();
    assert_eq!(final_state(&lines, "mw1").as_deref(), Some("done"), "{out}");
    assert_eq!(
        final_state(&lines, "mw2").as_deref(),
        Some("warned"),
        "{out}"
    );
    let end = lines.last().unwrap();
    assert_eq!(end["summary"]["warned"], 1, "{out}");
    assert_eq!(end["summary"]["failed"], 0, "{out}");
    assert!(
        lines.iter().any(|l| l["event"] == "warning"
            && l["server"] == "mw2"
            && l["detail"].as_str().is_some_and(|d| d.contains("DOWN"))),
        "a warning says HAProxy has mw2 DOWN\n{out}"
    );
    assert!(!out.contains("left out of the pool"), "{out}");
    // Not in maintenance on any proxy: READY (admin state without a maintenance bit).
    for p in fleet.proxies() {
        let states = p.server_states().unwrap();
        let mw2 = states.iter().find(|s| s.name == "mw2").unwrap();
        assert_eq!(
            mw2.admin & 0x01,
            0,
            "{} has mw2 in maintenance: {mw2:?}",
            p.name()
        );
    }
    // Its page fixed, HAProxy's check puts it back in service, nobody else.
    fleet.clear(Fault::PageError(1)).unwrap();
    let served = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        fleet.proxies().iter().all(|p| {
            p.server_states()
                .unwrap()
                .iter()
                .any(|s| s.name == "mw2" && s.in_pool())
        })
    });
    assert!(
        served,
        "mw2 not served after its check passed: {:?}",
        pool(&fleet)
    );
    assert_eq!(stamps(&fleet), ["v2", "v2"]);
}
