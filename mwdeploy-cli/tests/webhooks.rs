//! Webhooks and the log file of a real `--rsync` deploy against the test fleet: start and
//! finish are posted with the `-m` message, a 429 is retried after its Retry-After, the
//! log file gets lines, `--no-log` posts and logs nothing, and the webhook URL is never
//! shown (stdout, stderr, journal, log).

use std::path::PathBuf;
use std::time::Instant;

mod support;
use support::*;
use testfleet::{write_stamp, Fleet, Layout};

#[test]
fn deploys_post_start_and_finish_retry_a_429_and_no_log_stays_quiet() {
    let fleet = Fleet::builder()
        .servers(1)
        .proxies(1)
        .tree(20, 1)
        .layout(Layout::Releases)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet (scripts/install-deps.sh): {e}"));
    let yaml = fleet.config_yaml(Layout::Releases);
    let log: PathBuf = fleet.root().join("mwdeploy.log");
    assert!(yaml.contains(&log.display().to_string()), "{yaml}");
    let c = fleet.root().join("mwdeploy-test.yaml");
    std::fs::write(&c, yaml).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let hooks = fleet.webhooks();
    let secrets = [hooks.discord_url(), hooks.slack_url()];

    // --no-log: nothing posted, no log file.
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let o = mwdeploy(&c, &["--rsync", "--no-tui", "--no-log", "-m", "quiet one"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(hooks.posts().is_empty(), "{:?}", hooks.posts());
    assert!(!log.exists(), "no log file with --no-log");

    // The first post (Discord's start) is rate limited: retried after 2 s.
    hooks.reply_next(429, Some(2));
    write_stamp(fleet.staging().path(), "v3").unwrap();
    let started = Instant::now();
    let o = mwdeploy(&c, &["--rsync", "--no-tui", "-m", "ticket T42 <@everyone>"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        started.elapsed().as_secs_f64() >= 2.0,
        "waited for Retry-After"
    );

    let posts = hooks.posts();
    let discord: Vec<_> = posts.iter().filter(|p| p.path == "/discord").collect();
    let slack: Vec<_> = posts.iter().filter(|p| p.path == "/slack").collect();
    assert_eq!(discord.len(), 3, "429, its retry, the finish: {posts:?}");
    assert_eq!(discord[0].answered, 429);
    assert_eq!(discord[0].body, discord[1].body, "the retry posts the same");
    assert_eq!(discord[1].answered, 204);
    assert_eq!(slack.len(), 2, "{posts:?}");
    for p in &posts {
        assert_eq!(p.method, "POST");
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
    }
    let body = |p: &testfleet::WebhookPost| -> serde_json::Value {
        serde_json::from_str(&p.body).unwrap_or_else(|e| panic!("{e}: {}", p.body))
    };
    let start = body(discord[1]);
    let start_text = start["content"].as_str().unwrap();
    assert!(
        start_text.contains("started on 1 server (mw1)"),
        "{start_text}"
    );
    assert!(
        start_text.contains("ticket T42 <@everyone>"),
        "{start_text}"
    );
    assert_eq!(start["allowed_mentions"]["parse"], serde_json::json!([]));
    let finish = body(discord[2]);
    assert!(
        finish["content"]
            .as_str()
            .unwrap()
            .contains("finished: 1 succeeded"),
        "{finish}"
    );
    let slack_start = body(slack[0]);
    assert!(
        slack_start["text"]
            .as_str()
            .unwrap()
            .contains("ticket T42 &lt;@everyone&gt;"),
        "{slack_start}"
    );
    assert!(body(slack[1])["text"]
        .as_str()
        .unwrap()
        .contains("finished"));

    // The log file: lines of this deploy only, time and deploy id first.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().count() >= 3, "{logged}");
    assert!(logged.contains("deploy started:"), "{logged}");
    assert!(logged.contains("deploy finished: 1 succeeded"), "{logged}");
    assert!(logged.lines().all(|l| l.contains("Z ")), "{logged}");

    // The URL is shown nowhere.
    let journal = journals(&fleet);
    for shown in [&out, &err, &journal, &logged] {
        for s in &secrets {
            assert!(!shown.contains(s.as_str()), "{s} shown in:\n{shown}");
            assert!(
                !shown.contains("/discord") && !shown.contains("/slack"),
                "{shown}"
            );
        }
    }
}

#[test]
fn an_unreachable_webhook_is_a_warning_without_its_url() {
    // A port nothing listens on, and a host name that does not resolve.
    let dead = "http://127.0.0.1:9/discord/SECRETTOKEN";
    let bad = "http://no-such-host.invalid/slack/OTHERTOKEN";
    let (fleet, c) = one_server_with_webhooks(dead, Some(bad));
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let o = mwdeploy(&c, &["--rsync", "--json"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("notification not delivered") && out.contains("<webhook>"),
        "{out}"
    );
    let logged = std::fs::read_to_string(fleet.root().join("mwdeploy.log")).unwrap();
    let journal = journals(&fleet);
    for shown in [&out, &err, &journal, &logged] {
        for s in ["SECRETTOKEN", "OTHERTOKEN", "no-such-host", "127.0.0.1:9"] {
            assert!(!shown.contains(s), "{s} shown in:\n{shown}");
        }
    }
}

/// A webhook that takes the connection and never answers (each curl attempt would wait
/// its 10 s): the deploy ends once the driver's grace for notifications is over, with a
/// warning that says they were given up, and the URL is shown nowhere.
#[test]
fn a_webhook_that_never_answers_does_not_hold_the_end_of_the_deploy() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepts every connection and keeps it open, never writing a byte.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.extend(c.ok());
        }
    });
    let hanging = format!("http://127.0.0.1:{port}/discord/SECRETTOKEN");
    let (fleet, c) = one_server_with_webhooks(&hanging, None);
    write_stamp(fleet.staging().path(), "v2").unwrap();
    let o = mwdeploy(&c, &["--rsync", "--json"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.lines().any(|l| l.contains("\"warning\"")
            && l.contains("still posting")
            && l.contains("given up")),
        "{out}"
    );
    for shown in [&out, &err, &journals(&fleet)] {
        assert!(!shown.contains("SECRETTOKEN"), "the URL shown in:\n{shown}");
        assert!(!shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    }
}

/// A one-server fleet and its config (0600), with the Discord webhook at `discord` and,
/// if given, the Slack one at `slack` instead of the fleet's receiver.
fn one_server_with_webhooks(discord: &str, slack: Option<&str>) -> (Fleet, PathBuf) {
    let fleet = Fleet::builder()
        .servers(1)
        .proxies(1)
        .tree(20, 1)
        .layout(Layout::Releases)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet (scripts/install-deps.sh): {e}"));
    let mut yaml = fleet
        .config_yaml(Layout::Releases)
        .replace(&fleet.webhooks().discord_url(), discord);
    if let Some(slack) = slack {
        yaml = yaml.replace(&fleet.webhooks().slack_url(), slack);
    }
    let c = fleet.root().join("mwdeploy-test.yaml");
    std::fs::write(&c, yaml).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&c, std::fs::Permissions::from_mode(0o600)).unwrap();
    (fleet, c)
}
