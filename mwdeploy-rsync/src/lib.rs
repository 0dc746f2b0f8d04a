//! `Transfer` over rsync for mwdeploy: release directories with an atomic switch and
//! instant rollback, or the old tool's rsync into the live tree; and the `Hook` port.
//!
//! # Data flow
//!
//! ```text
//!  deploy host                                      server (ssh through core's exec, or local)
//!  ───────────                                      ──────────────────────────────────────────
//!  staging_path ── rsync -s --link-dest=<live> ──>  <releases>/.<id>.partial/   (pooled: copy)
//!     (size walked once: room check vs df)          + shared links, manifest
//!                                                   mv -T -> <releases>/<id>/   (complete)
//!                                                   ln -s <id> .<name>.mwdeploy-switch.<id>  (prepared)
//!  Hooks ── post_copy argv (l10n) ───────────────>  runs on <releases>/<id>     (pooled)
//!  activate (depooled) ──────────────────────────>  mv -T .<name>.mwdeploy-switch.<id> <prod_path>
//!  Hooks ── post_activate argv (php-fpm reload) ─>  canary, repool ...
//!  rollback ─────────────────────────────────────>  ln -s <previous> + mv -T over <prod_path>
//! ```
//!
//! On each server:
//!
//! ```text
//! <prod_path>            -> <prod_path>-releases/<id>   (a symlink; in place: a folder)
//! <prod_path>-releases/<id>/.mwdeploy-release.json       a release and its manifest
//! .<name>.mwdeploy-switch.<id>                          beside <prod_path>: a prepared switch
//! <prod_path>-shared/images/                             shared_dirs, linked into each release
//! ```
//!
//! - [`RsyncTransfer`] implements core's [`Transfer`](mwdeploy_core::ports::Transfer):
//!   `copy` builds the new release beside the live one while the server serves
//!   (unchanged files are hard links to the live release, nothing else of it survives),
//!   after checking the room for it and pruning old releases (never the live one or the
//!   one it replaced), and prepares the switch; `activate` is one atomic rename of that
//!   symlink over the live path (and converts a plain live folder into the first release,
//!   out of the pool); `rollback` switches to the release the live one replaced, as its
//!   manifest records (no copy, no rsync).
//!   [`Scope::Subtrees`] is a targeted deploy: a hard-link copy of the live release with
//!   only the subtrees synced, refused unless the live release is the fleet's latest.
//!   In place (`Layout::Inplace`), `copy` does nothing, `activate` rsyncs into the live
//!   tree (with `--delay-updates` when the tree keeps serving meanwhile: a server not
//!   taken out of the pool), and there is nothing to roll back to.
//! - [`RollbackTransfer`] and [`RecoverTransfer`]: the transfers of a rollback (switch to
//!   an earlier release, and back if its canary fails) and of a recovery (copy again only
//!   what a killed deploy cut); [`WarmAhead`] opens the next servers' connections while
//!   one is activated, so no handshake is paid out of the pool.
//! - [`Hooks`] implements core's [`Hook`](mwdeploy_core::ports::Hook): argv lists per
//!   hook point with `{server}`, `{release}`, `{release_path}`, `{prod_path}`.
//! - Every command on a server goes through the shared runner of core's
//!   [`Hosts`](mwdeploy_exec::Hosts), as argv; rsync's `-e` is the same ssh
//!   command (options, host key checking, multiplexed connection) and file names travel
//!   inside rsync's protocol (`--secluded-args`), never through a shell.
//! - Progress: rsync's `--info=progress2` lines ([`parse_progress`]) become percent and
//!   rate on the step's progress handle.
//!
//! A non-root deploy user with `remote_sudo` needs a sudoers entry for
//! [`REMOTE_COMMANDS`] (rsync starts as `sudo -n rsync`), and the hooks' own commands.
//!
//! # What keeps a copy correct
//!
//! - Files are compared by size and modification time to the nanosecond
//!   (`--modify-window=-1`): rsync's default compares whole seconds, and a file rewritten
//!   with the same size within the second of the last copy would be taken as unchanged
//!   (and, with `--link-dest`, hard-linked to its old bytes). `checksum: true` compares
//!   contents instead, at the cost of reading every file on both sides.
//! - Excludes are rsync patterns; the defaults (`/.git/`, `/cache/`) are anchored at the
//!   tree's top, so `includes/cache/` ships. A new release starts empty: nothing of the
//!   old release survives but what staging holds.
//! - A release's files may be hard links shared with older releases: nothing rewrites a
//!   file in place. The manifest is always a new file, a targeted deploy empties the
//!   subtrees it copies before rsync fills them, and hooks must write new files (see
//!   [`Hooks`] for paths a hook cannot help rewriting).
//! - Owners and modes must be alike in every release for `--link-dest` to link: `chown`
//!   (and `chmod`) set them on every copy.
//! - A rollback goes to the release that was live when the live one was copied (its
//!   manifest's `previous`): never a release that was rolled back from or never went live.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use mwdeploy_exec::{Hosts, SshDefaults};
//! use mwdeploy_core::ports::{Progress, Transfer};
//! use mwdeploy_core::{Layout, ReleaseId, Server, ServerId};
//! use mwdeploy_rsync::{DeployInfo, RsyncConfig, RsyncTransfer, TreePath};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hosts = Arc::new(Hosts::new(SshDefaults::new("mwdeploy"))?);
//! let mut config = RsyncConfig::new("/srv/mediawiki-staging", "/srv/mediawiki", Layout::Releases);
//! config.shared_dirs = vec![TreePath::new("images")?];
//! config.chown = Some("www-data:www-data".into());
//! let deploy = DeployInfo::new("20261122T034858Z-3f9a").commit(".", "4b825dc6");
//! let transfer = RsyncTransfer::new(config, hosts, deploy)?;
//!
//! let server = Server::new(ServerId::new("mw1.example.org")?);
//! let release = ReleaseId::parse("20261122T034858Z-3f9a")?;
//! let progress = Progress::new(server.id.clone(), "copy", |s, _, u| {
//!     if let Some(p) = u.percent { println!("{s}: {p:.0}% {}", u.rate.unwrap_or_default()) }
//! });
//! transfer.copy(&server, &release, &progress).await?;     // pooled
//! transfer.activate(&server, &release, &progress).await?; // depooled: the switch
//! let back = transfer.rollback(&server, &progress).await?; // the release live before
//! println!("{} serves {back} again", server.id);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod config;
mod error;
mod hooks;
mod release;
mod remote;
mod rsync;
mod staging;
mod switch;
mod transfer;
mod warm;

pub use config::{
    DeployInfo, RsyncConfig, Scope, ServerPaths, TreePath, DEFAULT_EXCLUDES, DEFAULT_KEEP_RELEASES,
    DEFAULT_RESERVE_BYTES,
};
pub use error::RsyncError;
pub use hooks::{Hooks, PLACEHOLDERS};
pub use release::{
    Live, Manifest, ManifestScope, ReleaseEntry, ServerReleases, MANIFEST_FILE, MANIFEST_FORMAT,
};
pub use remote::REMOTE_COMMANDS;
pub use rsync::{parse_progress, RsyncProgress};
pub use switch::{RecoverTransfer, RollbackTransfer};
pub use transfer::RsyncTransfer;
pub use warm::WarmAhead;
