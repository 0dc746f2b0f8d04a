//! `config.yaml` through the real binary: an old tool's config and the test fleet's
//! accepted as they are, every kind of config error a `file:line:column` message with
//! exit 2 and nothing touched, a config others can write refused.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use testfleet::{Fleet, Layout};

const BIN: &str = env!("CARGO_BIN_EXE_mwdeploy");

/// The old tool's config, shaped exactly as its Salt template writes it (plus the two
/// keys its guide lists that the template leaves to their defaults).
const OLD_TOOL: &str = r#"# mwdeploy configuration — managed by Salt, do not edit manually

deploy_user: mwdeploy
ssh_identity: /home/mwdeploy/.ssh/id_ed25519
staging_path: /srv/mediawiki-staging
prod_path: /srv/mediawiki
canary_vhost: test.wikioasis.org
log_file: /var/log/mwdeploy.log
backup_path: /srv/mediawiki-backup
haproxy_backend: mediawiki
haproxy_socket: /run/haproxy/admin.sock

mw_servers:
  - mw-us-east-011.example.org
  - mw-us-east-012.example.org
  - mw-us-east-021.example.org
  - mw-us-east-022.example.org
  - task-us-east-011.example.org

proxy_servers:
  - proxy-us-east-011.example.org
  - proxy-us-east-021.example.org

webhooks:
  discord: "https://discord.example/api/webhooks/123/secret-token"
  slack: ""
"#;

/// A small valid config whose paths on this host are inside the test's folder.
const SMALL: &str = "\
staging_path: staging
prod_path: /srv/mediawiki
state_dir: state
log_file: mwdeploy.log
staging:
  prod_path: deploy-host/mediawiki
mw_servers: [mw1, mw2]
proxy_servers: [lb1]
";

/// A temporary folder; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mwdeploy-config-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    /// Writes `config.yaml` with `mode`.
    fn config(&self, text: &str, mode: u32) -> PathBuf {
        let p = self.0.join("config.yaml");
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn listing(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `mwdeploy -C config ARGS` from `dir`; asserts the folder is as it was.
fn mwdeploy(dir: &Dir, config: &Path, args: &[&str]) -> Output {
    let before = dir.listing();
    let o = Command::new(BIN)
        .current_dir(&dir.0)
        .arg("-C")
        .arg(config)
        .args(args)
        .env_remove("MWDEPLOY_CONFIG")
        .output()
        .expect("the mwdeploy binary runs");
    assert_eq!(
        dir.listing(),
        before,
        "mwdeploy {args:?} touched its folder"
    );
    o
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `text` as the config of a dry run: exit 2, and stderr holds each of `parts`.
fn refused(text: &str, parts: &[&str]) -> String {
    let d = Dir::new();
    let c = d.config(text, 0o600);
    let o = mwdeploy(&d, &c, &["--rsync", "--rollout", "--dry-run"]);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "accepted:\n{text}\nstdout: {}",
        stdout(&o)
    );
    assert!(o.stdout.is_empty(), "{}", stdout(&o));
    for p in parts {
        let p = p.replace("{file}", &c.display().to_string());
        assert!(err.contains(&p), "stderr lacks {p:?}:\n{err}");
    }
    err
}

#[test]
fn an_old_tool_config_works_unchanged() {
    let d = Dir::new();
    let c = d.config(OLD_TOOL, 0o600);
    let o = mwdeploy(
        &d,
        &c,
        &[
            "--core",
            "--mediawiki",
            "--l10n",
            "--servers",
            "all",
            "--rollout",
            "--dry-run",
        ],
    );
    let (out, err) = (stdout(&o), stderr(&o));
    // The plan is printed as for any config; its proxies do not resolve here, which the
    // dry run reports with the exit code of a refused deploy.
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        out.contains("unreachable: proxy proxy-us-east-011.example.org: cannot reach"),
        "{out}"
    );
    // backup_path: accepted, with a warning that says where it is.
    assert!(
        err.contains(&format!("{}:9:14: backup_path", c.display())) && err.contains("unused"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.contains("stage 1 (5 servers): mw-us-east-011.example.org, mw-us-east-012.example.org, mw-us-east-021.example.org, mw-us-east-022.example.org, task-us-east-011.example.org\n"), "{out}");
    assert!(
        out.contains("ssh mwdeploy@mw-us-east-011.example.org -> /srv/mediawiki"),
        "{out}"
    );
    assert!(out.contains("(Host: test.wikioasis.org)"), "{out}");
    assert!(
        out.contains("proxy-us-east-011.example.org, proxy-us-east-021.example.org"),
        "{out}"
    );
    assert!(
        out.contains("webhooks: discord\n"),
        "an empty slack URL is off: {out}"
    );
    assert!(!out.contains("secret-token") && !err.contains("secret-token"));
}

#[test]
fn the_test_fleet_s_config_is_accepted() {
    let fleet = Fleet::builder()
        .servers(1)
        .proxies(1)
        .start()
        .expect("the test fleet starts (programs from scripts/install-deps.sh)");
    for layout in [Layout::Inplace, Layout::Releases] {
        let d = Dir::new();
        let c = d.config(&fleet.config_yaml(layout), 0o600);
        let o = mwdeploy(&d, &c, &["--rsync", "--rollout", "--dry-run"]);
        let (out, err) = (stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(0), "{layout}: {err}");
        assert!(err.is_empty(), "{layout}: no warning expected: {err}");
        let server = &fleet.servers()[0];
        assert!(out.contains("stage 1 (1 server): mw1\n"), "{out}");
        assert!(
            out.contains(&format!(
                "mw1: ssh root@127.0.0.1:{} -> {}",
                server.ssh_port(),
                server.live_path().display()
            )),
            "{out}"
        );
        assert!(out.contains(&format!("release_layout: {layout}")), "{out}");
        assert!(out.contains("post_activate 1 hook"), "{out}");
        assert!(out.contains("(lb1)"), "{out}");
    }
}

#[test]
fn a_config_others_can_write_is_refused() {
    for (mode, who) in [
        (0o620, "its group"),
        (0o602, "others"),
        (0o666, "group and others"),
    ] {
        let d = Dir::new();
        let c = d.config(SMALL, mode);
        let o = mwdeploy(&d, &c, &["--rsync", "--dry-run"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "mode {mode:o}: {err}");
        assert!(err.contains(&format!("writable by {who}")), "{err}");
        assert!(
            err.contains(&format!("chmod go-w {}", c.display())),
            "{err}"
        );
        assert!(err.contains("root on every server"), "{err}");
    }
    // Readable by all is fine: it holds no secret the webhooks do not already.
    let d = Dir::new();
    let c = d.config(SMALL, 0o644);
    let o = mwdeploy(&d, &c, &["--rsync", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_missing_config_says_how_to_choose_one() {
    let d = Dir::new();
    let o = mwdeploy(&d, Path::new("nope.yaml"), &["--rsync"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("nope.yaml: cannot read the config"), "{err}");
    assert!(
        err.contains("-C/--config-file") && err.contains("$MWDEPLOY_CONFIG"),
        "{err}"
    );
}

#[test]
fn yaml_errors_are_file_line_column_and_name_the_key() {
    refused(
        &format!("{SMALL}rollout:\n  paralel: 2\n"),
        &["{file}:10:3: unknown key `paralel` in `rollout` (did you mean `parallel`?)"],
    );
    refused(
        &format!("{SMALL}proxy_servers_extra: []\n"),
        &["{file}:9:1: unknown key `proxy_servers_extra`"],
    );
    refused(
        &format!("{SMALL}rollout:\n  parallel: two\n"),
        &["{file}:10:13: rollout.parallel: expected a whole number, got \"two\""],
    );
    refused(
        &format!("{SMALL}canary:\n  timeout: 15\n"),
        &["{file}:10:12: canary.timeout: a duration needs a unit"],
    );
    refused(
        &format!("{SMALL}canary:\n  retry_pause: soon\n"),
        &["{file}:10:16: canary.retry_pause: bad duration \"soon\""],
    );
    refused(&format!("{SMALL}  - [mw3]\n"), &["{file}:9:3:"]);
    refused(
        "staging_path: staging\nprod_path: /srv/mediawiki\nmw_servers:\n  - name: mw1\n    ssh_port: twenty-two\n",
        &["{file}:5:15: mw_servers[0].ssh_port: expected a whole number"],
    );
    refused("mw_servers: [mw1\n", &["{file}:"]);
}

#[test]
fn checks_name_the_key_and_its_line() {
    refused(
        "staging_path: staging\nprod_path: /srv/mediawiki\nmw_servers:\n  - mw1\n  - \"-oProxyCommand=x\"\n  - \"a;b\"\n  - ../x\n  - \"a b\"\n",
        &[
            "{file}:5:5: mw_servers[1]: server name \"-oProxyCommand=x\"",
            "{file}:6:5: mw_servers[2]: server name \"a;b\"",
            "{file}:7:5: mw_servers[3]: server name \"../x\"",
            "{file}:8:5: mw_servers[4]: server name \"a b\"",
            "4 config errors",
            "nothing was run",
        ],
    );
    refused(
        &format!("{SMALL}keep_releases: 1\n"),
        &["{file}:9:16: keep_releases: 1 is too small"],
    );
    refused(
        &format!("{SMALL}canary:\n  url: http//x\n"),
        &["{file}:10:8: canary.url: \"http//x\" is not a valid URL"],
    );
    refused(
        &format!("{SMALL}rollout:\n  stages: [1, \"0%\"]\n"),
        &["{file}:10:15: rollout.stages[1]"],
    );
    refused(
        "staging_path: /srv/mediawiki/staging\nprod_path: /srv/mediawiki\nstate_dir: state\nmw_servers: [mw1]\n",
        &["{file}:1:15: staging_path", "sits inside /srv/mediawiki (staging.prod_path (staging's live tree), the live tree of server mw1)"],
    );
    refused(
        &format!("{SMALL}proxy_servers: [lb1]\n"),
        &["{file}:9:1:", "duplicate"],
    );
    let err = refused(
        &format!("{SMALL}webhooks: {{slack: \"hooks.slack.example/services/secret-token\"}}\n"),
        &["{file}:9:19: webhooks.slack", "not shown"],
    );
    assert!(!err.contains("secret-token"), "{err}");
}

#[test]
fn max_unavailable_0_is_refused_only_with_rollout() {
    let d = Dir::new();
    let c = d.config(&format!("{SMALL}rollout:\n  max_unavailable: 0\n"), 0o600);
    let o = mwdeploy(&d, &c, &["--rsync", "--rollout", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!(
            "rollout.max_unavailable: 0 at {}:10:20",
            c.display()
        )),
        "{}",
        stderr(&o)
    );
    let o = mwdeploy(&d, &c, &["--rsync", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn relative_paths_are_resolved_against_the_config_s_folder() {
    let d = Dir::new();
    let c = d.config(SMALL, 0o600);
    // Run from elsewhere: the paths follow the config, not the working directory.
    let o = Command::new(BIN)
        .current_dir("/")
        .arg("-C")
        .arg(&c)
        .args(["--config", "--dry-run"])
        .env_remove("MWDEPLOY_CONFIG")
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let staging = d.0.join("staging");
    let live = d.0.join("deploy-host/mediawiki");
    assert!(
        out.contains(&format!("pull config (in {}/config", staging.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("-> {}: config", live.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("log: {}", d.0.join("mwdeploy.log").display())),
        "{out}"
    );
}

#[test]
fn the_release_layout_without_post_activate_warns_and_runs() {
    let d = Dir::new();
    let c = d.config(&format!("{SMALL}release_layout: releases\n"), 0o600);
    let o = mwdeploy(&d, &c, &["--rsync", "--dry-run"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("warning: {}:9:17: release_layout", c.display()))
            && err.contains("php-fpm"),
        "{err}"
    );
    assert!(
        stdout(&o).contains("releases in /srv/mediawiki-releases"),
        "{}",
        stdout(&o)
    );
}
