//! mwdeploy: rolling deploys of MediaWiki through HAProxy, as a library.
//!
//! This is the crate a tool embeds: a chatops bot, a web front end, a deploy-on-merge
//! service, or the `mwdeploy` command itself, which only parses flags, calls it and
//! renders what it reports.
//!
//! ```text
//!  config.yaml ──> config::Config (checked: every problem with key, line, column)
//!                        │
//!                        ▼
//!  mwdeploy-core (plan, Rollout) · mwdeploy-runtime (driver, journal, lock)
//!  adapters: mwdeploy-haproxy · mwdeploy-rsync · mwdeploy-canary · mwdeploy-webhook
//! ```
//!
//! - [`config`]: `config.yaml` read and checked into typed values ([`config::Config`]);
//!   a refusal is a [`ConfigError`] listing every problem with its place.
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
