//! The adapter against real HAProxy processes (and socat for the remote transport).
//!
//! Each test starts its own HAProxy with admin sockets in a temp dir, in front of tiny
//! HTTP servers on loopback. Nothing is skipped: a missing haproxy or socat fails the
//! test with a message naming scripts/install-deps.sh.

mod support;

use std::sync::Arc;
use std::time::Duration;

use mwdeploy_core::ports::{PoolControl, Progress};
use mwdeploy_core::{PoolState, PortErrorKind, Server, ServerId};
use mwdeploy_exec::{CommandRunner, LocalRunner};
use mwdeploy_haproxy::reply::check_empty;
use mwdeploy_haproxy::stat::AdminState;
use mwdeploy_haproxy::{HaproxyError, HaproxyPool, Proxy, Refusal, Transport};
use mwdeploy_sim::conformance::{pool_round_trip, pool_unknown_server_fails};
use support::{checked, get, local_proxy, pool, recorder, require, until, Haproxy, Member, Web};

const LONG: Duration = Duration::from_secs(20);
const GUARD: Duration = Duration::from_secs(60);

fn server(web: &Web) -> Server {
    Server::new(web.id())
}

fn one_backend<'a>(webs: &[&'a Web]) -> Vec<(&'static str, Vec<Member<'a>>)> {
    vec![("mediawiki", webs.iter().map(|w| checked(w)).collect())]
}

#[tokio::test]
async fn depool_waits_for_a_slow_request_and_sends_no_new_request_to_the_server() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let pool = Arc::new(pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, LONG));

    // A slow request in flight on mw1.
    let fe = lb.frontend.clone();
    let slow = std::thread::spawn(move || get(&fe, "/pin/mw1/hold"));
    until("the slow request to reach mw1", || mw1.holding() == 1).await;

    let (progress, lines) = recorder(mw1.id());
    let depool = {
        let (pool, s, p) = (pool.clone(), server(&mw1), progress.clone());
        tokio::spawn(async move { pool.depool(&s, &p).await })
    };
    until("the depool to wait for the open session", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("waiting for 1 session"))
    })
    .await;
    assert_eq!(lb.status("mediawiki", "mw1"), "DRAIN");

    // While it drains, new requests go to mw2 only.
    only_mw2_answers(&lb, &mw1, "a new request reached the draining server").await;
    assert!(
        !depool.is_finished(),
        "the depool finished while a request was still in flight"
    );

    mw1.release_holds();
    let result = tokio::time::timeout(GUARD, depool).await.unwrap().unwrap();
    result.unwrap();
    let (code, body) = slow.join().unwrap();
    assert_eq!(
        (code, body.as_str()),
        (200, "held by mw1"),
        "the slow request was cut"
    );
    assert_eq!(lb.status("mediawiki", "mw1"), "MAINT");
    assert_eq!(pool.state(&server(&mw1)).await.unwrap(), PoolState::Maint);
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("drain timeout")),
        "{:?}",
        lines.lock().unwrap()
    );
}

#[tokio::test]
async fn the_drain_timeout_is_honoured_with_a_session_that_never_ends() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let pool = pool(
        vec![local_proxy(&lb)],
        &["mediawiki"],
        Duration::from_millis(400),
        LONG,
    );
    // Never released during the test: a sticky session that does not end.
    let fe = lb.frontend.clone();
    let _endless = std::thread::spawn(move || get(&fe, "/pin/mw1/hold"));
    until("the endless request to reach mw1", || mw1.holding() == 1).await;

    let (progress, lines) = recorder(mw1.id());
    tokio::time::timeout(GUARD, pool.depool(&server(&mw1), &progress))
        .await
        .expect("the depool must end at its drain bound")
        .unwrap();
    assert_eq!(
        mw1.holding(),
        1,
        "the session is still open: the bound ended the wait"
    );
    assert_eq!(lb.status("mediawiki", "mw1"), "MAINT");
    let lines = lines.lock().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("drain timeout") && l.contains("1 session")),
        "the progress must say the drain was cut short: {lines:?}"
    );
}

#[tokio::test]
async fn repool_confirms_that_haproxy_serves_the_server_again() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let pool = pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, LONG);
    let (progress, lines) = recorder(mw1.id());
    pool.depool(&server(&mw1), &progress).await.unwrap();
    assert_eq!(pool.state(&server(&mw1)).await.unwrap(), PoolState::Maint);

    pool.repool(&server(&mw1), &progress).await.unwrap();
    assert_eq!(
        lb.status("mediawiki", "mw1").split_whitespace().next(),
        Some("UP")
    );
    assert_eq!(pool.state(&server(&mw1)).await.unwrap(), PoolState::Up);
    // Served at once: round robin over two servers sends it some of four requests.
    some_request_reaches(&lb, &mw1, "no request reached the repooled server").await;
    assert!(
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("served in mediawiki")),
        "{:?}",
        lines.lock().unwrap()
    );
}

#[tokio::test]
async fn repool_of_a_server_whose_health_check_fails_reports_it_once_haproxy_has_it_down() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    // Far beyond the two failed checks (100 ms apart) that take it down: the repool
    // says so then, as a failure, and does not wait for this bound (a timeout).
    let repool_timeout = LONG;

    // A server already failing its checks when it is depooled.
    mw1.set_healthy(false);
    lb.wait_status("mediawiki", "mw1", "DOWN");
    let pool1 = pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, repool_timeout);
    let progress = Progress::discard(mw1.id());
    pool1.depool(&server(&mw1), &progress).await.unwrap();
    let err = tokio::time::timeout(GUARD, pool1.repool(&server(&mw1), &progress))
        .await
        .expect("the repool must end once the checks failed")
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Permanent, "{err}");
    assert!(
        err.detail.contains("failed HAProxy's health check"),
        "{err}"
    );
    assert_eq!(err.proxy.as_deref(), Some("lb1"));
    assert!(err.detail.contains("DOWN"), "{err}");
    assert!(err.detail.contains("L7STS"), "the check's words: {err}");
    assert!(err.to_string().contains("mw1"), "{err}");
    assert!(err.detail.contains("put back in maintenance"), "{err}");
    assert_eq!(lb.status("mediawiki", "mw1"), "MAINT");

    // A server that broke while out of the pool, repooled by a fresh process (as after
    // `mwdeploy recover`, which knows nothing of before): not served, and said so.
    // Mended, it is repooled (a check passes), then depooled and breaks while out.
    mw1.set_healthy(true);
    pool1.repool(&server(&mw1), &progress).await.unwrap();
    assert_eq!(lb.status("mediawiki", "mw1"), "UP");
    pool1.depool(&server(&mw1), &progress).await.unwrap();
    mw1.set_healthy(false);
    let pool2 = pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, repool_timeout);
    let err = tokio::time::timeout(GUARD, pool2.repool(&server(&mw1), &progress))
        .await
        .expect("the repool must end once the checks failed")
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Permanent, "{err}");
    assert!(
        err.detail.contains("failed HAProxy's health check"),
        "{err}"
    );
    assert_eq!(lb.status("mediawiki", "mw1"), "MAINT");
}

#[tokio::test]
async fn a_server_gets_no_request_and_is_not_repooled_before_its_check_passed() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let bound = Duration::from_millis(1500);
    let pool = Arc::new(pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, bound));
    let (progress, lines) = recorder(mw1.id());
    pool.depool(&server(&mw1), &progress).await.unwrap();

    // From now on a health check of mw1 gets no answer until the test says so. The
    // pool saw it UP before the depool and its canary "passed": no matter, HAProxy's
    // check decides.
    mw1.set_slow_health(true);
    let repool = {
        let (pool, s, p) = (pool.clone(), server(&mw1), progress.clone());
        tokio::spawn(async move { pool.repool(&s, &p).await })
    };
    until("the repool to wait for the check", || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("waiting for mediawiki/mw1 to pass its check"))
    })
    .await;
    // Out of maintenance, checked, and sent no request while its check hangs.
    assert!(lb.status("mediawiki", "mw1").starts_with("DRAIN"));
    let hits_before = mw1.hits();
    only_mw2_answers(&lb, &mw1, "a request reached mw1 before its check").await;
    assert!(lb.status("mediawiki", "mw1").starts_with("DRAIN"));

    let err = tokio::time::timeout(GUARD, repool)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Timeout, "{err}");
    assert!(err.detail.contains("mediawiki/mw1"), "{err}");
    assert!(err.detail.contains("DRAIN"), "{err}");
    assert_eq!(lb.status("mediawiki", "mw1"), "MAINT");
    assert_eq!(mw1.hits(), hits_before);
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("served in") || l.contains("passed its check")),
        "{:?}",
        lines.lock().unwrap()
    );

    // Its check answers again: the same pool repools it, and it is served.
    mw1.set_slow_health(false);
    tokio::time::timeout(GUARD, pool.repool(&server(&mw1), &progress))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lb.status("mediawiki", "mw1"), "UP");
    some_request_reaches(&lb, &mw1, "no request reached the repooled server").await;
}

#[tokio::test]
async fn without_the_check_wait_a_repool_serves_the_server_at_once_and_haproxy_checks_it_in_the_pool(
) {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let waiting = pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, LONG);
    let pool = HaproxyPool::new(waiting.config().clone().after_check(false)).unwrap();
    let (progress, lines) = recorder(mw1.id());
    pool.depool(&server(&mw1), &progress).await.unwrap();

    // Its health check now hangs (60 s check timeout): with the wait, this repool
    // could not end before the 20 s bound; without it, `state ready` is enough.
    mw1.set_slow_health(true);
    tokio::time::timeout(
        Duration::from_secs(5),
        pool.repool(&server(&mw1), &progress),
    )
    .await
    .expect("a repool without the check wait must not wait for the check")
    .unwrap();
    let status = lb.status("mediawiki", "mw1");
    assert!(status.starts_with("UP"), "served at once: {status}");
    assert!(
        !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("pass its check")),
        "no DRAIN step: {:?}",
        lines.lock().unwrap()
    );
    // Served before any check passed: the trade-off the default avoids.
    some_request_reaches(&lb, &mw1, "no request reached mw1").await;
    mw1.set_slow_health(false);
}

#[tokio::test]
async fn a_server_one_proxy_checks_down_is_taken_out_of_the_proxies_that_served_it() {
    // lb1 and lb2 both know a server `mw1`, but each reaches its own copy of it: lb1's
    // answers its check, lb2's does not once depooled (a proxy on another path to it).
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let mw1_via_lb2 = Web::start("mw1");
    let lb1 = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let lb2 = Haproxy::start("lb2", &one_backend(&[&mw1_via_lb2, &mw2]));
    let pool = pool(
        vec![local_proxy(&lb1), local_proxy(&lb2)],
        &["mediawiki"],
        LONG,
        LONG,
    );
    let progress = Progress::discard(mw1.id());
    pool.depool(&server(&mw1), &progress).await.unwrap();
    mw1_via_lb2.set_healthy(false);

    let err = tokio::time::timeout(GUARD, pool.repool(&server(&mw1), &progress))
        .await
        .expect("the repool must end once lb2's checks failed")
        .unwrap_err();
    assert_eq!(err.proxy.as_deref(), Some("lb2"), "{err}");
    assert!(
        err.detail.contains("failed HAProxy's health check"),
        "{err}"
    );
    // Out of both: a server one proxy's check rejects gets no request from the other.
    assert_eq!(lb2.status("mediawiki", "mw1"), "MAINT");
    assert_eq!(lb1.status("mediawiki", "mw1"), "MAINT");
    mw1_via_lb2.set_healthy(true);
}

#[tokio::test]
async fn a_server_without_a_check_is_made_ready_at_once() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb = Haproxy::start(
        "lb1",
        &[(
            "mediawiki",
            vec![
                Member {
                    web: &mw1,
                    check: false,
                },
                checked(&mw2),
            ],
        )],
    );
    let (progress, lines) = recorder(mw1.id());
    let pool1 = pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, LONG);
    pool1.depool(&server(&mw1), &progress).await.unwrap();
    pool1.repool(&server(&mw1), &progress).await.unwrap();
    assert_eq!(lb.status("mediawiki", "mw1"), "no check");
    // A fresh process (no memory of before) asks HAProxy whether it has a check.
    pool1.depool(&server(&mw1), &progress).await.unwrap();
    let pool2 = pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, LONG);
    pool2.repool(&server(&mw1), &progress).await.unwrap();
    assert_eq!(lb.status("mediawiki", "mw1"), "no check");
    let lines = lines.lock().unwrap();
    assert!(
        !lines.iter().any(|l| l.contains("pass its check")),
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("served in")).count(),
        2,
        "{lines:?}"
    );
}

#[tokio::test]
async fn haproxy_refusals_are_errors_and_no_such_server_leaves_nothing_half_done() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb1 = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    // lb2 does not know mw2.
    let lb2 = Haproxy::start("lb2", &one_backend(&[&mw1]));

    // HAProxy's own words, read and classified.
    let t = Transport::local(&lb1.admin).unwrap();
    let timeout = Duration::from_secs(5);
    for (line, want) in [
        (
            "set server mediawiki/mw9 state drain",
            Refusal::NoSuchServer,
        ),
        ("set server nope/mw1 state drain", Refusal::NoSuchBackend),
        ("frobnicate the pool", Refusal::UnknownCommand),
        ("set server mediawiki/mw1 state sideways", Refusal::Other),
    ] {
        let reply = t.send("lb1", line, timeout).await.unwrap();
        let (words, reason) = check_empty(&reply).unwrap_err();
        assert_eq!(reason, want, "{line}: {words}");
    }
    let ok = t
        .send("lb1", "set server mediawiki/mw1 state ready", timeout)
        .await
        .unwrap();
    assert!(check_empty(&ok).is_ok(), "{ok:?}");

    // Through the pool: the depool fails, names lb2, and changes nothing on lb1.
    let pool = pool(
        vec![local_proxy(&lb1), local_proxy(&lb2)],
        &["mediawiki"],
        LONG,
        LONG,
    );
    let err = pool
        .depool(&server(&mw2), &Progress::discard(mw2.id()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Permanent, "{err}");
    assert_eq!(err.proxy.as_deref(), Some("lb2"), "{err}");
    assert!(err.detail.contains("no server mw2"), "{err}");
    assert_eq!(lb1.status("mediawiki", "mw2"), "UP");
    assert!(
        pool.state(&server(&mw2)).await.is_err(),
        "lb2 does not know mw2"
    );

    // A server no proxy knows: core's conformance check.
    let ghost = Server::new(ServerId::new("mw9").unwrap());
    pool_unknown_server_fails(&pool, &ghost).await.unwrap();
}

#[tokio::test]
async fn a_missing_socket_is_a_typed_error_with_its_path() {
    let mw1 = Web::start("mw1");
    let lb = Haproxy::start("lb1", &one_backend(&[&mw1]));
    let missing = lb.dir().join("no-such.sock");
    let pool = pool(
        vec![Proxy::new("lb1", Transport::local(&missing).unwrap()).unwrap()],
        &["mediawiki"],
        LONG,
        LONG,
    );
    let err = pool.state(&server(&mw1)).await.unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Misconfigured, "{err}");
    assert_eq!(err.proxy.as_deref(), Some("lb1"));
    assert!(err.detail.contains(&missing.display().to_string()), "{err}");
    assert!(err.detail.contains("does not exist"), "{err}");
    let err = pool
        .depool(&server(&mw1), &Progress::discard(mw1.id()))
        .await
        .unwrap_err();
    assert!(err.detail.contains("does not exist"), "{err}");
    assert_eq!(lb.status("mediawiki", "mw1"), "UP");
}

#[tokio::test]
async fn a_socket_without_admin_level_is_permission_denied() {
    let mw1 = Web::start("mw1");
    let lb = Haproxy::start("lb1", &one_backend(&[&mw1]));
    let pool = pool(
        vec![Proxy::new("lb1", Transport::local(&lb.user).unwrap()).unwrap()],
        &["mediawiki"],
        LONG,
        LONG,
    );
    // Reading works at level user.
    assert_eq!(pool.state(&server(&mw1)).await.unwrap(), PoolState::Up);
    let err = pool
        .depool(&server(&mw1), &Progress::discard(mw1.id()))
        .await
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Misconfigured, "{err}");
    assert_eq!(err.proxy.as_deref(), Some("lb1"));
    assert!(err.detail.contains("Permission denied"), "{err}");
    assert!(err.detail.contains("level admin"), "{err}");
    assert!(
        err.detail.contains("set server mediawiki/mw1 state drain"),
        "{err}"
    );
    assert!(err.detail.contains("nothing had been changed"), "{err}");
    assert_eq!(lb.status("mediawiki", "mw1"), "UP");
}

#[tokio::test]
async fn one_proxy_down_during_a_depool_puts_the_other_back_and_names_it() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb1 = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let mut lb2 = Haproxy::start("lb2", &one_backend(&[&mw1, &mw2]));
    let pool = Arc::new(pool(
        vec![local_proxy(&lb1), local_proxy(&lb2)],
        &["mediawiki"],
        LONG,
        LONG,
    ));
    // A session through lb2 keeps its drain waiting; lb1 has none and goes to MAINT.
    let fe = lb2.frontend.clone();
    let _slow = std::thread::spawn(move || get(&fe, "/pin/mw1/hold"));
    until("the slow request to reach mw1", || mw1.holding() == 1).await;

    let (progress, lines) = recorder(mw1.id());
    let depool = {
        let (pool, s, p) = (pool.clone(), server(&mw1), progress.clone());
        tokio::spawn(async move { pool.depool(&s, &p).await })
    };
    until("lb1 to finish and lb2 to wait", || {
        let l = lines.lock().unwrap();
        l.iter()
            .any(|l| l.starts_with("proxy lb1: mw1 in maintenance"))
            && l.iter()
                .any(|l| l.starts_with("proxy lb2: waiting for 1 session"))
    })
    .await;
    assert_eq!(lb1.status("mediawiki", "mw1"), "MAINT");

    lb2.stop();
    let err = tokio::time::timeout(GUARD, depool)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.proxy.as_deref(), Some("lb2"), "{err}");
    assert_eq!(err.kind, PortErrorKind::Transient, "{err}");
    assert!(err.detail.contains("refused the connection"), "{err}");
    assert!(
        err.detail.contains("made ready again on lb1/mediawiki"),
        "{err}"
    );
    // lb1 serves mw1 again: no proxy disagrees with the one that failed.
    assert_eq!(
        lb1.status("mediawiki", "mw1").split_whitespace().next(),
        Some("UP")
    );
    mw1.release_holds();
}

#[tokio::test]
async fn a_server_in_two_backends_changes_in_both() {
    let (mw1, mw2, mw3) = (Web::start("mw1"), Web::start("mw2"), Web::start("mw3"));
    let lb = Haproxy::start(
        "lb1",
        &[
            ("mediawiki", vec![checked(&mw1), checked(&mw2)]),
            ("api", vec![checked(&mw1), checked(&mw3)]),
        ],
    );
    let pool = pool(vec![local_proxy(&lb)], &["mediawiki", "api"], LONG, LONG);
    let progress = Progress::discard(mw1.id());
    pool.depool(&server(&mw1), &progress).await.unwrap();
    assert_eq!(lb.status("mediawiki", "mw1"), "MAINT");
    assert_eq!(lb.status("api", "mw1"), "MAINT");
    let states = pool.states().await.unwrap();
    let names: Vec<&str> = states.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(names, ["mw1", "mw2", "mw3"]);
    assert_eq!(states[0].1, PoolState::Maint);

    // Only in one backend: only there.
    pool.depool(&server(&mw3), &progress).await.unwrap();
    assert_eq!(lb.status("api", "mw3"), "MAINT");
    assert_eq!(lb.status("mediawiki", "mw2"), "UP");

    for s in [&mw1, &mw3] {
        pool.repool(&server(s), &progress).await.unwrap();
    }
    for (b, s) in [("mediawiki", "mw1"), ("api", "mw1"), ("api", "mw3")] {
        assert_eq!(
            lb.status(b, s).split_whitespace().next(),
            Some("UP"),
            "{b}/{s}"
        );
    }
}

#[tokio::test]
async fn a_reload_during_a_deploy_shows_in_states() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let mut lb = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let pool = pool(vec![local_proxy(&lb)], &["mediawiki"], LONG, LONG);
    let progress = Progress::discard(mw1.id());
    pool.depool(&server(&mw1), &progress).await.unwrap();
    let find = |states: &[(ServerId, PoolState)]| {
        states
            .iter()
            .find(|(id, _)| id.as_str() == "mw1")
            .map(|(_, s)| *s)
    };
    assert_eq!(find(&pool.states().await.unwrap()), Some(PoolState::Maint));

    // The reload forgets the runtime state: mw1 is served again, and states() says so.
    lb.restart();
    assert_eq!(find(&pool.states().await.unwrap()), Some(PoolState::Up));
    assert_eq!(pool.state(&server(&mw1)).await.unwrap(), PoolState::Up);
    // The cycle can still finish.
    pool.repool(&server(&mw1), &progress).await.unwrap();
}

#[tokio::test]
async fn core_conformance_suite_passes_on_two_proxies() {
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb1 = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let lb2 = Haproxy::start("lb2", &one_backend(&[&mw1, &mw2]));
    let pool = pool(
        vec![local_proxy(&lb1), local_proxy(&lb2)],
        &["mediawiki"],
        LONG,
        LONG,
    );
    pool_round_trip(&pool, &server(&mw1)).await.unwrap();
    let ghost = Server::new(ServerId::new("mw9").unwrap());
    pool_unknown_server_fails(&pool, &ghost).await.unwrap();
    // A server known in the backend under another name.
    let mut renamed = Server::new(ServerId::new("mw2.example.org").unwrap());
    renamed.backend_name = Some(mw2.id());
    pool_round_trip(&pool, &renamed).await.unwrap();
}

#[tokio::test]
async fn the_remote_transport_runs_socat_through_a_command_runner() {
    require("socat");
    let (mw1, mw2) = (Web::start("mw1"), Web::start("mw2"));
    let lb1 = Haproxy::start("lb1", &one_backend(&[&mw1, &mw2]));
    let lb2 = Haproxy::start("lb2", &one_backend(&[&mw1, &mw2]));
    let runner: Arc<dyn CommandRunner> = Arc::new(LocalRunner::new());
    let remote = |h: &Haproxy| {
        let path = h.admin.to_str().unwrap().to_string();
        Proxy::new(&h.name, Transport::remote(runner.clone(), path).unwrap()).unwrap()
    };
    // One proxy through socat, one direct: both confirm every change.
    let pool_ = pool(
        vec![remote(&lb1), local_proxy(&lb2)],
        &["mediawiki"],
        LONG,
        LONG,
    );
    pool_round_trip(&pool_, &server(&mw1)).await.unwrap();
    let ghost = Server::new(ServerId::new("mw9").unwrap());
    pool_unknown_server_fails(&pool_, &ghost).await.unwrap();
    let status = pool_.status().await;
    assert_eq!(status.errors().count(), 0);
    assert_eq!(status.servers().count(), 4);

    // socat's failures are typed too.
    let missing = lb1.dir().join("no-such.sock");
    let broken = pool(
        vec![Proxy::new(
            "lb1",
            Transport::remote(runner.clone(), missing.to_str().unwrap()).unwrap(),
        )
        .unwrap()],
        &["mediawiki"],
        LONG,
        LONG,
    );
    let err = broken.states().await.unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Misconfigured, "{err}");
    assert!(err.detail.contains("does not exist on local"), "{err}");
    assert!(err.detail.contains(missing.to_str().unwrap()), "{err}");
    // HAProxy's words come back through socat unchanged.
    let t = Transport::remote(runner, lb1.admin.to_str().unwrap()).unwrap();
    let reply = t
        .send(
            "lb1",
            "set server mediawiki/mw9 state drain",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(check_empty(&reply).unwrap_err().1, Refusal::NoSuchServer);
}

#[tokio::test]
async fn status_shows_states_sessions_checks_and_drift_between_proxies() {
    let (mw1, mw2, mw3) = (Web::start("mw1"), Web::start("mw2"), Web::start("mw3"));
    let lb1 = Haproxy::start(
        "lb1",
        &[(
            "mediawiki",
            vec![
                checked(&mw1),
                checked(&mw2),
                Member {
                    web: &mw3,
                    check: false,
                },
            ],
        )],
    );
    let mut lb2 = Haproxy::start(
        "lb2",
        &[(
            "mediawiki",
            vec![
                checked(&mw1),
                checked(&mw2),
                Member {
                    web: &mw3,
                    check: false,
                },
            ],
        )],
    );
    let pool = pool(
        vec![local_proxy(&lb1), local_proxy(&lb2)],
        &["mediawiki"],
        LONG,
        LONG,
    );
    // Someone put mw2 in maintenance on lb2 only, and a request is open on mw1 via lb1.
    assert_eq!(
        lb2.command("set server mediawiki/mw2 state maint").trim(),
        ""
    );
    let fe = lb1.frontend.clone();
    let _slow = std::thread::spawn(move || get(&fe, "/pin/mw1/hold"));
    until("the slow request to reach mw1", || mw1.holding() == 1).await;

    let status = pool.status().await;
    assert_eq!(status.errors().count(), 0);
    let find = |proxy: &str, name: &str| {
        status
            .servers()
            .find(|(p, b, s)| *p == proxy && *b == "mediawiki" && s.server == name)
            .map(|(_, _, s)| s.clone())
            .unwrap()
    };
    let mw1_lb1 = find("lb1", "mw1");
    assert_eq!(mw1_lb1.sessions, 1);
    assert_eq!(mw1_lb1.state, PoolState::Up);
    assert!(mw1_lb1.check.enabled);
    assert_eq!(mw1_lb1.check.status.as_deref(), Some("L7OK"));
    let mw2_lb2 = find("lb2", "mw2");
    assert_eq!(mw2_lb2.status, "MAINT");
    assert_eq!(mw2_lb2.admin, Some(AdminState::Maint));
    let mw3_lb1 = find("lb1", "mw3");
    assert_eq!(mw3_lb1.status, "no check");
    assert!(!mw3_lb1.check.enabled);
    assert_eq!(mw3_lb1.state, PoolState::Up);

    let drift = status.drift();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].server, "mw2");
    assert_eq!(
        drift[0].states,
        vec![
            ("lb1".to_string(), Some(PoolState::Up)),
            ("lb2".to_string(), Some(PoolState::Maint))
        ]
    );
    // The least serving state wins across proxies.
    assert_eq!(pool.state(&server(&mw2)).await.unwrap(), PoolState::Maint);
    assert_eq!(status.state_of("mw2"), Some(PoolState::Maint));

    // An unreachable proxy is listed with its error; the other is still read.
    lb2.stop();
    let status = pool.status().await;
    let errors: Vec<_> = status.errors().collect();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "lb2");
    assert!(matches!(
        errors[0].1,
        HaproxyError::ConnectionRefused { .. }
    ));
    assert_eq!(status.servers().count(), 3);
    mw1.release_holds();
}

/// Six requests through `lb`: every one answered by mw2, none reached `mw1` (`why` if one
/// did).
/// Four requests through the proxy all answer 200, and some reach `web` (round robin).
async fn some_request_reaches(lb: &Haproxy, web: &Web, why: &str) {
    let before = web.hits();
    let fe = lb.frontend.clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..4 {
            assert_eq!(get(&fe, "/wiki/Main_Page").0, 200);
        }
    })
    .await
    .unwrap();
    assert!(web.hits() > before, "{why}");
}

async fn only_mw2_answers(lb: &Haproxy, mw1: &Web, why: &str) {
    let hits_before = mw1.hits();
    let fe = lb.frontend.clone();
    let answers = tokio::task::spawn_blocking(move || {
        (0..6)
            .map(|_| get(&fe, "/wiki/Main_Page"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (code, body) in &answers {
        assert_eq!((*code, body.as_str()), (200, "served by mw2"));
    }
    assert_eq!(mw1.hits(), hits_before, "{why}");
}
