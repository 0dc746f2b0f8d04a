//! Releases on a server: the manifest each one carries (which also says where a
//! rollback from it goes), what a server serves, and which releases pruning may remove.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use mwdeploy_core::{ReleaseId, ServerId};
use serde::{Deserialize, Serialize};

use crate::config::ServerPaths;

/// The manifest's file name, at the top of every release.
pub const MANIFEST_FILE: &str = ".mwdeploy-release.json";

/// The manifest format written now.
pub const MANIFEST_FORMAT: u32 = 1;

/// What a release is: written as `.mwdeploy-release.json` at its top once its copy is
/// complete, so a release with a manifest is a complete one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// Format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// The release (its folder's name).
    pub id: ReleaseId,
    /// The deploy that made it.
    pub deploy: String,
    /// When its copy completed (RFC 3339, UTC).
    pub created: String,
    /// The staging commits it holds: repository path in staging to commit id.
    #[serde(default)]
    pub commits: BTreeMap<String, String>,
    /// How it was made.
    pub scope: ManifestScope,
    /// The release that was live when this one was copied: where a rollback from this
    /// one goes.
    #[serde(default)]
    pub previous: Option<ReleaseId>,
}

impl Manifest {
    /// A manifest for `id`, made now, to replace `previous`.
    pub fn new(
        id: ReleaseId,
        deploy: impl Into<String>,
        commits: BTreeMap<String, String>,
        scope: ManifestScope,
        previous: Option<ReleaseId>,
    ) -> Self {
        Manifest {
            format: MANIFEST_FORMAT,
            id,
            deploy: deploy.into(),
            created: now_rfc3339(),
            commits,
            scope,
            previous,
        }
    }

    /// The manifest as written: one line of JSON.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// How a release was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ManifestScope {
    /// The whole staging tree.
    Full,
    /// A hard-link copy of `base` with these subtrees copied from staging.
    Subtrees {
        /// The release it started from (`None` in place).
        base: Option<ReleaseId>,
        /// The subtrees copied.
        paths: Vec<String>,
    },
    /// A plain live folder turned into the first release.
    Converted,
}

/// The release a rollback from `live` goes to: the one its manifest says was live when it
/// was copied (a release that was rolled back from, or never activated, is never that),
/// if it is still on disk. A release without a manifest (made by another tool): the
/// newest older one on disk.
pub(crate) fn previous_of(
    live: &ReleaseId,
    manifest: Option<&Manifest>,
    existing: &BTreeSet<ReleaseId>,
) -> Option<ReleaseId> {
    match manifest {
        Some(m) => m
            .previous
            .clone()
            .filter(|p| p != live && existing.contains(p)),
        None => existing.range(..live.clone()).next_back().cloned(),
    }
}

/// The releases pruning removes: all but the newest `keep` and those in `protect`.
pub(crate) fn prune(
    existing: &BTreeSet<ReleaseId>,
    keep: usize,
    protect: &[Option<&ReleaseId>],
) -> Vec<ReleaseId> {
    existing
        .iter()
        .rev()
        .skip(keep)
        .filter(|id| !protect.contains(&Some(*id)))
        .cloned()
        .collect()
}

/// Where a server's live path points, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Live {
    /// A symlink to this release.
    Release(ReleaseId),
    /// A plain folder (the in-place layout, or a server not converted yet), with its
    /// manifest if an in-place deploy wrote one.
    Directory {
        /// The live tree's manifest.
        manifest: Option<Manifest>,
    },
    /// A symlink to something that is not a release in the releases folder.
    Elsewhere(PathBuf),
    /// Nothing there yet.
    Missing,
}

/// One release on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReleaseEntry {
    /// The release.
    pub id: ReleaseId,
    /// Its manifest (`None`: made by something else, or unreadable).
    pub manifest: Option<Manifest>,
    /// Whether it serves.
    pub live: bool,
    /// Whether a rollback goes to it.
    pub previous: bool,
}

/// The releases of one server (`mwdeploy releases`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerReleases {
    /// The server.
    pub server: ServerId,
    /// Its paths.
    pub paths: ServerPaths,
    /// What serves.
    pub live: Live,
    /// Where a rollback goes.
    pub previous: Option<ReleaseId>,
    /// Every complete release, oldest first.
    pub releases: Vec<ReleaseEntry>,
}

impl ServerReleases {
    /// The live release, in the release layout.
    pub fn live_release(&self) -> Option<&ReleaseId> {
        match &self.live {
            Live::Release(id) => Some(id),
            _ => None,
        }
    }
}

/// Now, RFC 3339 UTC to the second (`2026-11-22T03:48:58Z`).
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ReleaseId {
        ReleaseId::parse(&format!("20260101T0000{n:02}Z-r{n}")).unwrap()
    }

    fn all(ids: &[u32]) -> BTreeSet<ReleaseId> {
        ids.iter().map(|n| id(*n)).collect()
    }

    fn made_after(n: u32, previous: Option<u32>) -> Manifest {
        Manifest::new(
            id(n),
            "d",
            BTreeMap::new(),
            ManifestScope::Full,
            previous.map(id),
        )
    }

    #[test]
    fn back_is_what_was_live_when_the_release_was_copied() {
        // 1 live; 2 copied and activated, then rolled back; 3 copied while 1 was live.
        let three = made_after(3, Some(1));
        assert_eq!(
            previous_of(&id(3), Some(&three), &all(&[0, 1, 2, 3])),
            Some(id(1))
        );
        // And back again from 1: what was live before it.
        let one = made_after(1, Some(0));
        assert_eq!(
            previous_of(&id(1), Some(&one), &all(&[0, 1, 2, 3])),
            Some(id(0))
        );
    }

    #[test]
    fn a_pruned_or_missing_previous_release_is_nothing_to_go_back_to() {
        let three = made_after(3, Some(1));
        assert_eq!(previous_of(&id(3), Some(&three), &all(&[0, 3])), None);
        let first = made_after(1, None);
        assert_eq!(previous_of(&id(1), Some(&first), &all(&[0, 1])), None);
    }

    #[test]
    fn a_release_without_manifest_goes_back_to_the_newest_older_one() {
        assert_eq!(previous_of(&id(2), None, &all(&[0, 1, 2, 3])), Some(id(1)));
        assert_eq!(previous_of(&id(0), None, &all(&[0, 1])), None);
    }

    #[test]
    fn pruning_keeps_the_newest_and_never_the_protected() {
        let existing = all(&[0, 1, 2, 3, 4]);
        assert_eq!(prune(&existing, 2, &[]), vec![id(2), id(1), id(0)]);
        assert_eq!(
            prune(&existing, 2, &[Some(&id(1)), Some(&id(0)), None]),
            vec![id(2)]
        );
        assert!(prune(&existing, 9, &[]).is_empty());
    }

    #[test]
    fn manifests_are_one_json_line_and_read_back() {
        let m = Manifest::new(
            id(1),
            "d1",
            BTreeMap::from([(".".to_string(), "abc".to_string())]),
            ManifestScope::Subtrees {
                base: Some(id(0)),
                paths: vec!["config".into()],
            },
            Some(id(0)),
        );
        let line = m.to_line();
        assert_eq!(line.lines().count(), 1);
        assert!(line.contains("\"kind\":\"subtrees\""), "{line}");
        assert!(m.created.ends_with('Z'));
        let back: Manifest = serde_json::from_str(&line).unwrap();
        assert_eq!(back, m);
        // Readers of later formats ignore fields they do not know.
        let later = line.replace("\"format\":1", "\"format\":2,\"extra\":true");
        assert!(serde_json::from_str::<Manifest>(&later).is_ok());
    }
}
