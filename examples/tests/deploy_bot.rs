//! The deploy bot example, run against the loopback test fleet (HAProxy, nginx +
//! php-fpm, one sshd per server): a request deploys staging to every server through the
//! embedding API, and a second request while the lock is held is refused, naming who
//! holds it.

#[path = "../deploy_bot.rs"]
mod deploy_bot;

use deploy_bot::{handle, Channel, Request, SafeBot};
use mwdeploy_core::Verdict;
use mwdeploy_runtime::lock::{DeployLock, Holder};
use testfleet::{write_stamp, Fleet, Layout, INITIAL_STAMP};

fn fleet() -> Fleet {
    Fleet::builder()
        .servers(2)
        .proxies(1)
        .tree(40, 1)
        .layout(Layout::Releases)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet (scripts/install-deps.sh): {e}"))
}

fn config(fleet: &Fleet) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = fleet.root().join("bot.yaml");
    std::fs::write(&path, fleet.config_yaml(Layout::Releases)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn requests_are_read_like_chat_messages() {
    let r = Request::parse("deploy mw1, mw2: T1 hotfix").unwrap();
    assert_eq!(r.servers, Some(vec!["mw1".into(), "mw2".into()]));
    assert_eq!(r.reason.as_deref(), Some("T1 hotfix"));
    assert_eq!(Request::parse("deploy all").unwrap().servers, None);
    assert!(Request::parse("hello").is_none());
}

#[test]
fn the_bot_deploys_to_the_real_fleet_and_a_held_lock_refuses_it() {
    let fleet = fleet();
    let c = config(&fleet);
    write_stamp(fleet.staging().path(), "bot-v2").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let (mut channel, mut bot) = (Channel::default(), SafeBot::default());
    let verdict = rt
        .block_on(handle(&c, "deploy all: bot test", &mut channel, &mut bot))
        .unwrap_or_else(|e| panic!("{e}\n{:?}", channel.lines));
    assert_eq!(verdict, Verdict::Done, "{:?}", channel.lines);
    for (server, stamp) in fleet.served_stamps() {
        assert_eq!(stamp.unwrap(), "bot-v2", "{server}");
    }
    assert!(
        channel.lines.iter().any(|l| l == "mw1 ✓"),
        "{:?}",
        channel.lines
    );
    assert!(
        channel.lines.iter().any(|l| l == "mw2 ✓"),
        "{:?}",
        channel.lines
    );
    assert!(
        channel
            .lines
            .last()
            .unwrap()
            .starts_with("finished (Done): 2 succeeded"),
        "{:?}",
        channel.lines
    );
    assert!(
        bot.asked.is_empty(),
        "nothing failed, nothing asked: {:?}",
        bot.asked
    );

    // Someone else holds the lock: refused, named, nothing touched.
    write_stamp(fleet.staging().path(), "bot-v3").unwrap();
    let held = DeployLock::acquire(&fleet.state_dir(), Holder::current("hand deploy")).unwrap();
    let (mut channel, mut bot) = (Channel::default(), SafeBot::default());
    let e = rt
        .block_on(handle(&c, "deploy mw1", &mut channel, &mut bot))
        .unwrap_err();
    assert!(e.starts_with("busy: ") && e.contains("hand deploy"), "{e}");
    drop(held);
    for (server, stamp) in fleet.served_stamps() {
        let stamp = stamp.unwrap();
        assert_eq!(stamp, "bot-v2", "{server}");
        assert_ne!(stamp, INITIAL_STAMP);
    }
    fleet.shutdown().unwrap();
}
