//! `HealthCheck` for mwdeploy: the canary that decides whether a server goes back into
//! the pool, and the error gate that watches it once it is back.
//!
//! ```text
//!  Rollout ── Canary{attempt} ──> Canary::check(server) ──> server.canary:
//!                                     Default / Urls ──> CurlCheck  (curl on the server, via exec)
//!                                     Command        ──> CommandCheck (job runners)
//!  Rollout ── Bake{window} ──────> Canary::watch(server) ──> ErrorRateGate (new log lines that match)
//! ```
//!
//! One call is one attempt; the engine owns retries and pauses. Every command runs on
//! the server itself through core's [`exec`](mwdeploy_exec), so the check tests
//! the server, not the balancer, and shares the deploy's ssh connection to it.
//!
//! ```
//! use mwdeploy_canary::{Canary, CurlCheck};
//! use mwdeploy_exec::{Hosts, SshDefaults};
//! use std::sync::Arc;
//! let curl = CurlCheck::new(["http://127.0.0.1/wiki/Main_Page"]).unwrap()
//!     .host("test.wikioasis.org").unwrap()
//!     .expect_body("wikioasis");
//! let hosts = Arc::new(Hosts::new(SshDefaults::new("mwdeploy")).unwrap());
//! let canary = Canary::new(hosts, curl);
//! # let _ = canary;
//! assert!(CurlCheck::new(["-o/etc/passwd"]).is_err());
//! ```
#![warn(missing_docs)]

mod command;
mod curl;
mod error;
mod gate;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mwdeploy_core::model::CanaryTarget;
use mwdeploy_core::ports::{HealthCheck, Progress};
use mwdeploy_core::{Health, Server};
use mwdeploy_exec::Hosts;

pub use command::CommandCheck;
pub use curl::{validate_host, validate_url, CurlCheck};
pub use error::ConfigError;
pub use gate::ErrorRateGate;

/// The deploy's health check: each server's canary, and the error gate.
#[derive(Debug, Clone)]
pub struct Canary {
    hosts: Arc<Hosts>,
    curl: CurlCheck,
    gate: Option<ErrorRateGate>,
}

impl Canary {
    /// The check `curl` (deploy-wide URLs and expectations), run through `hosts`.
    pub fn new(hosts: Arc<Hosts>, curl: CurlCheck) -> Self {
        Canary {
            hosts,
            curl,
            gate: None,
        }
    }

    /// With an error gate after each repool.
    pub fn with_gate(mut self, gate: ErrorRateGate) -> Self {
        self.gate = Some(gate);
        self
    }
}

#[async_trait]
impl HealthCheck for Canary {
    async fn check(&self, server: &Server, _progress: &Progress) -> Health {
        let runner = match self.hosts.runner(server) {
            Ok(r) => r,
            Err(e) => return Health::unhealthy(e.to_string()),
        };
        match &server.canary {
            CanaryTarget::Command(argv) => {
                // Job runners: the same deadline as a page check.
                let timeout = self.curl.timeout_value();
                match CommandCheck::new(argv.clone(), timeout) {
                    Ok(c) => c.sudo(self.hosts.sudo()).check(runner.as_ref()).await,
                    Err(e) => Health::unhealthy(e.to_string()),
                }
            }
            CanaryTarget::Urls(urls) => match self.curl.with_urls(urls) {
                Ok(c) => c.check(runner.as_ref()).await,
                Err(e) => Health::unhealthy(e.to_string()),
            },
            _ => self.curl.check(runner.as_ref()).await,
        }
    }

    async fn watch(&self, server: &Server, window: Duration, progress: &Progress) -> Health {
        let Some(gate) = &self.gate else {
            return Health::Unknown {
                reason: "no error gate is configured".into(),
            };
        };
        match self.hosts.runner(server) {
            Ok(r) => gate.watch(r.as_ref(), window, progress).await,
            Err(e) => Health::Unknown {
                reason: e.to_string(),
            },
        }
    }
}
