//! mwdeploy-mediawiki: staging before production, the MediaWiki way.
//!
//! What the old tool's flags (`--core`, `--mediawiki`, `--extension`, `--skin`,
//! `--config`, `--patch`, `--l10n`) do to the deploy host's staging checkout before any
//! production server is touched: git pulls with submodules, patches, the sync to
//! staging's own live tree, the localisation cache rebuild, staging's hooks. The
//! `mwdeploy` crate runs these steps and then the engine, whose first check is
//! staging's canary.
//!
//! ```text
//!  --core / --mediawiki / --extension NAME / --skin NAME / --config
//!     │  (root, rel) in staging_path
//!     ▼
//!  git::Git::resolve ──> PullSpec { checkout, submodule }
//!     │                    own clone: { root/rel, None }
//!     │                    gitlink:   { root, Some(rel) }  (pull the parent, then the submodule)
//!     ▼
//!  git::Git::pull: upstream (@{u}) ─> fetch ─> HEAD..@{u} ─> merge --ff-only ─> submodule update
//!     │
//!     ▼
//!  Pulled { checkout, upstream, before, after, commits }  ──> journal and output
//!
//!  --patch P --patch-target T
//!     ▼
//!  patch::apply: dry run forward ─ok─> apply ──> Patched::Applied
//!                   └─fails─> dry run reversed ─ok─> Patched::AlreadyApplied (never reversed)
//!                                └─fails─> StagingError::PatchDoesNotApply
//! ```
//!
//! Nothing here ever resets, reverses or discards local work: a checkout that cannot
//! fast-forward, or a patch that does not apply, is an error and the tree is left as it was.
//! Commands are argv (never shell strings), run as `git_user` through `sudo -n -u` when set.

//!
//! - [`work`]: what is asked ([`Work`], [`Versions`]) and what the sync copies ([`SyncScope`]).
//! - [`git`], [`patch`]: the checkout's pulls and patches.
//! - [`steps`]: each of them as a recorded step ([`Steps`]), and staging's sync.
//!
//! # Example
//!
//! ```
//! use std::path::PathBuf;
//! use mwdeploy_mediawiki::{SyncScope, Work};
//! // `--extension Echo --versions 1.45`: pull one extension, sync only its folder.
//! let work = Work { extensions: vec!["Echo".into()], ..Work::default() };
//! assert_eq!(
//!     work.sync_scope(&["1.45".to_string()]),
//!     SyncScope::Paths(vec![PathBuf::from("versions/1.45/extensions/Echo")]),
//! );
//! ```
#![warn(missing_docs)]

mod error;
pub mod git;
pub mod patch;
pub mod steps;
pub mod work;

pub use error::StagingError;
pub use steps::{Checkout, Steps, Stopped};
pub use work::{SyncScope, Versions, Work};
