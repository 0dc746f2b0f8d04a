//! The operations subcommands run as the `mwdeploy` process: `status` against a real
//! fleet (two HAProxies, a server depooled on both, then on one: drift), `log` and
//! `releases` after a real release-layout deploy, `lock status` / `lock release` with a
//! live and a dead holder, `completions`, and usage errors (exit 2).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, SystemTime};

use mwdeploy_core::event::{Event, Record};
use mwdeploy_runtime::journal::{self, Journal};
use mwdeploy_runtime::lock::{lock_path, DeployLock, Holder};
use serde_json::Value;

mod support;
use support::*;
use testfleet::{write_stamp, Fault, Layout};

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// stdout and stderr, for assertion messages.
fn both(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// A folder with a small config (no fleet behind it) whose state dir is inside it;
/// removed on drop.
struct Bare(PathBuf);

impl Bare {
    fn new() -> Bare {
        use std::os::unix::fs::PermissionsExt;
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mwdeploy-ops-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let config = "\
deploy_user: mwdeploy
staging_path: staging
prod_path: /srv/mediawiki
state_dir: state
log_file: mwdeploy.log
staging:
  prod_path: deploy-host/mediawiki
haproxy_backend: mediawiki
mw_servers: [mw1, mw2]
proxy_servers: [lb1]
";
        let path = dir.join("config.yaml");
        fs::write(&path, config).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        Bare(dir)
    }

    fn config(&self) -> PathBuf {
        self.0.join("config.yaml")
    }

    fn state(&self) -> PathBuf {
        self.0.join("state")
    }

    fn run(&self, args: &[&str]) -> Output {
        mwdeploy(&self.config(), args)
    }
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn lock_status_names_the_holder_and_release_refuses_a_live_one_and_clears_a_dead_one() {
    let d = Bare::new();
    let free = d.run(&["lock", "status"]);
    assert_eq!(code(&free), Some(0), "{}", both(&free));
    assert!(
        text(&free.stdout).starts_with("nobody holds the deploy lock"),
        "{}",
        both(&free)
    );
    assert!(!d.state().exists(), "lock status created the state dir");

    // This process holds the lock (flock: another process's open file is refused).
    let held = DeployLock::acquire(&d.state(), Holder::current("hotfix T123 by alice")).unwrap();
    let status = d.run(&["lock", "status"]);
    let out = text(&status.stdout);
    assert_eq!(code(&status), Some(0), "{}", both(&status));
    assert!(out.contains("is held"), "{out}");
    assert!(
        out.contains(&format!("pid:      {}", std::process::id())),
        "{out}"
    );
    assert!(out.contains("message:  hotfix T123 by alice"), "{out}");
    assert!(out.contains("started:  "), "{out}");

    let refused = d.run(&["lock", "release"]);
    let err = text(&refused.stderr);
    assert_eq!(code(&refused), Some(3), "{}", both(&refused));
    assert!(err.contains("refused"), "{err}");
    assert!(err.contains("hotfix T123 by alice"), "{err}");
    assert!(
        err.contains(&format!("(pid {})", std::process::id())),
        "{err}"
    );
    assert!(lock_path(&d.state()).exists());
    drop(held);

    // A holder killed without cleaning up leaves its record behind, unlocked.
    let mut dead = Holder::current("deploy that was killed");
    dead.pid = 999_999;
    fs::write(lock_path(&d.state()), serde_json::to_string(&dead).unwrap()).unwrap();
    let stale = d.run(&["lock", "status"]);
    let out = text(&stale.stdout);
    assert_eq!(code(&stale), Some(0), "{}", both(&stale));
    assert!(out.contains("its holder is gone"), "{out}");
    assert!(out.contains("pid:      999999"), "{out}");

    let cleared = d.run(&["lock", "release"]);
    let out = text(&cleared.stdout);
    assert_eq!(code(&cleared), Some(0), "{}", both(&cleared));
    assert!(out.starts_with("cleared the stale record"), "{out}");
    assert!(out.contains("deploy that was killed"), "{out}");
    let after = d.run(&["lock", "status"]);
    assert!(!text(&after.stdout).contains("gone"), "{}", both(&after));
    let again = d.run(&["lock", "release"]);
    assert_eq!(code(&again), Some(0), "{}", both(&again));
    assert!(
        text(&again.stdout).starts_with("nothing to release"),
        "{}",
        both(&again)
    );
}

#[test]
fn completions_print_a_script_without_a_config() {
    let o = std::process::Command::new(BIN)
        .args(["completions", "bash"])
        .env("MWDEPLOY_CONFIG", "/nonexistent/config.yaml")
        .output()
        .unwrap();
    let out = text(&o.stdout);
    assert_eq!(code(&o), Some(0), "{}", both(&o));
    assert!(out.contains("complete -F"), "{out}");
    for word in ["status", "releases", "lock", "--follow"] {
        assert!(out.contains(word), "{word} missing from the script");
    }
    let zsh = std::process::Command::new(BIN)
        .args(["completions", "zsh"])
        .output()
        .unwrap();
    assert_eq!(code(&zsh), Some(0), "{}", both(&zsh));
    assert!(text(&zsh.stdout).starts_with("#compdef mwdeploy"));
}

#[test]
fn usage_and_config_errors_exit_2() {
    let d = Bare::new();
    let usage = |o: Output, parts: &[&str]| {
        assert_eq!(code(&o), Some(2), "{}", both(&o));
        let err = text(&o.stderr);
        for p in parts {
            assert!(err.contains(p), "stderr lacks {p:?}: {}", both(&o));
        }
        assert!(o.stdout.is_empty(), "{}", both(&o));
    };
    usage(d.run(&["completions", "tcsh"]), &["tcsh"]);
    usage(d.run(&["lock"]), &[]);
    usage(d.run(&["lock", "break"]), &["break"]);
    usage(d.run(&["status", "--rsync"]), &["--rsync"]);
    usage(d.run(&["--rsync", "status"]), &["--rsync", "status"]);
    usage(d.run(&["log", "d1", "--latest"]), &["--latest"]);
    usage(d.run(&["log", "../../etc/passwd"]), &["deploy id"]);
    usage(d.run(&["log", "-x"]), &["-x"]);
    usage(
        d.run(&["log", "20991231T000000Z-none"]),
        &["20991231T000000Z-none", "no journal"],
    );
    usage(
        d.run(&["releases", "--servers", "mw9"]),
        &["\"mw9\"", "mw1, mw2"],
    );
    usage(d.run(&["releases", "--servers=-rf"]), &["--servers"]);
    usage(d.run(&["releases", "--servers", "all,mw1"]), &["all"]);
    // A missing config: exit 2 with the file named, for every subcommand that reads it.
    for sub in [
        &["status"][..],
        &["log"],
        &["lock", "status"],
        &["releases"],
    ] {
        let o = mwdeploy(Path::new("/nonexistent/mwdeploy.yaml"), sub);
        usage(o, &["/nonexistent/mwdeploy.yaml"]);
    }
    // -C before or after the subcommand.
    let after = std::process::Command::new(BIN)
        .args(["lock", "status", "-C"])
        .arg(d.config())
        .output()
        .unwrap();
    assert_eq!(code(&after), Some(0), "{}", both(&after));
    // No journal yet: nothing to show is a failure, not a usage error.
    let none = d.run(&["log"]);
    assert_eq!(code(&none), Some(1), "{}", both(&none));
    assert!(
        text(&none.stderr).contains("no deploy has been journaled"),
        "{}",
        both(&none)
    );
}

/// `log --follow` of a journal that stops growing: it waits while a process holds the
/// lock and ends on SIGINT with exit 130; with the lock free it ends by itself, saying
/// the deploy did not finish.
#[test]
fn log_follow_of_a_deploy_that_stopped() {
    let d = Bare::new();
    let id = "20261122T050000Z-dead";
    let mut j = Journal::create(&d.state(), id).unwrap();
    j.append(&Record {
        ts: SystemTime::now(),
        deploy: id.into(),
        event: Event::StageFinished { stage: 1 },
    })
    .unwrap();
    drop(j);

    let held = DeployLock::acquire(&d.state(), Holder::current("a deploy")).unwrap();
    let child = std::process::Command::new(BIN)
        .arg("-C")
        .arg(d.config())
        .args(["log", "--follow", id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Past the quiet while: still following, since the lock is held.
    std::thread::sleep(Duration::from_millis(3_500));
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    drop(held);
    assert_eq!(code(&o), Some(130), "{}", both(&o));
    assert!(text(&o.stdout).contains("stage 1 finished"), "{}", both(&o));

    let o = d.run(&["log", "--follow", "--latest"]);
    assert_eq!(code(&o), Some(0), "{}", both(&o));
    assert!(text(&o.stdout).contains("stage 1 finished"), "{}", both(&o));
    assert!(text(&o.stderr).contains("did not finish"), "{}", both(&o));
}

/// Lines of `out` as JSON.
fn json_lines(out: &str) -> Vec<Value> {
    out.lines().map(parse).collect()
}

/// `status` of every server on both proxies: all up, then mw2 depooled on both, then on
/// one (drift); then a deploy, and `log` and `releases` of it. One fleet for all: they
/// only read it, but for the depool, which is put back before the deploy.
#[test]
fn status_log_and_releases_on_a_real_fleet() {
    let fleet = fleet_behind(2, 2, Layout::Releases, 40);
    let c = config(&fleet, Layout::Releases, |y| y);

    // All UP on both proxies.
    let up = mwdeploy(&c, &["status"]);
    let out = text(&up.stdout);
    assert_eq!(code(&up), Some(0), "{}", both(&up));
    assert!(
        out.contains("pool: 2 pooled servers on 2 proxies (lb1, lb2)"),
        "{out}"
    );
    for server in ["mw1", "mw2"] {
        for proxy in ["lb1", "lb2"] {
            let row = out
                .lines()
                .find(|l| l.split_whitespace().take(2).eq([server, proxy]))
                .unwrap_or_else(|| panic!("no row for {server} on {proxy}:\n{out}"));
            assert!(row.contains(" UP "), "{row}");
            assert!(row.contains("mediawiki"), "{row}");
        }
    }
    assert!(out.contains("releases:"), "{out}");
    assert!(!out.contains("drift"), "{out}");
    assert!(
        out.ends_with("2 of 2 pooled servers UP on every proxy and backend\n"),
        "{out}"
    );

    let json = mwdeploy(&c, &["status", "--json"]);
    assert_eq!(code(&json), Some(0), "{}", both(&json));
    let v = parse(text(&json.stdout).trim());
    assert_eq!(v["ok"], true);
    assert_eq!(v["servers"].as_array().unwrap().len(), 2);
    assert_eq!(v["servers"][0]["pool"].as_array().unwrap().len(), 2);
    assert_eq!(v["servers"][0]["pool"][0]["state"], "UP");
    assert!(v["servers"][0]["release"].is_string(), "{v}");

    // mw2 depooled on both proxies.
    for i in 0..2 {
        proxy_command(&fleet, i, "disable server mediawiki/mw2");
    }
    let out_both = mwdeploy(&c, &["status"]);
    let out = text(&out_both.stdout);
    assert_eq!(code(&out_both), Some(1), "{}", both(&out_both));
    assert!(
        out.contains("not UP: mw2 (MAINT on lb1/mediawiki, MAINT on lb2/mediawiki)"),
        "{out}"
    );
    assert!(!out.contains("drift between proxies"), "{out}");

    // Back on lb2 only: the proxies disagree.
    proxy_command(&fleet, 1, "enable server mediawiki/mw2");
    let drift = mwdeploy(&c, &["status"]);
    let out = text(&drift.stdout);
    assert_eq!(code(&drift), Some(1), "{}", both(&drift));
    assert!(
        out.contains("drift between proxies: mw2 in mediawiki: MAINT on lb1, UP on lb2"),
        "{out}"
    );
    let json = mwdeploy(&c, &["status", "--json"]);
    assert_eq!(code(&json), Some(1), "{}", both(&json));
    let v = parse(text(&json.stdout).trim());
    assert_eq!(v["ok"], false);
    assert_eq!(v["drift"][0]["server"], "mw2");
    assert_eq!(v["servers"][1]["up"], false);
    proxy_command(&fleet, 0, "enable server mediawiki/mw2");
    fleet
        .wait_all_up(std::time::Duration::from_secs(10))
        .unwrap();

    // A real deploy, then its journal.
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let deploy = mwdeploy(&c, &["--rsync", "--rollout", "--json", "-m", "ops test"]);
    assert_eq!(code(&deploy), Some(0), "{}", both(&deploy));
    let deployed = json_lines(&text(&deploy.stdout));
    let id = deployed[0]["deploy"].as_str().unwrap().to_string();

    let latest = mwdeploy(&c, &["log", "--latest"]);
    let out = text(&latest.stdout);
    assert_eq!(code(&latest), Some(0), "{}", both(&latest));
    assert!(out.contains("deploy started: "), "{out}");
    assert!(out.contains("staging_sync: ok"), "{out}");
    assert!(out.contains("mw1       done"), "{out}");
    assert!(out.contains("mw2       done"), "{out}");
    assert!(
        out.lines()
            .last()
            .unwrap()
            .contains("deploy finished: 2 succeeded"),
        "{out}"
    );
    assert!(
        out.starts_with("      0.0s  "),
        "time counts from the first record:\n{out}"
    );

    let by_id = mwdeploy(&c, &["log", &id, "--json"]);
    assert_eq!(code(&by_id), Some(0), "{}", both(&by_id));
    assert_eq!(
        text(&by_id.stdout),
        journals(&fleet),
        "the journal as it is"
    );
    assert_eq!(json_lines(&text(&by_id.stdout)), journal_of(&fleet));
    // The default is the latest; --follow of a finished deploy ends at once.
    let follow = mwdeploy(&c, &["log", "--follow", "--json"]);
    assert_eq!(code(&follow), Some(0), "{}", both(&follow));
    assert_eq!(text(&follow.stdout), text(&by_id.stdout));

    let unknown = mwdeploy(&c, &["log", "20200101T000000Z-dead"]);
    assert_eq!(code(&unknown), Some(2), "{}", both(&unknown));
    assert!(
        text(&unknown.stderr).contains(&id),
        "lists the latest: {}",
        both(&unknown)
    );

    // Releases: the deploy's release is live on both.
    let releases = mwdeploy(&c, &["releases"]);
    let out = text(&releases.stdout);
    assert_eq!(code(&releases), Some(0), "{}", both(&releases));
    for server in ["mw1", "mw2"] {
        assert!(
            out.contains(&format!("{server}: ")) && out.contains(&format!("live: {id}")),
            "{out}"
        );
    }
    let live_rows = out
        .lines()
        .filter(|l| l.split_whitespace().take(2).eq(["live", id.as_str()]))
        .count();
    assert_eq!(live_rows, 2, "{out}");
    // Its manifest: made by this deploy, of the whole tree.
    let row = out
        .lines()
        .find(|l| l.split_whitespace().take(2).eq(["live", id.as_str()]))
        .unwrap();
    assert_eq!(row.split_whitespace().nth(3), Some(id.as_str()), "{row}");
    assert_eq!(row.split_whitespace().nth(4), Some("full"), "{row}");
    let one = mwdeploy(&c, &["releases", "--servers", "mw2"]);
    assert_eq!(code(&one), Some(0), "{}", both(&one));
    assert!(!text(&one.stdout).contains("mw1:"), "{}", both(&one));
    assert!(text(&one.stdout).starts_with("mw2: "), "{}", both(&one));

    // status shows that release for both, no release drift.
    let st = mwdeploy(&c, &["status"]);
    let out = text(&st.stdout);
    assert_eq!(code(&st), Some(0), "{}", both(&st));
    assert_eq!(out.matches(&id).count(), 2, "{out}");
    assert!(!out.contains("release drift"), "{out}");

    // In place there are no release directories.
    let inplace = fleet.root().join("inplace.yaml");
    {
        use std::os::unix::fs::PermissionsExt;
        fs::write(&inplace, fleet.config_yaml(Layout::Inplace)).unwrap();
        fs::set_permissions(&inplace, fs::Permissions::from_mode(0o600)).unwrap();
    }
    let none = mwdeploy(&inplace, &["releases"]);
    assert_eq!(code(&none), Some(0), "{}", both(&none));
    assert!(
        text(&none.stdout).contains("no release directories"),
        "{}",
        both(&none)
    );

    // --follow of a deploy that is running: every line, as the journal ends up.
    write_stamp(fleet.staging().path(), "v3").unwrap();
    let mut running = std::process::Command::new(BIN)
        .arg("-C")
        .arg(&c)
        .args(["--rsync", "--rollout", "--json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let second = loop {
        let ids = journal::list(&fleet.state_dir()).unwrap();
        if let Some(new) = ids.into_iter().find(|i| *i != id) {
            break new;
        }
        assert!(
            running.try_wait().unwrap().is_none(),
            "the deploy ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let followed = mwdeploy(&c, &["log", "--follow", "--json", &second]);
    let status = running.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(code(&followed), Some(0), "{}", both(&followed));
    let whole = fs::read_to_string(journal::path(&fleet.state_dir(), &second)).unwrap();
    assert_eq!(text(&followed.stdout), whole);
    assert!(whole.lines().last().unwrap().contains("deploy_finished"));

    // A server that cannot be reached: shown as such, exit 1; the others still shown.
    fleet.inject(Fault::SshDown(1)).unwrap();
    let unreachable = mwdeploy(&c, &["releases"]);
    let out = text(&unreachable.stdout);
    assert_eq!(code(&unreachable), Some(1), "{}", both(&unreachable));
    assert!(out.contains("mw2: cannot be read: cannot reach "), "{out}");
    assert!(out.contains(&format!("live: {second}")), "{out}");

    // A proxy that cannot be read: shown as such, exit 1.
    fleet.inject(Fault::ProxyDown(1)).unwrap();
    let st = mwdeploy(&c, &["status"]);
    let out = text(&st.stdout);
    assert_eq!(code(&st), Some(1), "{}", both(&st));
    assert!(
        out.contains("proxy lb2: cannot be read: admin socket "),
        "{out}"
    );
    assert!(out.contains("; not read: lb2\n"), "{out}");
    let json = mwdeploy(&c, &["status", "--json"]);
    assert_eq!(code(&json), Some(1), "{}", both(&json));
    let v = parse(text(&json.stdout).trim());
    assert_eq!(v["proxies"][1]["answered"], false, "{v}");
}
