//! Unit tests of the config: defaults, shapes, every refusal with its place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mwdeploy_core::model::{CanaryTarget, HookPoint};
use mwdeploy_core::plan::{FailureBudget, OnFailure, OnUnknown, StageSize};
use mwdeploy_core::Layout;

use super::check::placeholders;
use super::{Config, Diagnostic};

const FILE: &str = "/etc/mwdeploy/config.yaml";

/// The smallest config: the three keys without a default.
const MIN: &str =
    "staging_path: /srv/mediawiki-staging\nprod_path: /srv/mediawiki\nmw_servers: [mw1, mw2]\n";

fn ok(text: &str) -> Config {
    Config::parse(text, Path::new(FILE)).unwrap_or_else(|e| {
        panic!(
            "refused:\n{}",
            e.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn errors(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new(FILE)) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// The one error of `text`, which must contain each of `parts`.
fn error(text: &str, parts: &[&str]) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    for p in parts {
        assert!(e[0].contains(p), "{:?} does not contain {p:?}", e[0]);
    }
    e.into_iter().next().unwrap()
}

#[test]
fn a_minimal_config_gets_the_contract_s_defaults() {
    let c = ok(MIN);
    assert_eq!(c.deploy_user, "mwdeploy");
    assert_eq!(
        c.ssh_identity.as_deref(),
        Some(Path::new("/home/mwdeploy/.ssh/id_ed25519"))
    );
    assert_eq!(c.ssh_port, None);
    assert!(c.ssh_options.is_empty() && !c.remote_sudo && !c.compress);
    assert_eq!(c.canary_vhost, None);
    assert_eq!(c.log_file, Path::new("/var/log/mwdeploy.log"));
    assert_eq!(c.state_dir, Path::new("/var/lib/mwdeploy"));
    assert_eq!(c.journal_keep, 200);
    assert_eq!(c.haproxy_backends, ["mediawiki"]);
    assert_eq!(c.haproxy_socket, Path::new("/run/haproxy/admin.sock"));
    assert_eq!(c.git_user.as_deref(), Some("www-data"));
    assert_eq!(c.layout, Layout::Inplace);
    assert_eq!(c.keep_releases, 5);
    assert_eq!(c.excludes, ["/.git/", "/cache/"]);
    assert_eq!(c.chown, None);
    assert_eq!(c.canary.urls, ["http://127.0.0.1/wiki/Main_Page"]);
    assert_eq!(c.canary.expect_status, 200);
    assert_eq!(c.canary.expect_body.as_deref(), Some("wikioasis"));
    assert_eq!(c.canary.timeout, Duration::from_secs(15));
    assert_eq!(c.canary.attempts, 3);
    assert_eq!(c.canary.retry_pause, Duration::from_secs(3));
    assert!(!c.canary.follow_redirects && c.canary.error_gate.is_none());
    let r = &c.rollout;
    assert_eq!((r.parallel, r.max_unavailable), (1, 1));
    assert_eq!(r.stages, [StageSize::Percent(100)]);
    assert_eq!(r.bake, Duration::ZERO);
    assert!(!r.approve_stages);
    assert_eq!(r.failure_budget, FailureBudget::Count(0));
    assert_eq!(r.on_failure, OnFailure::Prompt);
    assert_eq!(r.drain_timeout, Duration::from_secs(30));
    assert_eq!(r.repool_timeout, Duration::from_secs(30));
    assert!(r.repool_after_check, "HAProxy's check decides by default");
    assert_eq!(r.room_timeout, Duration::from_secs(60));
    // Missing step deadlines keep the engine's defaults.
    let engine = mwdeploy_core::plan::StepTimeouts::default();
    assert_eq!(
        (r.copy_timeout, r.activate_timeout, r.hook_timeout),
        (engine.copy, engine.activate, engine.hook)
    );
    assert_eq!(
        c.l10n_command.as_ref().unwrap()[4],
        "{prod_path}/scripts/mwscript.php"
    );
    assert!(c.proxies.is_empty());
    assert_eq!(c.staging.prod_path, Path::new("/srv/mediawiki"));
    assert_eq!(c.staging.canary_urls, c.canary.urls);
    assert_eq!(c.webhooks.discord, None);
    assert!(c.warnings().is_empty());
    let s = &c.servers[1];
    assert_eq!(s.name.as_str(), "mw2");
    assert_eq!(s.prod_path, Path::new("/srv/mediawiki"));
    assert_eq!(s.releases_dir, Path::new("/srv/mediawiki-releases"));
    assert!(s.pooled && !s.local);
    assert_eq!(s.canary, CanaryTarget::Default);
}

#[test]
fn an_empty_or_scalar_file_names_what_is_missing() {
    let e = errors("");
    assert!(
        e.iter().any(|m| m.contains("staging_path: missing")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("prod_path: missing")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("mw_servers: missing")), "{e:?}");
    error("just text\n", &[FILE, ":1:1:", "a map of keys"]);
}

#[test]
fn every_key_of_the_contract_is_read() {
    let c = ok(r#"
deploy_user: deployer
ssh_identity: /home/deployer/.ssh/id_ed25519
ssh_port: 2222
ssh_options: ["StrictHostKeyChecking=yes", "UserKnownHostsFile=/etc/mwdeploy/known_hosts"]
remote_sudo: true
staging_path: /srv/mediawiki-staging
prod_path: /srv/mediawiki
canary_vhost: test.wikioasis.org
log_file: /var/log/mwdeploy.log
backup_path: /srv/mediawiki-backup
state_dir: /var/lib/mwdeploy
journal_keep: 50
haproxy_backend: [mediawiki, mediawiki-api]
haproxy_socket: /run/haproxy/admin.sock
git_user: null
release_layout: releases
releases_dir: /srv/releases
keep_releases: 3
shared_dirs: [images, cache/l10n]
excludes: [/.git/]
chown: "www-data:mediawiki-admins"
compress: true
canary:
  url: [http://127.0.0.1/wiki/Main_Page, "https://127.0.0.1/w/api.php"]
  expect_status: 200
  expect_body: null
  timeout: 1m 30s
  attempts: 5
  retry_pause: 500ms
  follow_redirects: true
  error_gate:
    log_file: /var/log/php/error.log
    pattern: "PHP (Fatal|Warning)"
    threshold: 4
    window: 20s
    on_unknown: pass
rollout:
  parallel: 4
  max_unavailable: 2
  stages: ["group:canary", "group:main"]
  bake: 1m
  approve_stages: true
  failure_budget: "5%"
  on_failure: continue
  drain_timeout: 45s
  repool_timeout: 10s
  repool_after_check: false
  room_timeout: 2m
  copy_timeout: 20m
  activate_timeout: 5m
  hook_timeout: 90s
hooks:
  post_activate: [["sudo", "systemctl", "reload", "php8.2-fpm"]]
  post_repool: [["logger", "deployed {release} to {server}"]]
l10n_command: ["php", "{prod_path}/maintenance/run.php", "rebuildLocalisationCache"]
mw_servers:
  - name: mw1
    group: canary
  - name: mw2
    ssh_host: 127.0.0.1
    ssh_port: 2202
    prod_path: /srv/fleet/mw2/mediawiki
    canary_url: http://127.0.0.1:18102/wiki/Main_Page
    haproxy_server: mw2-backend
    group: main
    hooks: {post_activate: []}
  - name: task-us-east-011
    pooled: false
    group: main
    canary_command: ["systemctl", "is-active", "mediawiki-jobrunner"]
proxy_servers:
  - proxy-us-east-011.example.org
  - name: lb-local
    local: true
    haproxy_socket: /run/haproxy/local.sock
  - name: lb3
    ssh_host: 10.0.0.3
    ssh_port: 2203
staging:
  prod_path: /srv/staging-live
  canary_url: [http://127.0.0.1:8080/wiki/Main_Page]
  hooks: {post_activate: [["true"]]}
webhooks:
  discord: https://discord.example/api/webhooks/1/x
  slack: ""
"#);
    assert_eq!(c.deploy_user, "deployer");
    assert_eq!(c.ssh_port, Some(2222));
    assert_eq!(c.ssh_options.len(), 2);
    assert!(c.remote_sudo && c.compress);
    assert_eq!(c.haproxy_backends, ["mediawiki", "mediawiki-api"]);
    assert_eq!(c.git_user, None);
    assert_eq!(c.layout, Layout::Releases);
    assert_eq!(c.keep_releases, 3);
    assert_eq!(c.shared_dirs, ["images", "cache/l10n"]);
    assert_eq!(c.chown.as_deref(), Some("www-data:mediawiki-admins"));
    assert_eq!(c.canary.urls.len(), 2);
    assert_eq!(c.canary.expect_body, None);
    assert_eq!(c.canary.timeout, Duration::from_secs(90));
    assert_eq!(c.canary.retry_pause, Duration::from_millis(500));
    let g = c.canary.error_gate.as_ref().unwrap();
    assert_eq!((g.threshold, g.on_unknown), (4, OnUnknown::Pass));
    assert_eq!(c.rollout.failure_budget, FailureBudget::Percent(5));
    assert_eq!(c.rollout.on_failure, OnFailure::Continue);
    assert_eq!(c.l10n_command.as_ref().unwrap()[0], "php");

    // Servers: overrides, and per-server hooks replacing the global ones of that point.
    let [mw1, mw2, task] = &c.servers[..] else {
        panic!("three servers")
    };
    assert_eq!(mw1.hooks.post_activate.len(), 1);
    assert!(mw2.hooks.post_activate.is_empty(), "replaced by []");
    assert_eq!(mw2.hooks.post_repool.len(), 1, "the global one stays");
    assert_eq!(mw2.releases_dir, Path::new("/srv/releases"));
    let s2 = mw2.to_server();
    assert_eq!(s2.ssh_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(s2.ssh_port, Some(2202));
    assert_eq!(s2.backend_name().as_str(), "mw2-backend");
    assert_eq!(
        s2.canary,
        CanaryTarget::Urls(vec!["http://127.0.0.1:18102/wiki/Main_Page".into()])
    );
    assert!(!s2.hooks.contains(HookPoint::PostActivate));
    assert!(s2.hooks.contains(HookPoint::PostRepool));
    let t = task.to_server();
    assert!(!t.pooled);
    assert!(matches!(t.canary, CanaryTarget::Command(ref c) if c[0] == "systemctl"));

    // Proxies.
    assert_eq!(c.proxies.len(), 3);
    assert_eq!(c.proxies[0].socket, Path::new("/run/haproxy/admin.sock"));
    assert!(c.proxies[1].local);
    assert_eq!(c.proxies[1].socket, Path::new("/run/haproxy/local.sock"));
    assert_eq!(c.proxies[2].to_host().ssh_port, Some(2203));

    // Staging.
    assert_eq!(c.staging.prod_path, Path::new("/srv/staging-live"));
    let st = c.staging_server();
    assert!(st.local);
    assert!(st.hooks.contains(HookPoint::PostActivate));

    // Webhooks: an empty URL is off; a set one is kept out of Debug output.
    assert!(c.webhooks.slack.is_none());
    let d = c.webhooks.discord.as_ref().unwrap();
    assert_eq!(d.expose(), "https://discord.example/api/webhooks/1/x");
    assert!(!format!("{c:?}").contains("discord.example"));

    // The engine's types.
    let p = c.policy();
    assert_eq!((p.parallel, p.max_unavailable), (4, 2));
    assert_eq!(p.bake, Duration::from_secs(60));
    assert!(p.approve_stages);
    assert_eq!(p.canary.attempts, 5);
    // The steps' deadlines leave the adapter room past its own waits.
    assert_eq!(p.timeouts.depool, Duration::from_secs(45 + 20));
    assert_eq!(p.timeouts.repool, Duration::from_secs(10 + 20));
    assert!(!c.rollout.repool_after_check);
    assert_eq!(p.room_timeout, Duration::from_secs(120));
    assert_eq!(p.timeouts.copy, Duration::from_secs(1200));
    assert_eq!(p.timeouts.activate, Duration::from_secs(300));
    assert_eq!(p.timeouts.hook, Duration::from_secs(90));
    assert_eq!(p.error_gate.unwrap().window, Duration::from_secs(20));
    let ssh = c.ssh_defaults();
    assert_eq!(ssh.user, "deployer");
    assert_eq!(ssh.port, Some(2222));
    assert!(ssh.sudo);
    assert_eq!(c.servers().len(), 3);
    // backup_path is the only warning (every server of the release layout has a
    // post_activate hook but mw2, which is named).
    let w: Vec<String> = c.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("backup_path") && w[0].contains(":11:"),
        "{w:?}"
    );
    assert!(w[1].contains("post_activate hook for mw2"), "{w:?}");
}

#[test]
fn unknown_keys_name_the_key_its_map_and_its_place() {
    let e = error(
        &format!("{MIN}stagin_path: /x\n"),
        &[FILE, ":4:1:", "`stagin_path`"],
    );
    assert!(e.contains("did you mean `staging_path`"), "{e}");
    error(
        &format!("{MIN}rollout:\n  paralel: 2\n"),
        &[":5:3:", "`paralel` in `rollout`"],
    );
    error(
        "staging_path: /a\nprod_path: /b\nmw_servers:\n  - name: mw1\n    colour: blue\n",
        &[":5:5:", "`colour` in `mw_servers[0]`"],
    );
    error(
        &format!("{MIN}webhooks:\n  teams: x\n"),
        &[":5:3:", "`teams` in `webhooks`"],
    );
}

#[test]
fn wrong_types_and_bad_values_name_the_key_and_its_place() {
    let cases: &[(&str, &[&str])] = &[
        (
            "rollout:\n  parallel: abc\n",
            &[":5:13:", "rollout.parallel", "whole number"],
        ),
        (
            "rollout:\n  parallel: 0\n",
            &[":5:13:", "rollout.parallel", "too small"],
        ),
        ("rollout:\n  max_unavailable: -1\n", &[":5:20:", "negative"]),
        (
            "rollout:\n  bake: 15\n",
            &[":5:9:", "rollout.bake", "\"15s\""],
        ),
        (
            "rollout:\n  drain_timeout: 1x\n",
            &[":5:18:", "rollout.drain_timeout", "duration"],
        ),
        (
            "rollout:\n  repool_timeout: 0s\n",
            &[":5:19:", "longer than 0s"],
        ),
        (
            "rollout:\n  room_timeout: 0s\n",
            &[":5:17:", "rollout.room_timeout", "longer than 0s"],
        ),
        (
            "rollout:\n  repool_after_check: maybe\n",
            &[":5:23:", "repool_after_check", "boolean"],
        ),
        (
            "rollout:\n  stages: [1, 0]\n",
            &[":5:15:", "rollout.stages[1]", "at least 1"],
        ),
        (
            "rollout:\n  stages: [\"101%\"]\n",
            &["rollout.stages[0]", "1%..=100%"],
        ),
        ("rollout:\n  stages: []\n", &["rollout.stages", "is empty"]),
        ("rollout:\n  stages: [1, \"group:a\"]\n", &["mixes groups"]),
        (
            "rollout:\n  failure_budget: \"150%\"\n",
            &["rollout.failure_budget", "0%..=100%"],
        ),
        (
            "rollout:\n  on_failure: maybe\n",
            &["rollout.on_failure", "prompt"],
        ),
        (
            "canary:\n  timeout: 1 fortnight\n",
            &[":5:12:", "canary.timeout"],
        ),
        (
            "canary:\n  attempts: 0\n",
            &["canary.attempts", "at least 1 attempt"],
        ),
        (
            "canary:\n  expect_status: 42\n",
            &["canary.expect_status", "100..=599"],
        ),
        (
            "canary:\n  url: ftp://x\n",
            &[":5:8:", "canary.url", "http://"],
        ),
        (
            "canary:\n  url: [\"http://a\", \"gopher://b\"]\n",
            &["canary.url[1]", "http://"],
        ),
        (
            "canary:\n  error_gate: {log_file: /l, pattern: x, on_unknown: shrug}\n",
            &["on_unknown"],
        ),
        (
            "canary:\n  error_gate: {log_file: rel.log, pattern: x}\n",
            &["error_gate.log_file", "relative"],
        ),
        ("ssh_port: 70000\n", &[":4:11:", "ssh_port", "1..=65535"]),
        (
            "ssh_options: [\"-oProxyCommand=sh\"]\n",
            &["ssh_options[0]", "Key=Value"],
        ),
        (
            "keep_releases: 1\n",
            &[":4:16:", "keep_releases", "at least 2"],
        ),
        ("journal_keep: 0\n", &["journal_keep"]),
        (
            "release_layout: symlinks\n",
            &[":4:17:", "release_layout", "inplace"],
        ),
        ("remote_sudo: maybe\n", &["remote_sudo"]),
        ("deploy_user: [a]\n", &[":4:14:", "deploy_user"]),
        ("l10n_command: []\n", &["l10n_command", "null"]),
        (
            "hooks:\n  post_activate: [sudo, reload]\n",
            &["hooks.post_activate[0]", "argv list"],
        ),
        (
            "hooks:\n  post_activate: [[]]\n",
            &["hooks.post_activate[0]", "program"],
        ),
        (
            "hooks:\n  post_copy: [[\"x\", \"{prodpath}\"]]\n",
            &["unknown placeholder {prodpath}"],
        ),
        ("hooks:\n  on_switch: []\n", &["`on_switch` in `hooks`"]),
        (
            "shared_dirs: [\"../etc\"]\n",
            &["shared_dirs[0]", "may not"],
        ),
        ("chown: \"www data\"\n", &["chown", "' '"]),
        ("canary_vhost: \"a b\"\n", &["canary_vhost", "' '"]),
        (
            "haproxy_backend: [mediawiki, mediawiki]\n",
            &["listed twice"],
        ),
        (
            "haproxy_backend: \"-b\"\n",
            &["haproxy_backend", "may not start"],
        ),
        ("git_user: \"root;id\"\n", &["git_user", "';'"]),
        (
            "staging:\n  canary_url: localhost\n",
            &["staging.canary_url", "http://"],
        ),
    ];
    for (extra, parts) in cases {
        let text = format!("{MIN}{extra}");
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{extra:?}: {e:#?}");
        for p in *parts {
            assert!(e[0].contains(p), "{extra:?}: {:?} lacks {p:?}", e[0]);
        }
        assert!(e[0].starts_with(FILE), "{e:?}");
    }
}

#[test]
fn hostile_names_are_refused_wherever_they_appear() {
    let text = r#"
staging_path: /srv/st
prod_path: /srv/mw
mw_servers:
  - "-oProxyCommand=x"
  - name: "a;b"
  - name: ok1
    ssh_host: "../x"
  - name: ok2
    haproxy_server: "mw 2"
  - name: ok3
    group: ".hidden"
  - "mw1 mw2"
proxy_servers:
  - "$(reboot)"
  - name: lb2
    ssh_host: "-J evil"
"#;
    let e = errors(text);
    let expect = [
        (":5:5:", "\"-oProxyCommand=x\""),
        (":6:11:", "\"a;b\""),
        (":8:15:", "\"../x\""),
        (":10:21:", "\"mw 2\""),
        (":12:12:", "\".hidden\""),
        (":13:5:", "\"mw1 mw2\""),
        (":15:5:", "\"$(reboot)\""),
        (":17:15:", "\"-J evil\""),
    ];
    assert_eq!(e.len(), expect.len(), "{e:#?}");
    for (m, (at, name)) in e.iter().zip(expect) {
        assert!(
            m.contains(at) && m.contains(name),
            "{m:?} should hold {at} and {name}"
        );
    }
}

#[test]
fn duplicates_are_refused() {
    let e = error(
        "staging_path: /a\nprod_path: /b\nmw_servers: [mw1, mw2, mw1]\n",
        &["listed twice", "mw_servers[0]"],
    );
    assert!(e.contains(":3:24:"), "{e}");
    error(
        "staging_path: /a\nprod_path: /b\nmw_servers: [mw1, {name: mw2, haproxy_server: mw1}]\n",
        &["same name in the backend"],
    );
    error(
        &format!("{MIN}proxy_servers: [lb1, lb1]\n"),
        &["proxy \"lb1\" is listed twice"],
    );
    // A job runner is not in the backend: its name there cannot clash.
    ok("staging_path: /a\nprod_path: /b\nmw_servers: [mw1, {name: mw2, haproxy_server: mw1, pooled: false}]\n");
}

#[test]
fn a_server_is_checked_one_way() {
    error(
        "staging_path: /a\nprod_path: /b\nmw_servers:\n  - name: jr\n    canary_url: http://x/\n    canary_command: [\"true\"]\n",
        &[":4:5:", "mw_servers[0]", "both canary_url and canary_command"],
    );
}

#[test]
fn relative_paths_on_this_host_are_resolved_against_the_config_s_folder() {
    let text = r#"
staging_path: staging
prod_path: /srv/mediawiki
ssh_identity: keys/id_ed25519
log_file: ./log/mwdeploy.log
state_dir: state
mw_servers:
  - name: here
    local: true
    prod_path: live/here
proxy_servers:
  - name: lb
    local: true
    haproxy_socket: run/admin.sock
staging:
  prod_path: deploy-host/mediawiki
"#;
    let c = Config::parse(text, Path::new("/opt/fleet/config.yaml")).unwrap();
    assert_eq!(c.staging_path, Path::new("/opt/fleet/staging"));
    assert_eq!(
        c.ssh_identity.as_deref(),
        Some(Path::new("/opt/fleet/keys/id_ed25519"))
    );
    assert_eq!(c.log_file, Path::new("/opt/fleet/./log/mwdeploy.log"));
    assert_eq!(c.state_dir, Path::new("/opt/fleet/state"));
    assert_eq!(c.servers[0].prod_path, Path::new("/opt/fleet/live/here"));
    assert_eq!(c.proxies[0].socket, Path::new("/opt/fleet/run/admin.sock"));
    assert_eq!(
        c.staging.prod_path,
        Path::new("/opt/fleet/deploy-host/mediawiki")
    );
}

#[test]
fn relative_paths_on_other_hosts_are_refused() {
    error(
        "staging_path: /a\nprod_path: srv/mw\nmw_servers: [mw1]\n",
        &[":2:12:", "prod_path", "path on server mw1", "relative"],
    );
    error(
        "staging_path: /a\nprod_path: /b\nmw_servers: [{name: mw1, prod_path: rel}]\n",
        &["mw_servers[0].prod_path", "relative"],
    );
    error(
        &format!("{MIN}haproxy_socket: admin.sock\nproxy_servers: [lb1]\n"),
        &["haproxy_socket", "path on proxy lb1"],
    );
    // A relative socket is fine for a local proxy.
    ok(&format!(
        "{MIN}haproxy_socket: admin.sock\nproxy_servers: [{{name: lb1, local: true}}]\n"
    ));
}

#[test]
fn staging_stays_apart_from_live_trees_releases_and_state() {
    let cases = [
        (
            "staging_path: /srv/mediawiki\n",
            "is /srv/mediawiki (the live tree of server mw1)",
        ),
        (
            "staging_path: /srv/mediawiki/staging\n",
            "sits inside /srv/mediawiki (the live tree of server mw1)",
        ),
        (
            "staging_path: /srv\n",
            "contains /srv/mediawiki (the live tree of server mw1)",
        ),
        (
            "staging_path: /srv/mediawiki-releases/x\n",
            "sits inside /srv/mediawiki-releases (the releases dir of server mw1)",
        ),
        (
            "staging_path: /var/lib/mwdeploy\n",
            "is /var/lib/mwdeploy (state_dir)",
        ),
        (
            "staging_path: /srv/other/../mediawiki/\n",
            "is /srv/mediawiki (the live tree",
        ),
    ];
    for (staging, expect) in cases {
        let e = errors(&format!(
            "{staging}prod_path: /srv/mediawiki\nstaging:\n  prod_path: /srv/deploy-live\nmw_servers: [mw1]\n"
        ));
        assert!(
            e.iter().any(|m| m.contains(expect) && m.contains(":1:15:")),
            "{staging:?}: {e:#?}"
        );
    }
    // By default staging's live tree is prod_path: a staging_path inside it is refused too.
    error(
        "staging_path: /srv/mediawiki/x\nprod_path: /srv/mediawiki\nmw_servers: [{name: mw1, prod_path: /srv/mw1}]\n",
        &["sits inside /srv/mediawiki (staging.prod_path"],
    );
    ok("staging_path: /srv/mediawiki-staging\nprod_path: /srv/mediawiki\nmw_servers: [mw1]\n");
}

#[test]
fn stages_by_group_name_groups_every_server_is_in() {
    let head = "staging_path: /a\nprod_path: /b\n";
    ok(&format!(
        "{head}rollout: {{stages: [\"group:canary\", \"group:main\"]}}\nmw_servers: [{{name: mw1, group: canary}}, {{name: mw2, group: main}}]\n"
    ));
    error(
        &format!("{head}rollout: {{stages: [\"group:canary\", \"group:typo\"]}}\nmw_servers: [{{name: mw1, group: canary}}]\n"),
        &["group:typo names a group no server"],
    );
    error(
        &format!("{head}rollout: {{stages: [\"group:canary\"]}}\nmw_servers: [{{name: mw1, group: canary}}, mw2]\n"),
        &["mw2", "no group listed in rollout.stages"],
    );
}

#[test]
fn the_release_layout_without_post_activate_is_a_warning() {
    let c = ok(&format!("{MIN}release_layout: releases\n"));
    let w: Vec<String> = c.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains(":4:17:") && w[0].contains("any server") && w[0].contains("php-fpm"),
        "{w:?}"
    );
    let c = ok(&format!(
        "{MIN}release_layout: releases\nhooks: {{post_activate: [[\"systemctl\", \"reload\", \"php-fpm\"]]}}\n"
    ));
    assert!(c.warnings().is_empty());
    let c = ok(&format!("{MIN}hooks: {{post_copy: [[\"true\"]]}}\n"));
    assert!(c.warnings()[0]
        .message
        .contains("only in the release layout"));
}

#[test]
fn webhook_urls_are_never_quoted() {
    let e = error(
        &format!("{MIN}webhooks:\n  discord: \"ftp://hooks.example/secret-token\"\n"),
        &["webhooks.discord", "not shown"],
    );
    assert!(!e.contains("secret-token"), "{e}");
    let c = ok(&format!("{MIN}webhooks:\n  discord: \"\"\n  slack: null\n"));
    assert_eq!(c.webhooks, Default::default());
}

#[test]
fn null_turns_off_what_has_a_default() {
    let c = ok(&format!(
        "{MIN}git_user: null\nssh_identity: null\nl10n_command: null\ncanary:\n  expect_body: null\n"
    ));
    assert_eq!(c.git_user, None);
    assert_eq!(c.ssh_identity, None);
    assert_eq!(c.l10n_command, None);
    assert_eq!(c.canary.expect_body, None);
}

#[test]
fn all_errors_are_reported_at_once() {
    let e = errors(
        "staging_path: /a\nprod_path: /b\nssh_port: 0\nkeep_releases: 1\nmw_servers: [\"-x\"]\n",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
}

#[test]
fn placeholders_are_words_between_braces() {
    assert_eq!(
        placeholders("{prod_path}/x/{release}"),
        ["prod_path", "release"]
    );
    assert!(placeholders("awk '{print $1}'").is_empty());
    assert!(placeholders("{}").is_empty());
    assert_eq!(placeholders("{{server}}"), ["server"]);
}

#[test]
fn diagnostics_read_file_line_column_message() {
    let d = Diagnostic {
        file: PathBuf::from("/c.yaml"),
        at: Some(super::Loc { line: 3, column: 7 }),
        message: "k: m".into(),
    };
    assert_eq!(d.to_string(), "/c.yaml:3:7: k: m");
    let d = Diagnostic { at: None, ..d };
    assert_eq!(d.to_string(), "/c.yaml: k: m");
}

#[test]
fn metrics_file_is_a_path_on_the_deploy_host() {
    let c = ok(&format!(
        "{MIN}metrics_file: /var/lib/node_exporter/mwdeploy.prom\n"
    ));
    assert_eq!(
        c.metrics_file.as_deref(),
        Some(Path::new("/var/lib/node_exporter/mwdeploy.prom"))
    );
    let c = ok(&format!("{MIN}metrics_file: metrics/mwdeploy.prom\n"));
    assert_eq!(
        c.metrics_file.as_deref(),
        Some(Path::new("/etc/mwdeploy/metrics/mwdeploy.prom"))
    );
    assert_eq!(ok(MIN).metrics_file, None);
}
