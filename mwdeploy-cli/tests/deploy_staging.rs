//! Staging before production, run as the `mwdeploy` process against the test fleet:
//! `--core` pulls the staging checkout (fast-forward only, the incoming commits in the
//! journal and the output) and the new code reaches every server with the localisation
//! cache rebuilt; a checkout that cannot fast-forward, or a failing staging canary,
//! stops the deploy before any production server (exit 3).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

mod support;
use support::*;
use testfleet::{write_stamp, Layout, INITIAL_STAMP};

/// `git -C <dir> <args>`, its stdout trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("git (scripts/install-deps.sh): {e}"));
    assert!(o.status.success(), "git {args:?}: {}", text(&o.stderr));
    text(&o.stdout).trim().to_string()
}

/// The `prep_step` records of `step`.
fn steps<'a>(lines: &'a [Value], step: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["event"] == "prep_step" && l["step"] == step)
        .collect()
}

#[test]
fn a_core_pull_reaches_every_server_with_its_commits_recorded_and_l10n_rebuilt() {
    let fleet = fleet(2, Layout::Releases, 60);
    let c = config(&fleet, Layout::Releases, |y| y);
    let before = git(fleet.staging().path(), &["rev-parse", "HEAD"]);
    let pushed = fleet.push_stamp("v2").unwrap();

    let o = mwdeploy(&c, &["--core", "--l10n", "--rollout", "--json"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(stamps(&fleet), ["v2", "v2"]);
    assert_eq!(git(fleet.staging().path(), &["rev-parse", "HEAD"]), pushed);

    let lines: Vec<Value> = out.lines().map(parse).collect();
    assert_eq!(journal_of(&fleet), lines, "stdout is the journal");
    // The journal starts with the deploy, then staging's steps.
    assert_eq!(lines[0]["event"], "deploy_started", "{out}");
    let pull = steps(&lines, "pull core");
    assert_eq!(pull.len(), 2, "running, then ok: {out}");
    assert_eq!(pull[1]["status"], "ok", "{out}");
    assert_eq!(
        pull[1]["commits"],
        serde_json::json!([format!("{} Set the release stamp to v2", &pushed[..7])]),
        "{out}"
    );
    let detail = pull[1]["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 incoming commit") && detail.contains(&before[..10]),
        "{detail}"
    );
    let order: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "prep_step" && l["status"] == "ok")
        .map(|l| l["step"].as_str().unwrap())
        .collect();
    // Release layout: l10n runs on the new release, before the sync switches to it.
    assert_eq!(
        order,
        [
            "pull core",
            "l10n",
            "staging_sync",
            "staging_hooks",
            "staging_canary",
            "pool_preflight"
        ],
        "{out}"
    );
    // --l10n: rebuilt on staging and, as a post_copy hook, in each server's new release.
    let cache = "cache/l10n/l10n_cache-en.json";
    assert!(fleet.staging().live_path().join(cache).is_file());
    for s in fleet.servers() {
        assert!(s.live_path().join(cache).is_file(), "{}", s.name());
        assert!(
            lines.iter().any(|l| l["event"] == "hook"
                && l["server"] == s.name()
                && l["hook"] == "post_copy"
                && l["ok"] == true),
            "{out}"
        );
    }

    // The same with plain lines: the commits are listed under their step.
    fleet.push_stamp("v3").unwrap();
    let o = mwdeploy(&c, &["--core", "--rollout", "--no-tui"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("Set the release stamp to v3\n"), "{out}");
    assert_eq!(stamps(&fleet), ["v3", "v3"]);
}

#[test]
fn a_diverged_staging_checkout_is_refused_and_left_as_it_was() {
    let fleet = fleet(2, Layout::Inplace, 40);
    let c = config(&fleet, Layout::Inplace, |y| y);
    let staging = fleet.staging().path();
    fleet.push_stamp("v2").unwrap();
    // Local work on staging that is not upstream: a fast-forward is impossible.
    write_stamp(staging, "local").unwrap();
    git(staging, &["commit", "-q", "-a", "-m", "local work"]);
    let head = git(staging, &["rev-parse", "HEAD"]);
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));

    let o = mwdeploy(&c, &["--core", "--rollout", "--json"]);
    let pool = pool.stop();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("no production server was touched"), "{err}");
    // The checkout is exactly as it was: no reset over local work.
    assert_eq!(git(staging, &["rev-parse", "HEAD"]), head);
    assert_eq!(git(staging, &["log", "-1", "--format=%s"]), "local work");
    assert_eq!(git(staging, &["status", "--porcelain"]), "");
    // Nothing reached a server or the pool.
    assert_eq!(stamps(&fleet), [INITIAL_STAMP, INITIAL_STAMP]);
    assert_eq!(pool.max_out, 0, "{pool:?}");
    let lines = journal_of(&fleet);
    let pull = steps(&lines, "pull core");
    assert_eq!(pull.last().unwrap()["status"], "failed", "{lines:?}");
    let detail = pull.last().unwrap()["detail"].as_str().unwrap();
    assert!(detail.contains("cannot fast-forward"), "{detail}");
    assert!(!lines.iter().any(|l| l["event"] == "server_state"
        && l["state"] != "pending"
        && l["state"] != "skipped"));
}

#[test]
fn a_failing_staging_canary_touches_no_server_unless_forced() {
    let fleet = fleet(2, Layout::Releases, 40);
    let good = fleet.staging().canary_url();
    // Staging's canary asks a port nobody listens on.
    let c = config(&fleet, Layout::Releases, |y| {
        let at = y.find("\nstaging:\n").expect("a staging block");
        let (head, tail) = y.split_at(at);
        format!(
            "{head}{}",
            tail.replacen(&good, "http://127.0.0.1:9/wiki/Main_Page", 1)
        )
    });
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let pool = fleet.start_pool_monitor(Duration::from_millis(10));

    let o = mwdeploy(&c, &["--rsync", "--rollout", "--json"]);
    let pool = pool.stop();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(3), "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(stamps(&fleet), [INITIAL_STAMP, INITIAL_STAMP]);
    assert_eq!(pool.max_out, 0, "{pool:?}");
    let lines: Vec<Value> = out.lines().map(parse).collect();
    assert_eq!(
        steps(&lines, "staging_canary").last().unwrap()["status"],
        "failed",
        "{out}"
    );
    assert_eq!(lines.last().unwrap()["exit_code"], 3, "{out}");

    // --force: the staging canary's failure is a warning and the deploy goes on.
    let o = mwdeploy(&c, &["--rsync", "--rollout", "--force", "--no-tui"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("staging_canary: warned"), "{out}");
    assert_eq!(stamps(&fleet), ["v2", "v2"]);
}

#[test]
fn provision_pushes_the_deploy_hosts_live_tree_as_it_is() {
    let fleet = fleet(2, Layout::Inplace, 40);
    let c = config(&fleet, Layout::Inplace, |y| y);
    // The deploy host's own live tree, not the staging checkout, is what is pushed.
    write_stamp(fleet.staging().live_path(), "live").unwrap();
    write_stamp(fleet.staging().path(), "checkout").unwrap();

    let o = mwdeploy(
        &c,
        &["--provision", "--servers", "mw2", "--rollout", "--json"],
    );
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(stamps(&fleet), [INITIAL_STAMP, "live"]);
    let lines: Vec<Value> = out.lines().map(parse).collect();
    // No staging steps: no pulls, no sync, no staging canary.
    assert!(
        !lines.iter().any(
            |l| l["event"] == "prep_step" && l["step"].as_str().unwrap().starts_with("staging")
        ),
        "{out}"
    );
    assert_eq!(final_state(&lines, "mw2").as_deref(), Some("done"));
    let states = fleet.proxies()[0].server_states().unwrap();
    assert!(states.iter().all(|s| s.in_pool()), "{states:?}");
}

/// `--config` on a staging checkout whose `config/` is a plain folder of the staging
/// repository (not its own clone, not a submodule): the enclosing repository is pulled,
/// as the old tool's `git -C <staging>/config pull` did, and the change reaches every
/// server.
#[test]
fn config_on_a_plain_folder_of_the_staging_repository_pulls_that_repository() {
    let fleet = fleet(2, Layout::Releases, 40);
    let c = config(&fleet, Layout::Releases, |y| y);
    let staging = fleet.staging().path();
    fleet
        .push_to_origin("Add config", &[("config/Settings.php", b"<?php // a\n")])
        .unwrap();
    git(staging, &["pull", "--ff-only", "-q"]);
    assert!(!staging.join("config/.git").exists(), "a plain folder");
    // A first full deploy: a targeted one builds on the fleet's latest release.
    let o = mwdeploy(&c, &["--rsync", "--rollout"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let pushed = fleet
        .push_to_origin("Change config", &[("config/Settings.php", b"<?php // b\n")])
        .unwrap();

    let o = mwdeploy(&c, &["--config", "--rollout", "--json"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(git(staging, &["rev-parse", "HEAD"]), pushed);
    let lines: Vec<Value> = out.lines().map(parse).collect();
    let pull: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "prep_step" && l["status"] == "ok")
        .filter(|l| l["step"].as_str().is_some_and(|s| s.starts_with("pull")))
        .collect();
    assert_eq!(pull.len(), 1, "{out}");
    for s in fleet.servers() {
        let settings = std::fs::read_to_string(s.live_path().join("config/Settings.php")).unwrap();
        assert_eq!(settings, "<?php // b\n", "{}", s.name());
    }
}
