//! The webhook Notifier passes the port conformance suite: every note is taken within
//! the driver's deadline for it, also when the service cannot be reached (curl's own
//! error, retried once), and its errors never show the webhook's URL or token.

use std::time::Duration;

use mwdeploy_core::{Server, ServerId};
use mwdeploy_sim::conformance::notifier_is_bounded_and_discreet;
use mwdeploy_webhook::{Curl, Hook, Service, Webhooks};

#[tokio::test(flavor = "current_thread")]
async fn webhooks_that_cannot_be_reached_are_bounded_and_discreet() {
    assert!(
        std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok(),
        "curl is not installed: run scripts/install-deps.sh"
    );
    // Port 9 (discard) on loopback: nothing listens, every post is refused.
    let url = "http://127.0.0.1:9/api/webhooks/123/S3CRET-TOKEN";
    let w = Webhooks::new(
        vec![
            Hook::new(Service::Discord, url),
            Hook::new(Service::Slack, url),
        ],
        Curl::default(),
        "conformance",
        vec!["mw1".into()],
        Some("conformance".into()),
    );
    let mw1 = Server::new(ServerId::new("mw1").unwrap());
    // The driver gives a note 30 s; a refused post retries once after 1 s. The token
    // is in the URL: neither may show.
    notifier_is_bounded_and_discreet(&w, &mw1, Duration::from_secs(30), "S3CRET-TOKEN")
        .await
        .unwrap();
}
