//! The deploy command line, run as a process: which flags start a deploy, names checked
//! before anything runs, bad numbers and combinations refused (exit 2, nothing touched),
//! and `--dry-run` printing the stages.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mwdeploy");

/// A config whose every path on this host is inside the test's folder, so a run that
/// touched anything would leave a trace there.
const CONFIG: &str = "\
deploy_user: mwdeploy
staging_path: staging
prod_path: /srv/mediawiki
state_dir: state
log_file: log/mwdeploy.log
staging:
  prod_path: deploy-host/mediawiki
haproxy_backend: mediawiki
mw_servers:
  - mw1
  - mw2
  - mw3
  - name: jobrunner1
    pooled: false
    canary_command: [systemctl, is-active, mediawiki-jobrunner]
proxy_servers: [lb1, lb2]
webhooks:
  discord: https://discord.example/api/webhooks/1/secret-token
";

/// A temporary folder holding `config.yaml` (mode 0600); removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(config: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mwdeploy-usage-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        let d = Dir(path);
        d.write("config.yaml", config);
        d
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join(name);
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    /// Every path under the folder.
    fn listing(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            for e in fs::read_dir(p).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() {
                    walk(&e, out);
                }
                out.push(e);
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out.sort();
        out
    }

    /// `mwdeploy -C config.yaml ARGS` run in the folder, without a config from the
    /// caller's environment; asserts it left the folder as it found it.
    fn run(&self, args: &[&str]) -> Output {
        let before = self.listing();
        let o = Command::new(BIN)
            .current_dir(&self.0)
            .args(["-C", "config.yaml"])
            .args(args)
            .env_remove("MWDEPLOY_CONFIG")
            .output()
            .expect("the mwdeploy binary runs");
        assert_eq!(
            self.listing(),
            before,
            "mwdeploy {args:?} touched its folder"
        );
        o
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `mwdeploy ARGS` with no config anywhere.
fn bare(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("MWDEPLOY_CONFIG")
        .output()
        .expect("the mwdeploy binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 2 and a message on stderr holding each of `parts`.
fn usage_error(o: &Output, parts: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "stderr: {err}\nstdout: {}",
        stdout(o)
    );
    for p in parts {
        assert!(err.contains(p), "stderr lacks {p:?}:\n{err}");
    }
}

#[test]
fn no_deploy_flag_shows_the_latest_deploy_of_the_config_s_state_dir() {
    // Without a terminal: a summary; with no deploy journaled yet, it says so.
    let d = Dir::new(CONFIG);
    let o = d.run(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("no deploy in") && out.contains("--help"),
        "{out}"
    );
    assert!(!d.0.join("state").join("lock").exists(), "nothing locked");
    // It needs the config to find the state dir.
    let o = bare(&["-C", "/nonexistent/config.yaml"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent/config.yaml: cannot read the config"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_shows_the_deploy_flags_examples_and_subcommands() {
    let o = bare(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for flag in [
        "--core",
        "--mediawiki",
        "--extension",
        "--skin",
        "--config ",
        "--patch ",
        "--patch-target",
        "--versions",
        "--servers",
        "--rsync",
        "--rollout",
        "--provision",
        "--l10n",
        "--force",
        "--parallel",
        "--no-log",
        "--dry-run",
        "--json",
        "--no-tui",
        "--max-unavailable",
        "--stages",
        "--failure-budget",
        "--on-failure",
        "--message",
        "--exit-when-done",
        "--config-file",
        "simulate",
        "Examples:",
        "mwdeploy --core --mediawiki --l10n --servers all --rollout",
    ] {
        assert!(out.contains(flag), "--help lacks {flag:?}:\n{out}");
    }
}

#[test]
fn flags_that_only_shape_a_deploy_do_not_start_one() {
    let d = Dir::new(CONFIG);
    for args in [
        &["--l10n"][..],
        &["--rollout"],
        &["--force"],
        &["--parallel", "2"],
        &["--servers", "all"],
        &["--l10n", "--rollout", "--servers", "mw1", "--dry-run"],
        &["--no-log", "-m", "why"],
    ] {
        let o = d.run(args);
        usage_error(
            &o,
            &[args[0], "do", "not start a deploy", "--core", "--rsync"],
        );
    }
}

#[test]
fn each_deploy_flag_starts_a_deploy() {
    let d = Dir::new(CONFIG);
    for args in [
        &["--core"][..],
        &["--mediawiki"],
        &["--extension", "Echo"],
        &["--skin", "Vector"],
        &["--config"],
        &["--patch", "T1.patch", "--patch-target", "extensions/Echo"],
        &["--rsync"],
        &["--provision"],
    ] {
        let mut a = args.to_vec();
        a.push("--dry-run");
        let o = d.run(&a);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("stage 1"), "{args:?}: {}", stdout(&o));
    }
}

#[test]
fn dry_run_lists_the_stages_in_config_order() {
    let d = Dir::new(CONFIG);
    let o = d.run(&[
        "--rsync",
        "--rollout",
        "--servers",
        "mw3,mw1,jobrunner1",
        "--stages",
        "1,50%",
        "--dry-run",
    ]);
    // lb1 and lb2 do not resolve: the plan is printed, then the unreachable proxies,
    // and the exit code says the deploy would be refused.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("stage 1 (1 server): mw1\n"), "{out}");
    assert!(
        out.contains("unreachable: proxy lb1: cannot reach"),
        "{out}"
    );
    assert!(
        out.contains("the deploy would be refused (exit 3)"),
        "{out}"
    );
    assert!(out.contains("commands on mw1"), "{out}");
    assert!(out.contains("rsync --secluded-args"), "{out}");
    assert!(
        out.contains("stage 2 (2 servers): mw3, jobrunner1\n"),
        "{out}"
    );
    assert!(!out.contains("stage 3"), "{out}");
    assert!(out.contains("servers: 3 of 4 servers"), "{out}");
    assert!(out.contains("stages [1, 50%]"), "{out}");
    assert!(out.contains("lb1, lb2"), "{out}");
    assert!(!out.contains("mw2"), "{out}");
    // A webhook URL is a secret: only its name is shown.
    assert!(
        out.contains("webhooks: discord") && !out.contains("secret-token"),
        "{out}"
    );
}

#[test]
fn dry_run_shows_what_is_pulled_and_synced() {
    let d = Dir::new(CONFIG);
    let o = d.run(&[
        "--extension",
        "Echo,CirrusSearch",
        "--extension",
        "Echo",
        "--skin",
        "Vector",
        "--versions",
        "1.45",
        "--l10n",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("pull versions/1.45/extensions/Echo (in "),
        "{out}"
    );
    assert!(
        out.contains("pull versions/1.45/extensions/CirrusSearch (in "),
        "{out}"
    );
    // Named twice, pulled once; as git_user, fast-forward only.
    assert_eq!(
        out.matches("extensions/Echo, as www-data): git fetch")
            .count(),
        1,
        "{out}"
    );
    assert!(out.contains("git merge --ff-only '@{u}'"), "{out}");
    assert!(
        out.contains(
            "versions/1.45/extensions/Echo, versions/1.45/extensions/CirrusSearch, versions/1.45/skins/Vector"
        ),
        "{out}"
    );
    assert!(out.contains("rebuildLocalisationCache"), "{out}");
    assert!(out.contains("rollout: none"), "{out}");
    // Relative paths of the config are resolved against its folder.
    let staging = d.0.join("staging");
    assert!(
        out.contains(&format!("sync {}", staging.display())),
        "{out}"
    );

    let o = d.run(&["--core", "--dry-run"]);
    assert!(stdout(&o).contains("the whole tree"), "{}", stdout(&o));
}

#[test]
fn dry_run_json_is_one_object_with_the_stages() {
    let d = Dir::new(CONFIG);
    let o = d.run(&[
        "--config",
        "--rollout",
        "--stages",
        "2,100%",
        "--dry-run",
        "--json",
    ]);
    // lb1 and lb2 do not resolve: the plan is printed, then the unreachable proxies,
    // and the exit code says the deploy would be refused.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["event"], "dry_run");
    assert_eq!(
        v["stages"],
        serde_json::json!([["mw1", "mw2"], ["mw3", "jobrunner1"]])
    );
    assert_eq!(v["sync"], serde_json::json!(["config"]));
    // Under --json nobody can answer a prompt.
    assert_eq!(v["policy"]["on_failure"], "abort");
    assert_eq!(v["pool"]["unreachable"][0]["proxy"], "lb1", "{out}");
    assert_eq!(v["pool"]["unreachable"][1]["proxy"], "lb2", "{out}");
    let steps: Vec<&str> = v["commands"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(v["commands"]["server"], "mw1");
    assert!(
        steps.first().unwrap().starts_with("depool on lb1"),
        "{steps:?}"
    );
    assert!(steps.contains(&"canary"), "{steps:?}");
    assert!(
        steps.last().unwrap().starts_with("repool on lb2"),
        "{steps:?}"
    );
}

#[test]
fn parallel_never_raises_max_unavailable() {
    let d = Dir::new(CONFIG);
    let o = d.run(&["--rsync", "--rollout", "--parallel", "3", "--dry-run"]);
    // lb1 and lb2 do not resolve: the plan is printed, then the unreachable proxies,
    // and the exit code says the deploy would be refused.
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("parallel 3, max_unavailable 1,"), "{out}");
    let o = d.run(&[
        "--rsync",
        "--rollout",
        "--parallel",
        "3",
        "--max-unavailable",
        "2",
        "--dry-run",
    ]);
    assert!(
        stdout(&o).contains("parallel 3, max_unavailable 2,"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn numbers_out_of_range_are_usage_errors() {
    let d = Dir::new(CONFIG);
    usage_error(
        &d.run(&["--rsync", "--parallel", "0"]),
        &["--parallel", "at least 1"],
    );
    usage_error(&d.run(&["--rsync", "--parallel=-1"]), &["--parallel"]);
    usage_error(
        &d.run(&["--rsync", "--rollout", "--max-unavailable", "0"]),
        &["--max-unavailable 0", "--rollout must depool server mw1"],
    );
    usage_error(
        &d.run(&["--rsync", "--stages", "0%"]),
        &["--stages", "1%..=100%"],
    );
    usage_error(&d.run(&["--rsync", "--stages", "1,,2"]), &["--stages"]);
    usage_error(
        &d.run(&["--rsync", "--failure-budget", "101%"]),
        &["--failure-budget"],
    );
    usage_error(
        &d.run(&["--rsync", "--on-failure", "maybe"]),
        &["--on-failure"],
    );
    usage_error(
        &d.run(&["--rsync", "--stages", "group:nope"]),
        &["group:nope"],
    );
    // Without --rollout no server leaves the pool, so 0 is allowed.
    let o = d.run(&["--rsync", "--max-unavailable", "0", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn max_unavailable_0_in_the_config_is_refused_with_rollout() {
    let d = Dir::new(&format!("{CONFIG}rollout:\n  max_unavailable: 0\n"));
    usage_error(
        &d.run(&["--rsync", "--rollout"]),
        &["rollout.max_unavailable: 0 at", "config.yaml:20:20", "mw1"],
    );
    // Only the job runner selected: nothing leaves the pool.
    let o = d.run(&[
        "--rsync",
        "--rollout",
        "--servers",
        "jobrunner1",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn servers_not_in_the_config_are_an_error() {
    let d = Dir::new(CONFIG);
    usage_error(
        &d.run(&["--rsync", "--servers", "mw1,mw9"]),
        &[
            "--servers",
            "\"mw9\"",
            "not a server of",
            "mw1, mw2, mw3, jobrunner1",
        ],
    );
    usage_error(
        &d.run(&["--rsync", "--servers", "all,mw1"]),
        &["\"all\" cannot be combined"],
    );
    usage_error(
        &d.run(&["--rsync", "--servers", "mw1,"]),
        &["--servers", "empty"],
    );
}

#[test]
fn hostile_names_are_refused_before_anything_runs() {
    // No config exists: the names are checked first.
    for (flag, name, why) in [
        ("--servers", "-oProxyCommand=x", "'='"),
        ("--servers", "a;b", "';'"),
        ("--servers", "../x", "'/'"),
        ("--servers", "mw1 mw2", "' '"),
        ("--extension", "Echo;rm", "';'"),
        ("--extension", "../../etc", "'/'"),
        ("--skin", ".hidden", "may not start"),
        ("--versions", "1.45/../..", "'/'"),
        ("--versions", "-rf", "may not start"),
        ("--patch", "../x.patch", "'/'"),
    ] {
        let arg = format!("{flag}={name}");
        let mut args = vec!["-C", "/nonexistent/config.yaml", "--rsync", arg.as_str()];
        if flag != "--servers" {
            args.remove(2);
            args.extend(["--patch-target", "x"]);
            if flag != "--patch" {
                args.extend(["--patch", "ok.patch"]);
            }
        }
        let o = bare(&args);
        usage_error(&o, &[flag, why]);
        assert!(
            !stderr(&o).contains("cannot read the config"),
            "{}",
            stderr(&o)
        );
    }
    for target in ["../x", "/etc", "a//b", "a/-x", "a b"] {
        let arg = format!("--patch-target={target}");
        usage_error(&bare(&["--patch", "p.patch", &arg]), &["--patch-target"]);
    }
    // A value that looks like a flag is not taken as a server name.
    usage_error(&bare(&["--rsync", "--servers", "-oProxyCommand=x"]), &[]);
}

#[test]
fn flag_combinations_that_make_no_sense_are_refused() {
    let d = Dir::new(CONFIG);
    usage_error(&d.run(&["--patch", "T1.patch"]), &["--patch-target"]);
    usage_error(
        &d.run(&["--patch-target", "extensions/Echo", "--rsync"]),
        &["--patch"],
    );
    usage_error(&d.run(&["--rsync", "--core"]), &["--rsync", "--core"]);
    usage_error(
        &d.run(&["--provision", "--mediawiki"]),
        &["--provision", "--mediawiki"],
    );
    usage_error(
        &d.run(&["--rsync", "--json", "--on-failure", "prompt"]),
        &["--on-failure prompt", "--json"],
    );
    usage_error(
        &d.run(&["--rsync", "-m", "two\nlines"]),
        &["--message", "control"],
    );
    usage_error(
        &d.run(&["--rsync", "--versions", "all,1.45"]),
        &["--versions"],
    );
    usage_error(&d.run(&["--core", "simulate", "--servers", "3"]), &[]);
}

#[test]
fn l10n_needs_an_l10n_command() {
    let d = Dir::new(&format!("{CONFIG}l10n_command: null\n"));
    usage_error(
        &d.run(&["--core", "--l10n"]),
        &["--l10n", "l10n_command: null"],
    );
}

#[test]
fn rollout_needs_a_proxy_for_pooled_servers() {
    let d = Dir::new(&CONFIG.replace("proxy_servers: [lb1, lb2]\n", ""));
    usage_error(
        &d.run(&["--rsync", "--rollout"]),
        &["no proxy_servers", "mw1"],
    );
    let o = d.run(&["--rsync", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn stages_by_group_follow_the_selection() {
    let d = Dir::new(
        "staging_path: staging\nprod_path: /srv/mediawiki\nstate_dir: state\nlog_file: l.log\n\
         staging: {prod_path: live}\n\
         rollout: {stages: [\"group:canary\", \"group:main\"]}\n\
         mw_servers:\n  - {name: mw1, group: canary}\n  - {name: mw2, group: main}\n  - {name: mw3, group: main}\n",
    );
    let o = d.run(&["--rsync", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("stage 1 (1 server): mw1\n")
            && out.contains("stage 2 (2 servers): mw2, mw3\n"),
        "{out}"
    );
    // Only main servers selected: the canary stage has no one and is left out.
    let o = d.run(&["--rsync", "--servers", "mw3", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("stage 1 (1 server): mw3\n"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn the_config_comes_from_the_environment_without_c() {
    let d = Dir::new(CONFIG);
    let o = Command::new(BIN)
        .current_dir(&d.0)
        .args(["--rsync", "--dry-run"])
        .env("MWDEPLOY_CONFIG", d.0.join("config.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(&d.0.join("config.yaml").display().to_string()));
    // -C wins over the environment.
    let o = Command::new(BIN)
        .args(["-C", "/nonexistent/c.yaml", "--rsync", "--dry-run"])
        .env("MWDEPLOY_CONFIG", d.0.join("config.yaml"))
        .output()
        .unwrap();
    usage_error(&o, &["/nonexistent/c.yaml", "cannot read the config"]);
}

#[test]
fn simulate_still_runs() {
    let o = bare(&["simulate", "--servers", "5", "--seed", "1", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("seed 1"), "{}", stdout(&o));
}
