//! The remote transport over real ssh: the test fleet's two HAProxy processes, reached
//! through a fleet server's sshd and `socat`, pass core's conformance suite and
//! confirm a depool on every proxy.

use std::time::Duration;

use mwdeploy_core::ports::{PoolControl, Progress};
use mwdeploy_core::{PoolState, Server, ServerId};
use mwdeploy_exec::{Hosts, SshDefaults};
use mwdeploy_haproxy::{HaproxyConfig, HaproxyPool, Proxy, Transport};
use mwdeploy_sim::conformance;
use testfleet::Fleet;

#[tokio::test(flavor = "current_thread")]
async fn remote_proxies_over_ssh_pass_the_conformance_suite() {
    let fleet = Fleet::builder().servers(2).proxies(2).start().unwrap();
    let mut d = SshDefaults::new(fleet.ssh_user());
    d.identity = Some(fleet.client_key());
    d.options = vec![format!(
        "UserKnownHostsFile={}",
        fleet.known_hosts().display()
    )];
    let hosts = Hosts::new(d).unwrap();
    // Each proxy "lives" on a fleet server's host: its socket is reached through that sshd.
    let proxies = fleet
        .proxies()
        .iter()
        .enumerate()
        .map(|(k, p)| {
            let host = hosts
                .ssh("127.0.0.1", Some(fleet.servers()[k].ssh_port()))
                .unwrap();
            Proxy::new(
                p.name(),
                Transport::remote(host, p.admin_socket().display().to_string()).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let config = HaproxyConfig::new(proxies, vec!["mediawiki".into()])
        .timeouts(Duration::from_secs(5), Duration::from_secs(10))
        .poll_interval(Duration::from_millis(100));
    let pool = HaproxyPool::new(config).unwrap();

    let mw1 = Server::new(ServerId::new("mw1").unwrap());
    conformance::pool_round_trip(&pool, &mw1).await.unwrap();
    let unknown = Server::new(ServerId::new("mw99").unwrap());
    conformance::pool_unknown_server_fails(&pool, &unknown)
        .await
        .unwrap();

    // Both proxies agree, read straight from their sockets.
    let mw2 = Server::new(ServerId::new("mw2").unwrap());
    pool.depool(&mw2, &Progress::discard(mw2.id.clone()))
        .await
        .unwrap();
    for p in fleet.proxies() {
        let answer = p.command("show servers state mediawiki").unwrap();
        let line = answer
            .lines()
            .find(|l| l.split_whitespace().nth(3) == Some("mw2"))
            .unwrap_or_else(|| panic!("{} lists no mw2: {answer}", p.name()));
        // Field 7 is srv_admin_state: 1 = forced maintenance.
        assert_eq!(
            line.split_whitespace().nth(6),
            Some("1"),
            "{}: {line}",
            p.name()
        );
    }
    assert_eq!(pool.state(&mw2).await.unwrap(), PoolState::Maint);
    pool.repool(&mw2, &Progress::discard(mw2.id.clone()))
        .await
        .unwrap();
    assert_eq!(pool.state(&mw2).await.unwrap(), PoolState::Up);
    hosts.close().await;
}
