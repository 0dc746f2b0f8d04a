//! `mwdeploy pool depool|repool` and `mwdeploy check-config`, run as processes against
//! the test fleet with two proxies: pool changes confirmed on both, a repool refused when
//! the server's canary fails (and forced), every host reached, a changed host key
//! printed and never accepted.

mod support;
use support::*;
use testfleet::{Fault, Fleet, Layout, PoolState};

/// mw2's state on every proxy.
fn mw2(fleet: &Fleet) -> Vec<PoolState> {
    fleet
        .proxies()
        .iter()
        .map(|p| {
            p.server_states()
                .unwrap()
                .into_iter()
                .find(|s| s.name == "mw2")
                .expect("mw2 in the backend")
                .state
        })
        .collect()
}

#[test]
fn depool_and_repool_on_every_proxy_and_a_repool_refused_by_the_canary() {
    let fleet = fleet_behind(2, 2, Layout::Releases, 20);
    let c = config(&fleet, Layout::Releases, |y| y);

    let o = mwdeploy(&c, &["pool", "depool", "mw2"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("mw2: depooled on lb1, lb2"), "{out}");
    assert_eq!(mw2(&fleet), [PoolState::Maint, PoolState::Maint]);
    // Journaled as its own finished run: recover leaves it out.
    let r = mwdeploy(&c, &["recover"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(mw2(&fleet), [PoolState::Maint, PoolState::Maint]);

    let o = mwdeploy(&c, &["pool", "repool", "mw2"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("mw2: canary attempt 1: ok"), "{out}");
    assert!(out.contains("mw2: repooled on lb1, lb2"), "{out}");
    assert_eq!(mw2(&fleet), [PoolState::Up, PoolState::Up]);
    let journal = journals(&fleet);
    assert!(
        journal.contains(r#""action":"depool","phase":"result","ok":true"#),
        "{journal}"
    );

    // A server whose canary fails stays out; --force puts it back without the canary.
    let o = mwdeploy(&c, &["pool", "depool", "mw2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    fleet.inject(Fault::PageError(1)).unwrap();
    let o = mwdeploy(&c, &["pool", "repool", "mw2"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}\n{err}", text(&o.stdout));
    assert!(err.contains("mw2 failed its canary: not repooled"), "{err}");
    assert_eq!(mw2(&fleet), [PoolState::Maint, PoolState::Maint]);
    fleet.clear(Fault::PageError(1)).unwrap();
    let o = mwdeploy(&c, &["pool", "repool", "mw2", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("canary"), "{}", text(&o.stdout));
    assert_eq!(mw2(&fleet), [PoolState::Up, PoolState::Up]);

    // Names are checked before anything runs.
    for bad in [
        &["pool", "depool", "mw9"][..],
        &["pool", "depool", "../mw2"],
    ] {
        let o = mwdeploy(&c, bad);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", text(&o.stderr));
    }
    assert_eq!(mw2(&fleet), [PoolState::Up, PoolState::Up]);
}

#[test]
fn check_config_reaches_every_host_and_prints_a_changed_host_key() {
    let fleet = fleet_behind(2, 1, Layout::Inplace, 20);
    let c = config(&fleet, Layout::Inplace, |y| y);
    let o = mwdeploy(&c, &["check-config"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("proxy lb1: reached"), "{out}");
    assert!(
        out.contains("server mw1: reached") && out.contains("server mw2: reached"),
        "{out}"
    );
    assert!(out.contains("everything was reached"), "{out}");

    fleet.inject(Fault::SshHostKeyChanged(1)).unwrap();
    let known = std::fs::read_to_string(fleet.known_hosts()).unwrap();
    let o = mwdeploy(&c, &["check-config"]);
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("server mw2: NOT reached"), "{out}");
    assert!(out.contains("its host key, to check"), "{out}");
    assert!(out.contains("ssh-ed25519"), "{out}");
    // Printed, never accepted.
    assert_eq!(std::fs::read_to_string(fleet.known_hosts()).unwrap(), known);
    fleet.clear(Fault::SshHostKeyChanged(1)).unwrap();
}
