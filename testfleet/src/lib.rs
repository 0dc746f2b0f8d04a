//! A real MediaWiki fleet on loopback, for mwdeploy's tests and benchmarks: HAProxy in front
//! of nginx + php-fpm web servers, each its own host with its own sshd, plus the deploy
//! host's staging checkout and web site.
//!
//! ```text
//!                     load generator ──> lb1 frontend ─┐          pool monitor ──> admin sockets
//!                                        lb2 frontend ─┤ backend mediawiki (health checks on /wiki/Main_Page)
//!                                                      ▼
//!   ssh -p PORTk ──> sshd of mwk    nginx server block of mwk ──$realpath_root──> php-fpm of mwk (opcache,
//!                    (own host key)           │                                   validate_timestamps=0)
//!                                             ▼
//!                     servers/mwk/mediawiki  (a tree, or a symlink -> mediawiki-releases/<id>)
//!
//!   deploy host: staging/ (git, origin.git upstream) and deploy-host/mediawiki served for the staging canary
//! ```
//!
//! [`Fleet::builder`] starts everything in a fresh temporary directory, on free ports, and
//! waits until every page answers and every proxy sees every server UP. Every page is made
//! by a PHP front controller that shows `wikioasis`, the MediaWiki version, the release
//! stamp read from two different files (a page served from two releases at once shows two
//! stamps), the server and the code's path: see [`Page`].
//!
//! - Faults: [`Fleet::inject`] and [`Fleet::clear`] with a [`Fault`]; [`Fleet::reload_proxy`].
//! - Observers: [`Fleet::start_load`] (a [`LoadGenerator`] counting failed requests),
//!   [`Fleet::start_pool_monitor`] (a [`PoolMonitor`] recording the most servers out of the
//!   pool at once and each server's time out), the [`WebhookReceiver`], and
//!   [`Server::served_stamp`].
//! - Code changes: [`Fleet::push_stamp`] and [`Fleet::push_to_origin`] commit to staging's
//!   `origin`, so a deploy's `git pull` brings them; [`write_stamp`] stamps any tree.
//! - [`Fleet::write_config`] writes a `config.yaml` for the `mwdeploy` command.
//!
//! Dropping the fleet, also while a test panics, stops every process it started (by pid,
//! each waited for) and removes its directory. If the test process is killed outright, a
//! watchdog does the same.
//!
//! The programs come from Debian packages: `scripts/install-deps.sh` installs them, and
//! starting a fleet without one fails with [`Error::MissingPrograms`] naming that script.
//! Run as root (php-fpm `-R`, sshd logins as root).
//!
//! ```no_run
//! use std::time::Duration;
//! use testfleet::{Fault, Fleet, Layout, LoadOptions};
//!
//! # fn main() -> Result<(), testfleet::Error> {
//! let fleet = Fleet::builder()
//!     .servers(4)
//!     .proxies(2)
//!     .tree(500, 2)
//!     .layout(Layout::Releases)
//!     .start()?;
//! fleet.write_config(fleet.root().join("config.yaml"), Layout::Releases)?;
//!
//! let load = fleet.start_load(LoadOptions::default())?;
//! let pool = fleet.start_pool_monitor(Duration::from_millis(10));
//! fleet.inject(Fault::PageError(1))?; // mw2 answers HTTP 500
//! // ... run a deploy against the fleet ...
//! fleet.clear(Fault::PageError(1))?;
//! let (load, pool) = (load.stop(), pool.stop());
//! println!("{} of {} requests failed; at most {} servers out at once",
//!          load.failed, load.requests, pool.max_out);
//! for (server, stamp) in fleet.served_stamps() {
//!     println!("{server} serves {}", stamp?);
//! }
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod conf;
mod config;
mod daemon;
mod error;
mod fault;
mod fleet;
mod haproxy;
mod http;
mod observe;
mod site;
mod sys;
mod tree;
mod webhook;

pub use error::Error;
pub use fault::Fault;
pub use fleet::{DocumentRoot, Fleet, FleetBuilder, PostActivate};
pub use haproxy::{ServerState, BACKEND};
pub use http::{Page, MAIN_PAGE, VHOST};
pub use observe::{
    FailureKind, LoadFailure, LoadGenerator, LoadOptions, LoadReport, PoolMonitor, PoolReport,
    ServerOut, TargetLoad,
};
pub use site::{Proxy, Server, Staging};
pub use sys::{freeze_tree, socket_owners};
pub use tree::{write_stamp, INITIAL_STAMP};
pub use webhook::{WebhookPost, WebhookReceiver};

pub use mwdeploy_core::{Layout, PoolState, ReleaseId};
