//! What a deploy asks of the staging checkout: the old tool's pull flags, the version
//! directories they apply to, and what the sync then copies.

use std::path::{Path, PathBuf};

/// What the staging checkout gets before the sync: the old tool's pull flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Work {
    /// `--core`: pull the root repository of `staging_path`; the whole tree is synced.
    pub core: bool,
    /// `--mediawiki`: pull `versions/<v>` of each selected version.
    pub mediawiki: bool,
    /// `--extension`: pull `versions/<v>/extensions/NAME`.
    pub extensions: Vec<String>,
    /// `--skin`: pull `versions/<v>/skins/NAME`.
    pub skins: Vec<String>,
    /// `--config`: pull `staging_path/config`.
    pub config: bool,
    /// `--patch`: patch files (in `<prod_path>/scripts/extensions/patches/` on the deploy
    /// host), applied in order.
    pub patches: Vec<String>,
    /// `--patch-target`: the folder under `versions/<v>/` they apply to.
    pub patch_target: Option<String>,
    /// `--rsync`: no pulls; the whole tree is synced.
    pub rsync: bool,
    /// `--provision`: the deploy host's live tree is pushed as it is; no staging steps.
    pub provision: bool,
    /// `--l10n`: rebuild the localisation cache on staging and each server.
    pub l10n: bool,
}

/// What the sync copies, relative to the tree's top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncScope {
    /// The whole tree.
    Whole,
    /// Only these folders (a targeted deploy).
    Paths(Vec<PathBuf>),
}

impl Work {
    /// Whether any version directory is involved (so `--versions` matters).
    pub fn uses_versions(&self) -> bool {
        !self.rsync
            && !self.provision
            && (self.mediawiki
                || !self.extensions.is_empty()
                || !self.skins.is_empty()
                || !self.patches.is_empty())
    }

    /// What the sync copies once `versions` (the selected version directories) are
    /// known: as the old tool, `--rsync`, `--core` and `--provision` sync the whole tree;
    /// `--config`, `--mediawiki`, `--extension` and `--skin` only what they pulled, and
    /// patches their target.
    pub fn sync_scope(&self, versions: &[String]) -> SyncScope {
        if self.rsync || self.core || self.provision {
            return SyncScope::Whole;
        }
        let mut paths = Vec::new();
        if self.config {
            paths.push(PathBuf::from("config"));
        }
        for v in versions {
            let vp = Path::new("versions").join(v);
            if self.mediawiki {
                paths.push(vp);
                continue;
            }
            for e in &self.extensions {
                paths.push(vp.join("extensions").join(e));
            }
            for s in &self.skins {
                paths.push(vp.join("skins").join(s));
            }
            if let (false, Some(t)) = (self.patches.is_empty(), &self.patch_target) {
                let target = vp.join(t);
                if !paths.iter().any(|p| target.starts_with(p)) {
                    paths.push(target);
                }
            }
        }
        if paths.is_empty() {
            SyncScope::Whole
        } else {
            SyncScope::Paths(paths)
        }
    }
}

/// `--versions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Versions {
    /// Every directory under `staging_path/versions/` (the default).
    #[default]
    All,
    /// These, in the order given.
    Only(Vec<String>),
}
