//! The ports `mwdeploy` builds from a config pass the port conformance suite against
//! the loopback test fleet (HAProxy, nginx + php-fpm, one sshd per server): HAProxy on
//! every proxy, a recovery's pool over it, the canary; and its null ports do what they
//! say (no notifier: every note taken at once; no pool: every change refused).

use std::sync::Arc;
use std::time::Duration;

use mwdeploy::config::Config;
use mwdeploy::ports::{canary, haproxy, NoNotifier, NoPool};
use mwdeploy::recover::RecoverPool;
use mwdeploy_core::ports::{PoolControl, Progress};
use mwdeploy_core::{Server, ServerId};
use mwdeploy_exec::Hosts;
use mwdeploy_sim::conformance;
use testfleet::{Fleet, Layout};

fn config(fleet: &Fleet) -> Config {
    use std::os::unix::fs::PermissionsExt;
    let path = fleet.root().join("ports.yaml");
    std::fs::write(&path, fleet.config_yaml(Layout::Releases)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("{e}: {:?}", e.diagnostics))
}

#[tokio::test(flavor = "current_thread")]
async fn the_ports_built_from_a_config_conform_against_the_real_fleet() {
    let fleet = Fleet::builder()
        .servers(2)
        .proxies(1)
        .tree(20, 1)
        .layout(Layout::Releases)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet (scripts/install-deps.sh): {e}"));
    let config = config(&fleet);
    let hosts = Arc::new(Hosts::new(config.ssh_defaults()).unwrap());
    let mw1 = config.server("mw1").unwrap().to_server();
    let unknown = Server::new(ServerId::new("not-in-backend").unwrap());

    let pool = haproxy(&config, &hosts).unwrap();
    conformance::pool_round_trip(&pool, &mw1).await.unwrap();
    conformance::pool_unknown_server_fails(&pool, &unknown)
        .await
        .unwrap();
    let recovering = RecoverPool(haproxy(&config, &hosts).unwrap());
    conformance::pool_round_trip(&recovering, &mw1)
        .await
        .unwrap();
    conformance::pool_unknown_server_fails(&recovering, &unknown)
        .await
        .unwrap();

    let check = canary(&config, hosts.clone()).unwrap();
    conformance::health_healthy(&check, &mw1).await.unwrap();

    conformance::notifier_is_bounded_and_discreet(&NoNotifier, &mw1, Duration::from_secs(1), "")
        .await
        .unwrap();
    let p = Progress::discard(mw1.id.clone());
    assert!(NoPool.depool(&mw1, &p).await.is_err());
    assert!(NoPool.repool(&mw1, &p).await.is_err());
    assert!(NoPool.states().await.is_err());

    hosts.close().await;
    fleet.shutdown().unwrap();
}
