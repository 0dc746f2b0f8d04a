//! The canary over real ssh against the real php-fpm servers of the test fleet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mwdeploy_canary::{Canary, CurlCheck, ErrorRateGate};
use mwdeploy_core::model::CanaryTarget;
use mwdeploy_core::ports::{HealthCheck, Progress};
use mwdeploy_core::{Health, Server, ServerId};
use mwdeploy_exec::{Hosts, SshDefaults};
use mwdeploy_sim::conformance;
use testfleet::{Fault, Fleet};

fn hosts(fleet: &Fleet) -> Arc<Hosts> {
    let mut d = SshDefaults::new(fleet.ssh_user());
    d.identity = Some(fleet.client_key());
    d.options = vec![format!(
        "UserKnownHostsFile={}",
        fleet.known_hosts().display()
    )];
    d.connect_timeout = Duration::from_secs(3);
    Arc::new(Hosts::new(d).unwrap())
}

/// Server k of the fleet as the engine sees it: reached over its own sshd.
fn server(fleet: &Fleet, k: usize) -> Server {
    let s = &fleet.servers()[k];
    let mut server = Server::new(ServerId::new(s.name()).unwrap());
    server.ssh_host = Some("127.0.0.1".into());
    server.ssh_port = Some(s.ssh_port());
    server.canary = CanaryTarget::Urls(vec![s.canary_url()]);
    server
}

fn canary(fleet: &Fleet) -> Canary {
    canary_with(fleet, hosts(fleet))
}

fn canary_with(fleet: &Fleet, hosts: Arc<Hosts>) -> Canary {
    let curl = CurlCheck::new([fleet.servers()[0].canary_url()])
        .unwrap()
        .host("test.wikioasis.org")
        .unwrap()
        .expect_body("wikioasis")
        .timeout(Duration::from_secs(2));
    Canary::new(hosts, curl)
}

fn p(s: &Server) -> Progress {
    Progress::discard(s.id.clone())
}

#[tokio::test(flavor = "current_thread")]
async fn the_canary_over_ssh_sees_what_php_fpm_serves() {
    let fleet = Fleet::builder().servers(2).proxies(0).start().unwrap();
    let shared = hosts(&fleet);
    let c = canary_with(&fleet, shared.clone());
    let mw1 = server(&fleet, 0);
    let mw2 = server(&fleet, 1);
    conformance::health_healthy(&c, &mw1).await.unwrap();

    fleet.inject(Fault::PageError(1)).unwrap();
    conformance::health_unhealthy(&c, &mw2).await.unwrap();
    let h = c.check(&mw2, &p(&mw2)).await;
    assert!(
        matches!(
            h,
            Health::Unhealthy {
                status: Some(500),
                ..
            }
        ),
        "{h:?}"
    );
    fleet.clear(Fault::PageError(1)).unwrap();
    assert_eq!(c.check(&mw2, &p(&mw2)).await, Health::Healthy);

    // A page that hangs fails at curl's 2 s timeout, not at the server's pace.
    fleet.inject(Fault::PageHang(1)).unwrap();
    let started = Instant::now();
    let h = c.check(&mw2, &p(&mw2)).await;
    assert!(format!("{h:?}").contains("(28)"), "{h:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    fleet.clear(Fault::PageHang(1)).unwrap();

    // php-fpm down: nginx says 502.
    fleet.inject(Fault::PhpFpmDown(1)).unwrap();
    let h = c.check(&mw2, &p(&mw2)).await;
    assert!(
        matches!(
            h,
            Health::Unhealthy {
                status: Some(502),
                ..
            }
        ),
        "{h:?}"
    );
    fleet.clear(Fault::PhpFpmDown(1)).unwrap();

    // ssh down: the check cannot run, and says why.
    fleet.inject(Fault::SshDown(1)).unwrap();
    // The connection shared since the first check goes with sshd; close it here so the
    // next check does not race its teardown.
    shared.close().await;
    let h = c.check(&mw2, &p(&mw2)).await;
    assert!(format!("{h:?}").contains("Connection refused"), "{h:?}");
    fleet.clear(Fault::SshDown(1)).unwrap();

    // A job runner's command check, over ssh.
    let mut job = server(&fleet, 0);
    job.pooled = false;
    job.canary = CanaryTarget::Command(vec!["test".into(), "-d".into(), "/".into()]);
    assert_eq!(c.check(&job, &p(&job)).await, Health::Healthy);
    job.canary = CanaryTarget::Command(vec!["test".into(), "-d".into(), "/nonexistent".into()]);
    assert!(matches!(
        c.check(&job, &p(&job)).await,
        Health::Unhealthy { .. }
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn the_error_gate_over_ssh_counts_php_warnings_while_the_server_takes_traffic() {
    let fleet = Fleet::builder().servers(1).proxies(0).start().unwrap();
    let log = fleet.servers()[0].php_error_log();
    let gate = ErrorRateGate::new(log.to_str().unwrap(), "PHP (Fatal|Warning)", 10).unwrap();
    let c = canary(&fleet).with_gate(gate);
    let mw1 = server(&fleet, 0);

    // Quiet traffic: healthy.
    assert_eq!(
        c.watch(&mw1, Duration::from_millis(500), &p(&mw1)).await,
        Health::Healthy
    );

    // Every request now logs a PHP Warning; traffic runs through the whole window (not a
    // fixed count, which a loaded machine may not fit into it), so it fails the gate.
    fleet.inject(Fault::PageWarning(0)).unwrap();
    let url = fleet.servers()[0].canary_url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = std::process::Command::new("curl")
                    .args(["--silent", "--output", "/dev/null", "--", &url])
                    .status();
            }
        })
    };
    let h = c.watch(&mw1, Duration::from_secs(6), &p(&mw1)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    traffic.join().unwrap();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(matches!(h, Health::Unhealthy { .. }), "{h:?}\nlog:\n{text}");
    fleet.clear(Fault::PageWarning(0)).unwrap();
}
