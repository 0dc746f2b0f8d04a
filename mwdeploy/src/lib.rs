//! mwdeploy: rolling deploys of MediaWiki through HAProxy, as a library.
//!
//! This is the crate a tool embeds: a chatops bot, a web front end, a deploy-on-merge
//! service, or the `mwdeploy` command itself, which only parses flags, calls it and
//! renders what it reports.
//!
//! ```text
//!  config.yaml ──> config::Config (checked: every problem with key, line, column)
//!                        │
//!  DeploySpec ───────────┴──> DeployRequest ──> deploy::prepare ──> Deployment::start
//!                                                 (lock, ports,       ──> Running: records
//!                                                  journal, staging)      to an Observer,
//!                                                                         prompts to a
//!                                                                         Prompter ──> Report
//!  rollback · recover · pool · status · releases: the same shape, each its own module
//!
//!  underneath: mwdeploy-core (plan, Rollout) · mwdeploy-runtime (driver, journal, lock)
//!  adapters: mwdeploy-haproxy · mwdeploy-rsync · mwdeploy-canary · mwdeploy-webhook
//!  staging: mwdeploy-mediawiki
//! ```
//!
//! It never prints and never exits: records go to the caller's [`session::Observer`],
//! questions to its [`session::Prompter`], lines for the operator that belong to no
//! record to its [`session::Warn`]; a refusal before production is a typed error
//! ([`DeployError`]: the lock and who holds it, an unreachable proxy, staging), and what
//! happened once the machine ran is the [`Report`](mwdeploy_core::Report) and its
//! [`Verdict`](mwdeploy_core::Verdict).
//!
//! - [`config`]: `config.yaml` read and checked into typed values; a refusal is a
//!   [`ConfigError`] listing every problem with its place.
//! - [`request`]: what to deploy ([`DeploySpec`]) checked against the config
//!   ([`DeployRequest`]).
//! - [`deploy`](mod@deploy), [`rollback`], [`recover`], [`pool`]: the runs; [`status`],
//!   [`releases`]: what the fleet serves.
//! - [`session`]: a run's journal and log file, [`session::Controls`] (interrupt,
//!   decide, pool), the lock.
//! - [`ports`]: the engine's ports built from the config ([`BuildError`]).
//!
//! # Example: deploy staging to every server, answering prompts no
//!
//! ```no_run
//! use std::path::Path;
//! use mwdeploy::config::Config;
//! use mwdeploy::session::{no_warnings, AnswerNo, Controls, Observer};
//! use mwdeploy::{DeployRequest, DeploySpec};
//! use mwdeploy_core::event::Record;
//!
//! struct Print;
//! impl Observer for Print {
//!     fn record(&mut self, r: &Record) { println!("{:?}", r.event) }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load(Path::new("/etc/mwdeploy/config.yaml"))?;
//! let mut spec = DeploySpec { rollout: true, unattended: true, ..DeploySpec::default() };
//! spec.work.rsync = true; // the whole staging tree, as it is
//! let request = DeployRequest::new(config, spec)?;
//! let report = mwdeploy::deploy(&request, &Controls::new(), &mut Print, &mut AnswerNo, no_warnings()).await?;
//! println!("{:?}: {:?}", report.verdict, report.summary);
//! # Ok(())
//! # }
//! ```
//!
//! # Example: check a config
//!
//! ```
//! use std::path::Path;
//! let text = "staging_path: /srv/mediawiki-staging\nprod_path: /srv/mediawiki\nmw_servers: [mw1, mw2]\n";
//! let config = mwdeploy::config::Config::parse(text, Path::new("/etc/mwdeploy/config.yaml")).unwrap();
//! assert_eq!(config.servers.len(), 2);
//!
//! let e = mwdeploy::config::Config::parse("mw_servers: [mw1, \"-rf\"]\n", Path::new("c.yaml")).unwrap_err();
//! assert!(e.diagnostics.iter().any(|d| d.to_string().contains("mw_servers")));
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod deploy;
mod error;
pub mod metrics;
pub mod pool;
pub mod ports;
pub mod recover;
pub mod releases;
pub mod request;
pub mod rollback;
pub mod session;
pub mod status;
mod table;

pub use deploy::{deploy, Deployment};
pub use error::{BuildError, ConfigError, DeployError, LockRefused, SessionError};
pub use request::{DeployRequest, DeploySpec, RequestError};
