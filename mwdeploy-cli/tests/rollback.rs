//! `mwdeploy rollback`, run as a process against the test fleet (release layout): one
//! server, then all with `--parallel`, then `--fast` under load with no failed request;
//! in place it says there is nothing to roll back to.

use std::time::Duration;

mod support;
use support::*;
use testfleet::{write_stamp, Fleet, Layout, LoadOptions};

/// Deploys staging with stamp `stamp` to every server; returns the release id.
fn deploy(fleet: &Fleet, config: &std::path::Path, stamp: &str) -> String {
    write_stamp(fleet.staging().path(), stamp).unwrap();
    let o = mwdeploy(config, &["--rsync", "--rollout", "--json"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    parse(out.lines().next().unwrap())["deploy"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn rollback_one_server_then_all_in_parallel_then_fast_under_load() {
    let fleet = fleet(3, Layout::Releases, 60);
    let c = config(&fleet, Layout::Releases, |y| y);
    let v2 = deploy(&fleet, &c, "v2");
    deploy(&fleet, &c, "v3");
    assert_eq!(stamps(&fleet), ["v3", "v3", "v3"]);

    // One server, to its previous release.
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));
    let o = mwdeploy(
        &c,
        &["rollback", "--servers", "mw1", "-m", "T1: revert first"],
    );
    let pool = pool.stop();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert_eq!(stamps(&fleet), ["v2", "v3", "v3"]);
    assert!(out.contains("✓ 1 succeeded"), "{out}");
    assert_eq!(pool.max_out, 1, "depooled while switched: {pool:?}");

    // All, two at a time, to a named release (mw1 is there already).
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));
    let o = mwdeploy(&c, &["rollback", "--to", &v2, "--parallel", "2", "--json"]);
    let pool = pool.stop();
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert_eq!(stamps(&fleet), ["v2", "v2", "v2"]);
    assert!(pool.max_out <= 2, "--parallel 2: {pool:?}");
    let lines: Vec<_> = out.lines().map(parse).collect();
    for s in ["mw1", "mw2", "mw3"] {
        assert_eq!(
            final_state(&lines, s).as_deref(),
            Some("done"),
            "{s}: {out}"
        );
    }
    assert!(fleet.proxies()[0]
        .server_states()
        .unwrap()
        .iter()
        .all(|s| s.in_pool()));

    // --fast: no depool; the atomic switch under load fails no request.
    deploy(&fleet, &c, "v4");
    let load = fleet.start_load(LoadOptions::default()).unwrap();
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));
    let o = mwdeploy(&c, &["rollback", "--fast", "--parallel", "3"]);
    let (load, pool) = (load.stop(), pool.stop());
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert_eq!(stamps(&fleet), ["v2", "v2", "v2"]);
    assert_eq!(pool.max_out, 0, "--fast depools nothing: {pool:?}");
    assert!(load.requests > 0, "{load:?}");
    assert_eq!(load.failed, 0, "{:?}", load.failures);

    // A release that is not there: refused on the server before it leaves the pool.
    let o = mwdeploy(
        &c,
        &[
            "rollback",
            "--servers",
            "mw1",
            "--to",
            "20200101T000000Z-none",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("is not on this server"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(stamps(&fleet), ["v2", "v2", "v2"]);
    assert!(fleet.proxies()[0]
        .server_states()
        .unwrap()
        .iter()
        .all(|s| s.in_pool()));
}

#[test]
fn in_place_there_is_nothing_to_roll_back_to() {
    let fleet = fleet(1, Layout::Inplace, 20);
    let c = config(&fleet, Layout::Inplace, |y| y);
    let o = mwdeploy(&c, &["rollback"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nothing to roll back to"), "{err}");
    assert!(err.contains("--rsync"), "{err}");
    let o = mwdeploy(&c, &["rollback", "--to", "../etc"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("--to"), "{}", text(&o.stderr));
}
