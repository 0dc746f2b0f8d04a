//! Repools against the test fleet's real HAProxy processes (two proxies health-checking
//! nginx + php-fpm servers): a server is back in the pool only once HAProxy's own check
//! passed, and a server whose page broke while it was out stays out on every proxy.
//!
//! Nothing is skipped: a missing program fails the fleet's start with a message naming
//! scripts/install-deps.sh.

use std::sync::Mutex;
use std::time::Duration;

use mwdeploy_core::ports::{PoolControl, Progress};
use mwdeploy_core::{PoolState, PortErrorKind, Server, ServerId};
use mwdeploy_haproxy::stat::{parse_show_stat, RowKind};
use mwdeploy_haproxy::{HaproxyConfig, HaproxyPool, Proxy, Transport};
use testfleet::{Fault, Fleet};

// Only its progress recorder is used here.
#[allow(dead_code)]
mod support;
use support::recorder;

const MW1: usize = 0;
const GUARD: Duration = Duration::from_secs(60);

fn pool(fleet: &Fleet, repool_timeout: Duration) -> HaproxyPool {
    let proxies = fleet
        .proxies()
        .iter()
        .map(|p| Proxy::new(p.name(), Transport::local(p.admin_socket()).unwrap()).unwrap())
        .collect();
    HaproxyPool::new(
        HaproxyConfig::new(proxies, vec!["mediawiki".into()])
            .timeouts(Duration::from_secs(10), repool_timeout)
            .poll_interval(Duration::from_millis(50))
            .command_timeout(Duration::from_secs(5)),
    )
    .unwrap()
}

/// mw1's status on every proxy, read from outside the code under test.
fn statuses(fleet: &Fleet) -> Vec<(String, String)> {
    fleet
        .proxies()
        .iter()
        .map(|p| {
            let text = p.command("show stat").unwrap();
            let rows = parse_show_stat(&text).unwrap();
            let row = rows
                .iter()
                .find(|r| r.kind == RowKind::Server && r.proxy == "mediawiki" && r.name == "mw1")
                .unwrap_or_else(|| panic!("{} lists no mediawiki/mw1: {text}", p.name()));
            (p.name().to_string(), row.status.clone())
        })
        .collect()
}

/// Repools mw1 while another task reads its status on every proxy every 20 ms: the
/// result, and every status seen meanwhile.
async fn repool_watched(
    fleet: &Fleet,
    pool: &HaproxyPool,
    server: &Server,
    progress: &Progress,
) -> (Result<(), mwdeploy_core::PortError>, Vec<(String, String)>) {
    let seen = Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicBool::new(false);
    let watch = async {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            seen.lock().unwrap().extend(statuses(fleet));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let repool = async {
        let r = tokio::time::timeout(GUARD, pool.repool(server, progress))
            .await
            .expect("the repool must end within its bound");
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    };
    let (result, ()) = tokio::join!(repool, watch);
    (result, seen.into_inner().unwrap())
}

#[tokio::test(flavor = "current_thread")]
async fn a_healthy_server_is_served_on_every_proxy_once_its_check_passed() {
    let fleet = Fleet::builder().servers(2).proxies(2).start().unwrap();
    let pool = pool(&fleet, Duration::from_secs(10));
    let mw1 = Server::new(ServerId::new("mw1").unwrap());
    let (progress, lines) = recorder(mw1.id.clone());
    pool.depool(&mw1, &progress).await.unwrap();
    for (proxy, status) in statuses(&fleet) {
        assert_eq!(status, "MAINT", "{proxy}");
    }

    let (result, seen) = repool_watched(&fleet, &pool, &mw1, &progress).await;
    result.unwrap();
    for (proxy, status) in statuses(&fleet) {
        assert_eq!(status, "UP", "{proxy}: served, its health at the top");
    }
    assert_eq!(pool.state(&mw1).await.unwrap(), PoolState::Up);
    // On its way out of maintenance it was only ever in DRAIN (checked, no new
    // request), then UP; never MAINT-to-UP without a check.
    assert!(
        seen.iter()
            .all(|(_, s)| s == "MAINT" || s.starts_with("DRAIN") || s == "UP"),
        "{seen:?}"
    );
    let lines = lines.lock().unwrap();
    for p in ["lb1", "lb2"] {
        assert!(
            lines
                .iter()
                .any(|l| l == &format!("proxy {p}: mediawiki/mw1 passed its check: ready")),
            "{p}: {lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l == &format!("proxy {p}: mw1 served in mediawiki")),
            "{p}: {lines:?}"
        );
    }
    // The page through each proxy answers.
    for p in fleet.proxies() {
        let page = p.page_within(Duration::from_secs(5)).unwrap();
        assert_eq!(page.status, 200, "{}", p.name());
    }
    fleet.shutdown().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_server_that_broke_while_out_is_never_repooled_and_stays_in_maintenance() {
    let fleet = Fleet::builder().servers(2).proxies(2).start().unwrap();
    // Beyond what the fleet's checks need to take it down (two failures, 0.25 to 1 s):
    // the repool fails then, without waiting for this bound.
    let pool = pool(&fleet, Duration::from_secs(30));
    let mw1 = Server::new(ServerId::new("mw1").unwrap());

    for fault in [Fault::PageError(MW1), Fault::PhpFpmDown(MW1)] {
        let (progress, lines) = recorder(mw1.id.clone());
        pool.depool(&mw1, &progress).await.unwrap();
        // It breaks while in maintenance, where HAProxy does not check it.
        fleet.inject(fault).unwrap();

        let (result, seen) = repool_watched(&fleet, &pool, &mw1, &progress).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind, PortErrorKind::Permanent, "{fault:?}: {err}");
        assert!(
            err.detail.contains("failed HAProxy's health check"),
            "{fault:?}: {err}"
        );
        assert!(
            matches!(err.proxy.as_deref(), Some("lb1" | "lb2")),
            "{fault:?}: {err}"
        );
        assert!(err.detail.contains("mediawiki/mw1"), "{fault:?}: {err}");
        assert!(err.detail.contains("DOWN"), "{fault:?}: {err}");
        assert!(
            err.detail.contains("L7STS"),
            "{fault:?}: the check's words: {err}"
        );
        assert!(
            err.detail.contains("put back in maintenance"),
            "{fault:?}: {err}"
        );
        // Out on every proxy, in forced maintenance.
        for (proxy, status) in statuses(&fleet) {
            assert_eq!(status, "MAINT", "{fault:?}: {proxy}");
        }
        for p in fleet.proxies() {
            let st = p.server_states().unwrap();
            let s = st.iter().find(|s| s.name == "mw1").unwrap();
            assert!(!s.in_pool(), "{fault:?}: {}: {s:?}", p.name());
        }
        assert_eq!(pool.state(&mw1).await.unwrap(), PoolState::Maint);
        // Never made ready while its check failed, and never said to be served.
        assert!(
            seen.iter().all(|(_, s)| !s.starts_with("UP")),
            "{fault:?}: {seen:?}"
        );
        // That its check ran and failed is in the error (HAProxy's DOWN and L7STS,
        // above): the watcher, reading every 20 ms beside the repool, can miss the
        // moment the server is DOWN before it goes back into maintenance (seen in CI
        // on a loaded machine).
        let lines = lines.lock().unwrap().clone();
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("served in") || l.contains("passed its check")),
            "{fault:?}: {lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("waiting for mediawiki/mw1 to pass its check")),
            "{fault:?}: {lines:?}"
        );

        // Mended, the same pool repools it.
        fleet.clear(fault).unwrap();
        pool.repool(&mw1, &progress).await.unwrap();
        for (proxy, status) in statuses(&fleet) {
            assert_eq!(status, "UP", "{fault:?}: {proxy}");
        }
    }
    fleet.shutdown().unwrap();
}
