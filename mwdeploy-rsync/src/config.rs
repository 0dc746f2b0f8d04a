//! What the transfer is told: where staging is, where each server keeps its live tree,
//! releases and shared folders, what rsync excludes and how it sets owners; and what one
//! deploy ships (the whole tree or some subtrees, its id and commits).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use mwdeploy_core::model::validate_name;
use mwdeploy_core::{Layout, NameError, ReleaseId, Server};

use crate::error::RsyncError;

/// The excludes of a config that names none: the git metadata and the top-level runtime
/// cache, both anchored at the tree's top (a nested `includes/cache/` is code and ships).
pub const DEFAULT_EXCLUDES: [&str; 2] = ["/.git/", "/cache/"];

/// Releases kept per server when the config does not say.
pub const DEFAULT_KEEP_RELEASES: usize = 5;

/// Free space kept on top of the tree's size when the config does not say (64 MiB).
pub const DEFAULT_RESERVE_BYTES: u64 = 64 << 20;

/// The transfer's settings (the config keys `staging_path`, `prod_path`,
/// `release_layout`, `releases_dir`, `keep_releases`, `shared_dirs`, `excludes`,
/// `chown`, `compress`), plus a few of its own.
///
/// ```
/// use mwdeploy_rsync::{RsyncConfig, TreePath};
/// use mwdeploy_core::Layout;
/// let mut config = RsyncConfig::new("/srv/mediawiki-staging", "/srv/mediawiki", Layout::Releases);
/// config.shared_dirs = vec![TreePath::new("images").unwrap()];
/// config.chown = Some("www-data:www-data".into());
/// assert!(config.validate().is_ok());
/// config.keep_releases = 1;
/// assert!(config.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RsyncConfig {
    /// The staging tree on the deploy host (`staging_path`): what is copied.
    pub staging_path: PathBuf,
    /// The live path of servers that do not set their own (`prod_path`).
    pub prod_path: PathBuf,
    /// Release directories with an atomic switch, or rsync into the live tree.
    pub layout: Layout,
    /// Where releases live (`releases_dir`); `None`: `<prod_path>-releases` per server.
    /// It must be on the file system of the live path's folder: releases hard-link each
    /// other and the first conversion moves the old tree there.
    pub releases_dir: Option<PathBuf>,
    /// Releases kept per server (2 or more); the live one and the one before it are
    /// never removed.
    pub keep_releases: usize,
    /// Folders of runtime data kept once per server under `<prod_path>-shared/` and linked
    /// into each release (`images`).
    pub shared_dirs: Vec<TreePath>,
    /// rsync exclude patterns. A leading `/` anchors a pattern at the tree's top; without
    /// it a pattern matches at any depth (rsync's rule).
    pub excludes: Vec<String>,
    /// `USER:GROUP` given to every copied file (rsync `--chown`). With a non-root deploy
    /// user this needs `remote_sudo`.
    pub chown: Option<String>,
    /// Modes given to every copied file (rsync `--chmod`, e.g. `D2775,F664`): one mode
    /// per kind in every release keeps unchanged files hard-linked.
    pub chmod: Option<String>,
    /// Compress on the wire (rsync `-z`); off on a local network.
    pub compress: bool,
    /// Compare file contents instead of size and modification time (rsync
    /// `--checksum`): reads every file on both sides on every deploy. Without it files
    /// are compared by size and modification time to the nanosecond.
    pub checksum: bool,
    /// Bytes that must stay free on top of the size of what is copied.
    pub reserve_bytes: u64,
    /// Bandwidth limit in KiB/s (rsync `--bwlimit`).
    pub bwlimit_kib: Option<u32>,
    /// rsync gives up after this long without data (rsync `--timeout`).
    pub io_timeout: Duration,
}

impl RsyncConfig {
    /// A config with the defaults: releases beside `prod_path`, 5 kept, no shared
    /// folders, [`DEFAULT_EXCLUDES`], no chown, no compression, a 64 MiB reserve, a 120 s
    /// I/O timeout.
    pub fn new(
        staging_path: impl Into<PathBuf>,
        prod_path: impl Into<PathBuf>,
        layout: Layout,
    ) -> Self {
        RsyncConfig {
            staging_path: staging_path.into(),
            prod_path: prod_path.into(),
            layout,
            releases_dir: None,
            keep_releases: DEFAULT_KEEP_RELEASES,
            shared_dirs: Vec::new(),
            excludes: DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect(),
            chown: None,
            chmod: None,
            compress: false,
            checksum: false,
            reserve_bytes: DEFAULT_RESERVE_BYTES,
            bwlimit_kib: None,
            io_timeout: Duration::from_secs(120),
        }
    }

    /// Checks every setting; nothing runs with a config that fails here.
    pub fn validate(&self) -> Result<(), RsyncError> {
        check_abs("staging_path", &self.staging_path)?;
        check_live_path("prod_path", &self.prod_path)?;
        if let Some(dir) = &self.releases_dir {
            check_abs("releases_dir", dir)?;
        }
        if self.keep_releases < 2 {
            return Err(RsyncError::Config {
                setting: "keep_releases",
                why: format!(
                    "{} is too few: at least 2 (the live release and the one before it)",
                    self.keep_releases
                ),
            });
        }
        for pattern in &self.excludes {
            let bad =
                pattern.is_empty() || pattern == "!" || pattern.chars().any(|c| c.is_control());
            if bad {
                return Err(RsyncError::Config {
                    setting: "excludes",
                    why: format!("{pattern:?} is not an rsync exclude pattern"),
                });
            }
        }
        if let Some(owner) = &self.chown {
            check_owner(owner)?;
        }
        if let Some(modes) = &self.chmod {
            let ok = !modes.is_empty()
                && modes
                    .chars()
                    .all(|c| c.is_ascii_digit() || "ugoaDFrwxXst+-=,".contains(c));
            if !ok {
                return Err(RsyncError::Config {
                    setting: "chmod",
                    why: format!("{modes:?} is not an rsync --chmod value (e.g. D2775,F664)"),
                });
            }
        }
        if self.io_timeout < Duration::from_secs(1) {
            return Err(RsyncError::Config {
                setting: "io_timeout",
                why: "at least 1s".into(),
            });
        }
        Ok(())
    }

    /// Where `server` keeps its live tree, releases and shared folders.
    pub fn paths(&self, server: &Server) -> Result<ServerPaths, RsyncError> {
        let prod = server
            .prod_path
            .clone()
            .unwrap_or_else(|| self.prod_path.clone());
        check_live_path("prod_path", &prod)?;
        let releases = match &self.releases_dir {
            Some(dir) => dir.clone(),
            None => suffixed(&prod, "-releases"),
        };
        let shared = suffixed(&prod, "-shared");
        if releases == prod || releases.starts_with(&prod) || prod.starts_with(&releases) {
            return Err(RsyncError::Config {
                setting: "releases_dir",
                why: format!(
                    "{} and the live path {} may not contain one another",
                    releases.display(),
                    prod.display()
                ),
            });
        }
        Ok(ServerPaths {
            prod,
            releases,
            shared,
        })
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn check_abs(setting: &'static str, path: &Path) -> Result<(), RsyncError> {
    let text = path.to_string_lossy();
    let clean = path.is_absolute()
        && !text.chars().any(|c| c.is_control())
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if clean {
        Ok(())
    } else {
        Err(RsyncError::Config {
            setting,
            why: format!(
                "{} must be an absolute path without `.`, `..` or control characters",
                path.display()
            ),
        })
    }
}

fn check_live_path(setting: &'static str, path: &Path) -> Result<(), RsyncError> {
    check_abs(setting, path)?;
    if path.parent().is_none() || path.file_name().is_none() {
        return Err(RsyncError::Config {
            setting,
            why: format!("{} cannot be a live path", path.display()),
        });
    }
    Ok(())
}

fn check_owner(owner: &str) -> Result<(), RsyncError> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with('-')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let ok = match owner.split_once(':') {
        Some(("", group)) => name_ok(group),
        Some((user, "")) => name_ok(user),
        Some((user, group)) => name_ok(user) && name_ok(group),
        None => name_ok(owner),
    };
    if ok {
        Ok(())
    } else {
        Err(RsyncError::Config {
            setting: "chown",
            why: format!("{owner:?} is not USER:GROUP"),
        })
    }
}

/// A relative path inside the tree: names joined by `/`, each of `[A-Za-z0-9._-]`, not
/// starting with `-` or `.`, no `..`. Subtrees of a targeted deploy, shared folders, files
/// a hook rewrites.
///
/// ```
/// use mwdeploy_rsync::TreePath;
/// assert_eq!(TreePath::new("versions/1.45/extensions/Echo").unwrap().as_str(), "versions/1.45/extensions/Echo");
/// for bad in ["", "/etc", "a//b", "../x", "a/.git", "a b", "images/"] {
///     assert!(TreePath::new(bad).is_err(), "{bad}");
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreePath(String);

impl TreePath {
    /// Checks `path` and wraps it.
    pub fn new(path: &str) -> Result<Self, NameError> {
        for part in path.split('/') {
            validate_name("path component", part, 255)?;
        }
        Ok(TreePath(path.to_string()))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its folder inside the tree, if it is not at the top.
    pub fn parent(&self) -> Option<&str> {
        self.0.rsplit_once('/').map(|(p, _)| p)
    }
}

impl std::fmt::Display for TreePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TreePath {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TreePath::new(s)
    }
}

/// What one deploy copies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Scope {
    /// The whole staging tree (minus the excludes): `--core`, `--rsync`, `--mediawiki`.
    #[default]
    Full,
    /// Only these subtrees (`--extension`, `--skin`, `--config`): only they are scanned
    /// and copied. In the release layout the new release starts as a hard-link copy of
    /// the live one, which must be `base`, the fleet's latest complete release.
    Subtrees {
        /// The subtrees, relative to the tree's top.
        paths: Vec<TreePath>,
        /// The fleet's latest complete release (release layout: required).
        base: Option<ReleaseId>,
    },
}

impl Scope {
    /// A targeted deploy of `paths` on top of `base`.
    pub fn subtrees(paths: Vec<TreePath>, base: Option<ReleaseId>) -> Self {
        Scope::Subtrees { paths, base }
    }
}

/// Who ships what: written into each release's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DeployInfo {
    /// The deploy's id (its journal's name).
    pub deploy: String,
    /// The staging commits shipped: repository path in staging (`.`, `versions/1.45`) to
    /// commit id.
    pub commits: BTreeMap<String, String>,
}

impl DeployInfo {
    /// A deploy called `deploy`, no commits recorded.
    pub fn new(deploy: impl Into<String>) -> Self {
        DeployInfo {
            deploy: deploy.into(),
            commits: BTreeMap::new(),
        }
    }

    /// The same, recording that `repo` is at `commit`.
    pub fn commit(mut self, repo: impl Into<String>, commit: impl Into<String>) -> Self {
        self.commits.insert(repo.into(), commit.into());
        self
    }
}

/// One server's paths in the release layout.
///
/// ```text
/// <prod>            -> <releases>/<id>     the live tree: a symlink (in place: a folder)
/// <releases>/<id>/                          a complete release, with .mwdeploy-release.json
/// <releases>/.<id>.partial/                 a copy in progress (never live)
/// <prod>/../.<name>.mwdeploy-switch.<id>    a prepared switch (-> <releases>/<id>)
/// <shared>/<dir>/                           runtime data, linked into every release
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerPaths {
    /// The live path (`prod_path`).
    pub prod: PathBuf,
    /// The releases folder.
    pub releases: PathBuf,
    /// The shared folders' parent, `<prod>-shared`.
    pub shared: PathBuf,
}

impl ServerPaths {
    /// The folder of release `id`.
    pub fn release(&self, id: &ReleaseId) -> PathBuf {
        self.releases.join(id.as_str())
    }

    /// Where release `id` is built before it is complete.
    pub fn partial(&self, id: &ReleaseId) -> PathBuf {
        self.releases.join(partial_name(id))
    }

    /// The live path's folder (where the new symlink is made before it is renamed).
    pub fn parent(&self) -> &Path {
        self.prod.parent().unwrap_or(Path::new("/"))
    }

    /// The symlink to release `id` made beside the live path, then renamed over it by
    /// the switch (the copy prepares it, so the switch is one rename).
    pub fn switch_link(&self, id: &ReleaseId) -> PathBuf {
        self.parent().join(format!("{}{id}", self.switch_prefix()))
    }

    /// The name every switch link starts with.
    pub(crate) fn switch_prefix(&self) -> String {
        let name = self
            .prod
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!(".{name}.mwdeploy-switch.")
    }

    /// What the live symlink holds for release `id`: relative when the releases folder
    /// sits beside the live path (the tree can then be moved as a whole), else absolute.
    pub fn link_target(&self, id: &ReleaseId) -> PathBuf {
        match (self.releases.parent(), self.releases.file_name()) {
            (Some(parent), Some(name)) if parent == self.parent() => {
                Path::new(name).join(id.as_str())
            }
            _ => self.release(id),
        }
    }

    /// The absolute path a symlink target of the live path refers to.
    pub fn resolve(&self, target: &Path) -> PathBuf {
        let joined = if target.is_absolute() {
            target.to_path_buf()
        } else {
            self.parent().join(target)
        };
        let mut out = PathBuf::new();
        for c in joined.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                other => out.push(other),
            }
        }
        out
    }

    /// The release a symlink target names, if it is a release in the releases folder.
    pub fn release_of(&self, target: &Path) -> Option<ReleaseId> {
        let path = self.resolve(target);
        if path.parent()? != self.releases {
            return None;
        }
        ReleaseId::parse(path.file_name()?.to_str()?).ok()
    }

    /// The shared folder of `dir`.
    pub fn shared_dir(&self, dir: &TreePath) -> PathBuf {
        self.shared.join(dir.as_str())
    }
}

/// The folder name of a copy of `id` in progress.
pub(crate) fn partial_name(id: &ReleaseId) -> String {
    format!(".{id}.partial")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mwdeploy_core::ServerId;

    fn config() -> RsyncConfig {
        RsyncConfig::new("/srv/staging", "/srv/mediawiki", Layout::Releases)
    }

    #[test]
    fn defaults_follow_the_contract_and_validate() {
        let c = config();
        assert_eq!(c.excludes, ["/.git/", "/cache/"]);
        assert_eq!(c.keep_releases, 5);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        type Change = Box<dyn Fn(&mut RsyncConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "staging_path",
                Box::new(|c| c.staging_path = "staging".into()),
            ),
            ("prod_path", Box::new(|c| c.prod_path = "/".into())),
            (
                "prod_path",
                Box::new(|c| c.prod_path = "/srv/../etc".into()),
            ),
            ("prod_path", Box::new(|c| c.prod_path = "/srv/a\nb".into())),
            (
                "releases_dir",
                Box::new(|c| c.releases_dir = Some("rel".into())),
            ),
            ("keep_releases", Box::new(|c| c.keep_releases = 1)),
            ("excludes", Box::new(|c| c.excludes.push(String::new()))),
            ("excludes", Box::new(|c| c.excludes.push("a\nb".into()))),
            ("chown", Box::new(|c| c.chown = Some("www-data:-x".into()))),
            ("chown", Box::new(|c| c.chown = Some("a b".into()))),
            ("chmod", Box::new(|c| c.chmod = Some("F644;id".into()))),
        ];
        for (setting, change) in cases {
            let mut c = config();
            change(&mut c);
            match c.validate() {
                Err(RsyncError::Config { setting: s, .. }) => assert_eq!(s, setting),
                other => panic!("{setting}: {other:?}"),
            }
        }
        let mut c = config();
        c.chown = Some("www-data:mediawiki-admins".into());
        c.chmod = Some("D2775,F664".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn paths_follow_each_servers_prod_path_and_the_switch_link_sits_beside_it() {
        let c = config();
        let mut s = Server::new(ServerId::new("mw1").unwrap());
        let p = c.paths(&s).unwrap();
        assert_eq!(p.releases, Path::new("/srv/mediawiki-releases"));
        assert_eq!(p.shared, Path::new("/srv/mediawiki-shared"));
        let id = ReleaseId::parse("20260101T000000Z-a1").unwrap();
        assert_eq!(
            p.switch_link(&id),
            Path::new("/srv/.mediawiki.mwdeploy-switch.20260101T000000Z-a1")
        );
        assert_eq!(
            p.link_target(&id),
            Path::new("mediawiki-releases/20260101T000000Z-a1")
        );
        assert_eq!(
            p.partial(&id),
            Path::new("/srv/mediawiki-releases/.20260101T000000Z-a1.partial")
        );
        assert_eq!(p.release_of(&p.link_target(&id)), Some(id.clone()));
        assert_eq!(p.release_of(&p.release(&id)), Some(id.clone()));
        assert_eq!(
            p.release_of(Path::new("../srv/mediawiki-releases/20260101T000000Z-a1")),
            Some(id.clone())
        );
        assert_eq!(
            p.release_of(Path::new("/elsewhere/20260101T000000Z-a1")),
            None
        );

        s.prod_path = Some("/data/mw2/mediawiki".into());
        let p = c.paths(&s).unwrap();
        assert_eq!(p.releases, Path::new("/data/mw2/mediawiki-releases"));

        let mut c = config();
        c.releases_dir = Some("/data/releases".into());
        let p = c.paths(&s).unwrap();
        assert_eq!(
            p.link_target(&id),
            Path::new("/data/releases/20260101T000000Z-a1")
        );
        c.releases_dir = Some("/data/mw2/mediawiki/releases".into());
        assert!(c.paths(&s).is_err(), "releases inside the live tree");
    }
}
