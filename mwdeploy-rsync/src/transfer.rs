//! [`RsyncTransfer`]: core's `Transfer` over rsync, in the release layout (copy beside
//! the live release, atomic switch, rollback) or in place (the old tool's way).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use mwdeploy_core::ports::{Progress, ProgressUpdate, Transfer};
use mwdeploy_core::{Layout, PortError, ReleaseId, Server};
use mwdeploy_exec::{Cmd, CommandRunner, ExecError, Hosts, LocalRunner, Stream};
use tokio::sync::OnceCell;

use crate::config::{DeployInfo, RsyncConfig, Scope, ServerPaths, TreePath};
use crate::error::RsyncError;
use crate::release::{
    previous_of, prune, Live, Manifest, ManifestScope, ReleaseEntry, ServerReleases, MANIFEST_FILE,
};
use crate::remote::{Inspection, LiveState, Remote};
use crate::rsync::{failure_detail, parse_progress, rsh_for, Dest, Job};
use crate::staging::tree_size;

/// Puts releases on servers with rsync: one per deploy (it carries the deploy's id,
/// commits and scope into each release's manifest).
///
/// In the release layout, [`copy`](Transfer::copy) builds `<releases>/<id>` while the
/// server serves (hard links to the live release for unchanged files), then
/// [`activate`](Transfer::activate) switches the live symlink atomically and
/// [`rollback`](Transfer::rollback) switches it back. In place, `activate` rsyncs into
/// the live tree and there is nothing to roll back to.
#[derive(Debug)]
pub struct RsyncTransfer {
    config: RsyncConfig,
    hosts: Arc<Hosts>,
    deploy: DeployInfo,
    scope: Scope,
    /// The size of what is copied, measured once per deploy.
    tree_bytes: OnceCell<u64>,
}

/// What the live path is, in terms of releases.
enum Current {
    Release(ReleaseId),
    Directory { mtime: f64 },
    Elsewhere(PathBuf),
    Missing,
}

impl RsyncTransfer {
    /// A transfer of the whole staging tree for `deploy`, running its commands through
    /// `hosts` (shared with the other adapters: one ssh connection per server).
    pub fn new(
        config: RsyncConfig,
        hosts: Arc<Hosts>,
        deploy: DeployInfo,
    ) -> Result<Self, RsyncError> {
        config.validate()?;
        Ok(RsyncTransfer {
            config,
            hosts,
            deploy,
            scope: Scope::Full,
            tree_bytes: OnceCell::new(),
        })
    }

    /// The same transfer copying only what `scope` says (a targeted deploy).
    pub fn with_scope(mut self, scope: Scope) -> Result<Self, RsyncError> {
        if let Scope::Subtrees { paths, base } = &scope {
            if paths.is_empty() {
                return Err(RsyncError::Config {
                    setting: "subtrees",
                    why: "a targeted deploy needs at least one subtree".into(),
                });
            }
            if base.is_none() && self.config.layout == Layout::Releases {
                return Err(RsyncError::Config {
                    setting: "subtrees",
                    why: "a targeted deploy in the release layout needs the fleet's latest \
                          complete release to build on"
                        .into(),
                });
            }
        }
        self.scope = scope;
        self.tree_bytes = OnceCell::new();
        Ok(self)
    }

    /// The same transfer, taking the size of the staging tree that `other` counted for
    /// its room checks, when `other` copies the same tree (same staging path, subtrees,
    /// excludes and shared folders: staging's own transfer, say). The fleet's first
    /// server then does not wait, out of the pool, for a second walk of staging.
    pub fn sharing_count_of(self, other: &RsyncTransfer) -> Self {
        let (a, b) = (&self.config, &other.config);
        let same = a.staging_path == b.staging_path
            && a.excludes == b.excludes
            && a.shared_dirs == b.shared_dirs
            && self.subtrees() == other.subtrees();
        if let (true, Some(bytes)) = (same, other.tree_bytes.get()) {
            // Empty: a fresh cell, or one this transfer filled with the same count.
            let _ = self.tree_bytes.set(*bytes);
        }
        self
    }

    /// Its settings.
    pub fn config(&self) -> &RsyncConfig {
        &self.config
    }

    /// What it copies.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Where `server` keeps its live tree, releases and shared folders.
    pub fn paths(&self, server: &Server) -> Result<ServerPaths, RsyncError> {
        self.config.paths(server)
    }

    /// The rsync argv that copies `release` to `server`, for a dry run: nothing is run
    /// or read on the server, so in the release layout the live release that unchanged
    /// files are hard-linked to is shown as `<prod_path>` (the link the copy resolves).
    pub fn copy_argv(
        &self,
        server: &Server,
        release: &ReleaseId,
    ) -> Result<Vec<String>, RsyncError> {
        let paths = self.paths(server)?;
        let (dest, link_dest, in_place) = match self.config.layout {
            Layout::Releases => (paths.partial(release), Some(paths.prod.clone()), false),
            Layout::Inplace => (paths.prod.clone(), None, true),
        };
        let job = Job {
            config: &self.config,
            subtrees: self.subtrees(),
            dest: self.dest(server, dest)?,
            link_dest,
            in_place,
            delay_updates: in_place && serves_while_copied(server),
            remote_sudo: self.hosts.sudo(),
        };
        Ok(job.argv())
    }

    fn subtrees(&self) -> Option<&[TreePath]> {
        match &self.scope {
            Scope::Full => None,
            Scope::Subtrees { paths, .. } => Some(paths),
        }
    }

    /// The disk usage of what is copied (measured on the deploy host, once).
    async fn tree_bytes(&self) -> Result<u64, RsyncError> {
        self.tree_bytes
            .get_or_try_init(|| async {
                let root = self.config.staging_path.clone();
                let subtrees: Option<Vec<TreePath>> = self.subtrees().map(<[_]>::to_vec);
                let excludes = self.config.excludes.clone();
                let shared = self.config.shared_dirs.clone();
                tokio::task::spawn_blocking(move || {
                    tree_size(&root, subtrees.as_deref(), &excludes, &shared)
                })
                .await
                .map_err(|e| RsyncError::Staging {
                    path: self.config.staging_path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?
            })
            .await
            .copied()
    }

    fn current(
        &self,
        server: &Server,
        paths: &ServerPaths,
        ins: &Inspection,
    ) -> Result<Current, RsyncError> {
        Ok(match &ins.live {
            LiveState::Link(target) => match paths.release_of(target) {
                Some(id) if ins.releases.contains(&id) => Current::Release(id),
                _ => Current::Elsewhere(paths.resolve(target)),
            },
            LiveState::Directory { mtime } => Current::Directory { mtime: *mtime },
            LiveState::Missing => Current::Missing,
            LiveState::Other(kind) => {
                return Err(RsyncError::Layout {
                    server: server.id.clone(),
                    path: paths.prod.clone(),
                    what: format!(
                        "is neither a symlink nor a folder (find type {kind:?}): refusing to replace it"
                    ),
                })
            }
        })
    }

    /// Checks room for the copy on the live path's file system.
    async fn check_room(
        &self,
        server: &Server,
        remote: &Remote,
        paths: &ServerPaths,
    ) -> Result<(), RsyncError> {
        let tree = self.tree_bytes().await?;
        let needed = tree.saturating_add(self.config.reserve_bytes);
        let free = remote.free_bytes(paths.parent()).await?;
        if free < needed {
            return Err(RsyncError::NoRoom {
                server: server.id.clone(),
                path: paths.parent().to_path_buf(),
                free,
                needed,
                tree,
                reserve: self.config.reserve_bytes,
            });
        }
        Ok(())
    }

    /// The manifest of the live release, if it has one.
    async fn live_manifest(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        current: &Current,
    ) -> Result<Option<Manifest>, RsyncError> {
        match current {
            Current::Release(id) => Ok(remote
                .manifests(paths, std::slice::from_ref(id))
                .await?
                .pop()
                .flatten()),
            _ => Ok(None),
        }
    }

    async fn run_rsync(
        &self,
        server: &Server,
        remote: &Remote,
        cmd: Cmd,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        progress.report(ProgressUpdate::line(format!("$ {cmd}")));
        let mut last: Option<i64> = None;
        let out = LocalRunner::new()
            .run(&cmd, &mut |stream, line| {
                if let Some(p) = parse_progress(line) {
                    // One update per whole percent: rsync prints a line per file.
                    let whole = p.percent.floor() as i64;
                    if last != Some(whole) {
                        last = Some(whole);
                        let mut u = ProgressUpdate::percent(p.percent);
                        u.rate = Some(p.rate);
                        progress.report(u);
                    }
                } else if stream == Stream::Stderr && !line.trim().is_empty() {
                    progress.report(ProgressUpdate::line(line.trim()));
                }
            })
            .await
            .map_err(|e| match e {
                ExecError::Spawn { source, .. } => RsyncError::Spawn {
                    server: server.id.clone(),
                    program: "rsync".into(),
                    detail: source.to_string(),
                },
                other => RsyncError::Rsync {
                    server: server.id.clone(),
                    code: None,
                    detail: other.to_string(),
                },
            })?;
        if out.success() {
            return Ok(());
        }
        let detail = failure_detail(&out.stderr);
        if !server.local && out.code == Some(255) {
            return Err(RsyncError::Unreachable {
                server: server.id.clone(),
                host: remote.host(),
                detail,
            });
        }
        Err(RsyncError::Rsync {
            server: server.id.clone(),
            code: out.code,
            detail,
        })
    }

    fn dest(&self, server: &Server, path: PathBuf) -> Result<Dest, RsyncError> {
        if server.local {
            return Ok(Dest::Local(path));
        }
        let (rsh, host) = rsh_for(&self.hosts, server)?;
        Ok(Dest::Remote { rsh, host, path })
    }

    /// A targeted deploy builds on the live release only when it is the fleet's latest
    /// complete one: the caller's `base`, with a manifest.
    fn check_base(
        &self,
        server: &Server,
        paths: &ServerPaths,
        current: &Current,
        live_manifest: Option<&Manifest>,
    ) -> Result<Option<ReleaseId>, RsyncError> {
        let Scope::Subtrees { base, .. } = &self.scope else {
            return Ok(None);
        };
        let refuse = |why: String| RsyncError::NeedsFullDeploy {
            server: server.id.clone(),
            latest: base.clone(),
            why,
        };
        let base = base
            .as_ref()
            .ok_or_else(|| refuse("no latest release was given".into()))?;
        match current {
            Current::Release(live) if live == base => match live_manifest {
                Some(_) => Ok(Some(live.clone())),
                None => Err(refuse(format!(
                    "its live release {live} has no readable manifest (its copy never \
                     completed, or another tool made it)"
                ))),
            },
            Current::Release(live) => Err(refuse(format!("it serves {live}"))),
            Current::Directory { .. } => Err(refuse(format!(
                "its live path {} is a plain folder, not a release yet",
                paths.prod.display()
            ))),
            Current::Elsewhere(p) => Err(refuse(format!(
                "its live path points at {}, outside the releases folder",
                p.display()
            ))),
            Current::Missing => Err(refuse(format!(
                "it has no live tree at {}",
                paths.prod.display()
            ))),
        }
    }

    /// Removes old releases (keeping the live one, the one a rollback from it goes to,
    /// and the newest `keep_releases - 1`, so that the new one makes `keep_releases`),
    /// copies cut short, switches prepared for releases that never went live, and a stale
    /// folder of the release about to be copied.
    async fn prune(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        ins: &Inspection,
        protect: [Option<&ReleaseId>; 2],
        new: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let mut doomed = prune(&ins.releases, self.config.keep_releases - 1, &protect);
        if ins.releases.contains(new) && !doomed.contains(new) {
            doomed.push(new.clone());
        }
        let mut argv = vec!["rm".to_string(), "-rf".into(), "--".into()];
        let before = argv.len();
        argv.extend(
            doomed
                .iter()
                .map(|id| paths.release(id).display().to_string()),
        );
        argv.extend(
            ins.partials
                .iter()
                .map(|name| paths.releases.join(name).display().to_string()),
        );
        argv.extend(
            ins.switch_links
                .iter()
                .map(|name| paths.parent().join(name).display().to_string()),
        );
        if argv.len() > before {
            remote.ok(argv).await?;
        }
        if !doomed.is_empty() {
            let names: Vec<&str> = doomed.iter().map(ReleaseId::as_str).collect();
            progress.report(ProgressUpdate::line(format!(
                "removed releases {}",
                names.join(", ")
            )));
        }
        Ok(())
    }

    async fn copy_release(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let paths = self.paths(server)?;
        let remote = Remote::new(&self.hosts, server)?;
        let ins = remote.inspect(&paths).await?;
        let current = self.current(server, &paths, &ins)?;
        refuse_if_live(server, &current, release)?;
        let live_manifest = self.live_manifest(&remote, &paths, &current).await?;
        let base = self.check_base(server, &paths, &current, live_manifest.as_ref())?;
        // Where a rollback from the new release will go: what serves now (a plain folder
        // becomes a release of this name when it is converted).
        let (live_id, back_from_new) = match &current {
            Current::Release(id) => (Some(id), Some(id.clone())),
            Current::Directory { mtime } => (None, Some(converted_id(*mtime, release, &ins))),
            Current::Elsewhere(_) | Current::Missing => (None, None),
        };
        let back_from_live =
            live_id.and_then(|l| previous_of(l, live_manifest.as_ref(), &ins.releases));

        self.make_dirs(&remote, &paths, &current).await?;

        let protect = [live_id, back_from_live.as_ref()];
        self.prune(&remote, &paths, &ins, protect, release, progress)
            .await?;
        self.check_room(server, &remote, &paths).await?;

        let partial = paths.partial(release);
        if let Some(base) = &base {
            self.start_from(&remote, &paths, base, &partial).await?;
        }
        self.rsync_into_partial(server, &remote, &paths, &current, &partial, progress)
            .await?;

        self.link_shared(&remote, &paths, &partial).await?;

        let manifest = self.manifest(release, base.as_ref(), back_from_new);
        self.complete(&remote, &paths, &manifest, &partial, progress)
            .await
    }

    /// The rsync of staging into `partial`, hard-linking unchanged files to what serves now.
    async fn rsync_into_partial(
        &self,
        server: &Server,
        remote: &Remote,
        paths: &ServerPaths,
        current: &Current,
        partial: &Path,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let link_dest = match current {
            Current::Release(id) => Some(paths.release(id)),
            Current::Directory { .. } => Some(paths.prod.clone()),
            Current::Elsewhere(p) => Some(p.clone()),
            Current::Missing => None,
        };
        let job = Job {
            config: &self.config,
            subtrees: self.subtrees(),
            dest: self.dest(server, partial.to_path_buf())?,
            link_dest,
            in_place: false,
            delay_updates: false,
            remote_sudo: self.hosts.sudo(),
        };
        let cmd = job.cmd_ahead(self.hosts.sudo());
        self.run_rsync(server, remote, cmd, progress).await
    }

    /// The new release's manifest: its id, the deploy and its commits, what it holds
    /// (the whole tree, or subtrees on `base`), where a rollback from it goes.
    fn manifest(
        &self,
        release: &ReleaseId,
        base: Option<&ReleaseId>,
        back_from_new: Option<ReleaseId>,
    ) -> Manifest {
        let scope = match (base, self.subtrees()) {
            (Some(base), Some(subs)) => ManifestScope::Subtrees {
                base: Some(base.clone()),
                paths: subs.iter().map(|s| s.as_str().to_string()).collect(),
            },
            _ => ManifestScope::Full,
        };
        Manifest::new(
            release.clone(),
            self.deploy.deploy.clone(),
            self.deploy.commits.clone(),
            scope,
            back_from_new,
        )
    }

    /// The releases folder and (but for a plain live folder, whose conversion makes
    /// them) the shared folders.
    async fn make_dirs(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        current: &Current,
    ) -> Result<(), RsyncError> {
        // Shared folders of a plain live folder are made by its conversion, which moves
        // the old tree's data there first.
        let mut dirs = vec![paths.releases.display().to_string()];
        if !matches!(current, Current::Directory { .. }) {
            dirs.extend(
                self.config
                    .shared_dirs
                    .iter()
                    .map(|d| paths.shared_dir(d).display().to_string()),
            );
        }
        let mut argv = vec!["mkdir".to_string(), "-p".into(), "--".into()];
        argv.extend(dirs);
        remote.ok(argv).await?;
        Ok(())
    }

    /// A targeted deploy's start: the `base` release copied as hard links into
    /// `partial`, then the subtrees it will sync (and the shared links, the manifest)
    /// taken out.
    async fn start_from(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        base: &ReleaseId,
        partial: &Path,
    ) -> Result<(), RsyncError> {
        let partial_s = partial.display().to_string();
        // A targeted deploy: everything from the live release as hard links, then
        // only the subtrees from staging, into folders emptied for them (so files
        // that are hard links to the live release are replaced, never changed).
        remote
            .ok([
                "cp",
                "-al",
                "--",
                &paths.release(base).display().to_string(),
                &partial_s,
            ])
            .await?;
        let mut argv = vec!["rm".to_string(), "-rf".into(), "--".into()];
        for sub in self.subtrees().unwrap_or_default() {
            argv.push(partial.join(sub.as_str()).display().to_string());
        }
        for dir in &self.config.shared_dirs {
            argv.push(partial.join(dir.as_str()).display().to_string());
        }
        argv.push(partial.join(MANIFEST_FILE).display().to_string());
        remote.ok(argv).await?;
        Ok(())
    }

    /// Each shared folder linked into the new release.
    async fn link_shared(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        partial: &Path,
    ) -> Result<(), RsyncError> {
        for dir in &self.config.shared_dirs {
            if let Some(parent) = dir.parent() {
                remote
                    .ok([
                        "mkdir",
                        "-p",
                        "--",
                        &partial.join(parent).display().to_string(),
                    ])
                    .await?;
            }
            remote
                .ok([
                    "ln",
                    "-s",
                    "--",
                    &paths.shared_dir(dir).display().to_string(),
                    &partial.join(dir.as_str()).display().to_string(),
                ])
                .await?;
        }
        Ok(())
    }

    /// The manifest written, the release completed (renamed to its name) and its switch
    /// prepared.
    async fn complete(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        manifest: &Manifest,
        partial: &Path,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let release = &manifest.id;
        let partial_s = partial.display().to_string();
        remote
            .write_fresh(&partial.join(MANIFEST_FILE), manifest.to_line().as_bytes())
            .await?;
        // Complete: only now does a folder named after the release exist.
        remote
            .ok([
                "mv",
                "-T",
                "--",
                &partial_s,
                &paths.release(release).display().to_string(),
            ])
            .await?;
        // The switch, prepared: activation is then one rename, while depooled.
        remote
            .ok([
                "ln",
                "-sfn",
                "--",
                &paths.link_target(release).display().to_string(),
                &paths.switch_link(release).display().to_string(),
            ])
            .await?;
        progress.report(ProgressUpdate::line(format!(
            "release {release} is complete in {}",
            paths.releases.display()
        )));
        Ok(())
    }

    /// The switch: a symlink to `to` made beside the live path, renamed over it (one
    /// rename(2): a reader sees the old release or the new one, never neither).
    async fn switch(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        to: &ReleaseId,
    ) -> Result<(), RsyncError> {
        let link = paths.switch_link(to).display().to_string();
        remote
            .ok([
                "ln",
                "-sfn",
                "--",
                &paths.link_target(to).display().to_string(),
                &link,
            ])
            .await?;
        remote
            .ok(["mv", "-T", "--", &link, &paths.prod.display().to_string()])
            .await?;
        Ok(())
    }

    async fn activate_release(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let paths = self.paths(server)?;
        let remote = Remote::new(&self.hosts, server)?;
        // The copy prepared the switch once the release was complete: one rename, the
        // only command while the server is out of the pool. It changes nothing when the
        // link is not there, or when the live path is a folder (rename(2) never puts a
        // symlink over a folder); then look at the server.
        let prepared = paths.switch_link(release).display().to_string();
        let prod = paths.prod.display().to_string();
        let (_, out) = remote.run(["mv", "-T", "--", &prepared, &prod]).await?;
        if out.success() {
            return Ok(());
        }
        let ins = remote.inspect(&paths).await?;
        if !ins.releases.contains(release) {
            return Err(RsyncError::NoSuchRelease {
                server: server.id.clone(),
                release: release.clone(),
                dir: paths.releases.clone(),
            });
        }
        match self.current(server, &paths, &ins)? {
            Current::Release(live) if &live == release => {
                progress.report(ProgressUpdate::line(format!("{release} is already live")));
                Ok(())
            }
            Current::Directory { mtime } => {
                self.convert(&remote, &paths, &ins, mtime, release, progress)
                    .await
            }
            Current::Release(_) | Current::Elsewhere(_) | Current::Missing => {
                self.switch(&remote, &paths, release).await
            }
        }
    }

    /// The first switch of a server whose live path is a plain folder (it is out of the
    /// pool): the folder becomes a release of its own (the name the copy recorded as the
    /// new release's previous one), shared folders move out of it into
    /// `<prod_path>-shared`, and the new release goes live.
    async fn convert(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        ins: &Inspection,
        mtime: f64,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let recorded = remote
            .manifests(paths, std::slice::from_ref(release))
            .await?
            .pop()
            .flatten()
            .and_then(|m| m.previous);
        let old = recorded
            .filter(|id| id < release && !ins.releases.contains(id))
            .unwrap_or_else(|| converted_id(mtime, release, ins));
        self.move_shared_out(remote, paths, progress).await?;
        let manifest = Manifest::new(
            old.clone(),
            self.deploy.deploy.clone(),
            BTreeMap::new(),
            ManifestScope::Converted,
            None,
        );
        remote
            .replace(
                &paths.prod.join(MANIFEST_FILE),
                manifest.to_line().as_bytes(),
            )
            .await?;
        let link = paths.switch_link(release);
        let link_name = link
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let link = link.display().to_string();
        if !ins.switch_links.contains(&link_name) {
            remote
                .ok([
                    "ln",
                    "-sfn",
                    "--",
                    &paths.link_target(release).display().to_string(),
                    &link,
                ])
                .await?;
        }
        let prod = paths.prod.display().to_string();
        let old_path = paths.release(&old).display().to_string();
        // A folder cannot be replaced atomically: for a moment there is no live path
        // (the server is out of the pool).
        remote.ok(["mv", "-T", "--", &prod, &old_path]).await?;
        if let Err(e) = remote.ok(["mv", "-T", "--", &link, &prod]).await {
            let _ = remote.ok(["mv", "-T", "--", &old_path, &prod]).await;
            return Err(e);
        }
        progress.report(ProgressUpdate::line(format!(
            "converted the plain folder {prod} into release {old}; {release} is live"
        )));
        Ok(())
    }

    async fn move_shared_out(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        if self.config.shared_dirs.is_empty() {
            return Ok(());
        }
        let mut argv = vec!["find".to_string()];
        for dir in &self.config.shared_dirs {
            argv.push(paths.prod.join(dir.as_str()).display().to_string());
            argv.push(paths.shared_dir(dir).display().to_string());
        }
        argv.extend(["-maxdepth", "0", "-printf", "%p\\0%y\\0"].map(String::from));
        // Missing paths are an answer here: find exits 1 and lists the others.
        let (_, out) = remote.run(argv).await?;
        let fields: Vec<&str> = out.stdout.split('\0').collect();
        let kinds: BTreeMap<&str, &str> = fields
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0], c[1]))
            .collect();
        for dir in &self.config.shared_dirs {
            let in_tree = paths.prod.join(dir.as_str()).display().to_string();
            let shared = paths.shared_dir(dir).display().to_string();
            match (kinds.get(in_tree.as_str()), kinds.get(shared.as_str())) {
                (Some(&"d"), None) => {
                    let parent = paths.shared_dir(dir);
                    let parent = parent.parent().unwrap_or(&paths.shared);
                    remote
                        .ok(["mkdir", "-p", "--", &parent.display().to_string()])
                        .await?;
                    remote.ok(["mv", "-T", "--", &in_tree, &shared]).await?;
                    remote.ok(["ln", "-s", "--", &shared, &in_tree]).await?;
                    progress.report(ProgressUpdate::line(format!(
                        "moved {in_tree} to {shared}, shared by every release"
                    )));
                }
                (Some(&"d"), Some(_)) => progress.report(ProgressUpdate::line(format!(
                    "{shared} exists already: {in_tree} stays in the converted release, \
                     new releases link {shared}"
                ))),
                (_, None) => {
                    remote.ok(["mkdir", "-p", "--", &shared]).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn sync_in_place(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let paths = self.paths(server)?;
        let remote = Remote::new(&self.hosts, server)?;
        // Both only read: one round trip for the two (the server is out of the pool).
        let (ins, room) = tokio::join!(
            remote.inspect(&paths),
            self.check_room(server, &remote, &paths)
        );
        let ins = ins?;
        match &ins.live {
            LiveState::Link(target) => {
                return Err(RsyncError::Layout {
                    server: server.id.clone(),
                    path: paths.prod.clone(),
                    what: format!(
                        "is a symlink to {}: the server uses release directories; an in-place \
                         copy would write into a release (set release_layout: releases)",
                        target.display()
                    ),
                })
            }
            LiveState::Other(kind) => {
                return Err(RsyncError::Layout {
                    server: server.id.clone(),
                    path: paths.prod.clone(),
                    what: format!("is not a folder (find type {kind:?})"),
                })
            }
            LiveState::Directory { .. } | LiveState::Missing => {}
        }
        room?;
        let manifest_path = paths.prod.join(MANIFEST_FILE);
        // A copy cut short must not claim the release it did not finish.
        remote
            .ok(["rm", "-f", "--", &manifest_path.display().to_string()])
            .await?;
        let job = Job {
            config: &self.config,
            subtrees: self.subtrees(),
            dest: self.dest(server, paths.prod.clone())?,
            link_dest: None,
            in_place: true,
            delay_updates: serves_while_copied(server),
            remote_sudo: self.hosts.sudo(),
        };
        let cmd = job.cmd(self.hosts.sudo());
        self.run_rsync(server, &remote, cmd, progress).await?;
        let scope = match self.subtrees() {
            None => ManifestScope::Full,
            Some(subs) => ManifestScope::Subtrees {
                base: None,
                paths: subs.iter().map(|s| s.as_str().to_string()).collect(),
            },
        };
        let manifest = Manifest::new(
            release.clone(),
            self.deploy.deploy.clone(),
            self.deploy.commits.clone(),
            scope,
            None,
        );
        remote
            .write_fresh(&manifest_path, manifest.to_line().as_bytes())
            .await
    }

    /// Makes an earlier release live again: `to`, or the release that was live when the
    /// live one was copied (its manifest says; a release that was rolled back from, or
    /// never went live, is never that). No copy, no rsync: a symlink switch. Returns the
    /// release now live.
    pub async fn rollback_to(
        &self,
        server: &Server,
        to: Option<&ReleaseId>,
        progress: &Progress,
    ) -> Result<ReleaseId, RsyncError> {
        if self.config.layout == Layout::Inplace {
            return Err(RsyncError::NothingToRollBack {
                server: server.id.clone(),
                reason: "the in-place layout keeps no earlier release (release_layout: inplace)"
                    .into(),
            });
        }
        let paths = self.paths(server)?;
        let remote = Remote::new(&self.hosts, server)?;
        let ins = remote.inspect(&paths).await?;
        let nothing = |reason: String| RsyncError::NothingToRollBack {
            server: server.id.clone(),
            reason,
        };
        let current = self.current(server, &paths, &ins)?;
        let live = match &current {
            Current::Release(id) => id.clone(),
            Current::Directory { .. } => {
                return Err(nothing(format!(
                    "{} is a plain folder: no release was made here yet",
                    paths.prod.display()
                )))
            }
            Current::Elsewhere(p) => {
                return Err(nothing(format!(
                    "{} points at {}, outside the releases folder",
                    paths.prod.display(),
                    p.display()
                )))
            }
            Current::Missing => {
                return Err(nothing(format!(
                    "there is no live tree at {} {}",
                    paths.prod.display(),
                    ins.notes
                )))
            }
        };
        let target = match to {
            Some(to) if !ins.releases.contains(to) => {
                return Err(RsyncError::NoSuchRelease {
                    server: server.id.clone(),
                    release: to.clone(),
                    dir: paths.releases.clone(),
                })
            }
            Some(to) if to == &live => {
                progress.report(ProgressUpdate::line(format!("{live} is already live")));
                return Ok(live);
            }
            Some(to) => to.clone(),
            None => {
                let manifest = self.live_manifest(&remote, &paths, &current).await?;
                match previous_of(&live, manifest.as_ref(), &ins.releases) {
                    Some(back) => back,
                    None => {
                        let dir = paths.releases.display();
                        return Err(nothing(match manifest.as_ref().map(|m| &m.previous) {
                            Some(Some(p)) => {
                                format!("{live} replaced {p}, which is no longer in {dir}")
                            }
                            Some(None) => {
                                format!("{live} is the first release made on this server")
                            }
                            None => {
                                format!("{live} has no manifest and no older release is in {dir}")
                            }
                        }));
                    }
                }
            }
        };
        self.switch(&remote, &paths, &target).await?;
        progress.report(ProgressUpdate::line(format!(
            "rolled back from {live} to {target}"
        )));
        Ok(target)
    }

    /// The releases on `server` with their manifests, which one is live and where a
    /// rollback would go (`mwdeploy releases`).
    pub async fn releases(&self, server: &Server) -> Result<ServerReleases, RsyncError> {
        let paths = self.paths(server)?;
        let remote = Remote::new(&self.hosts, server)?;
        let ins = remote.inspect(&paths).await?;
        let current = self.current(server, &paths, &ins)?;
        let ids: Vec<ReleaseId> = ins.releases.iter().cloned().collect();
        let mut manifests = remote.manifests(&paths, &ids).await?;
        let live = match current {
            Current::Release(id) => Live::Release(id),
            Current::Directory { .. } => {
                let text = remote.read_files(&[paths.prod.join(MANIFEST_FILE)]).await?;
                Live::Directory {
                    manifest: text
                        .into_iter()
                        .flatten()
                        .find_map(|t| serde_json::from_str(t.trim()).ok()),
                }
            }
            Current::Elsewhere(p) => Live::Elsewhere(p),
            Current::Missing => Live::Missing,
        };
        let before = match &live {
            Live::Release(id) => {
                let manifest = ids
                    .iter()
                    .position(|i| i == id)
                    .and_then(|at| manifests[at].as_ref());
                previous_of(id, manifest, &ins.releases)
            }
            _ => None,
        };
        let releases = ids
            .into_iter()
            .zip(manifests.drain(..))
            .map(|(id, manifest)| ReleaseEntry {
                live: matches!(&live, Live::Release(l) if l == &id),
                previous: before.as_ref() == Some(&id),
                id,
                manifest,
            })
            .collect();
        Ok(ServerReleases {
            server: server.id.clone(),
            paths,
            live,
            previous: before,
            releases,
        })
    }

    /// The newest release live on any of `servers` that is complete (has a manifest):
    /// the `base` a targeted deploy builds on.
    pub async fn latest_release(
        &self,
        servers: &[Server],
    ) -> Result<Option<ReleaseId>, RsyncError> {
        let mut latest: Option<ReleaseId> = None;
        for server in servers {
            let r = self.releases(server).await?;
            let complete = r
                .releases
                .iter()
                .find(|e| e.live)
                .filter(|e| e.manifest.is_some())
                .map(|e| e.id.clone());
            if complete > latest {
                latest = complete;
            }
        }
        Ok(latest)
    }
}

/// Refuses to copy `release` over itself when it is the live release.
fn refuse_if_live(
    server: &Server,
    current: &Current,
    release: &ReleaseId,
) -> Result<(), RsyncError> {
    if let Current::Release(live) = current {
        if live == release {
            return Err(RsyncError::ReleaseIsLive {
                server: server.id.clone(),
                release: release.clone(),
            });
        }
    }
    Ok(())
}

/// The id of a plain live folder turned into a release: its modification time, kept
/// older than the release replacing it, and free on the server.
fn converted_id(mtime: f64, new: &ReleaseId, ins: &Inspection) -> ReleaseId {
    let at = UNIX_EPOCH + Duration::from_secs_f64(mtime.max(0.0));
    let mut n = 1;
    loop {
        let suffix = if n == 1 {
            "converted".to_string()
        } else {
            format!("converted{n}")
        };
        let id = ReleaseId::at(at, &suffix)
            .ok()
            .filter(|id| id < new)
            .or_else(|| ReleaseId::at(UNIX_EPOCH, &suffix).ok());
        match id {
            Some(id) if !ins.releases.contains(&id) => return id,
            _ => n += 1,
        }
    }
}

#[async_trait]
impl Transfer for RsyncTransfer {
    async fn copy(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError> {
        match self.config.layout {
            Layout::Releases => self
                .copy_release(server, release, progress)
                .await
                .map_err(Into::into),
            Layout::Inplace => {
                progress.report(ProgressUpdate::line(
                    "in-place layout: nothing is copied ahead; the copy runs in the live tree at activation",
                ));
                Ok(())
            }
        }
    }

    async fn activate(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError> {
        match self.config.layout {
            Layout::Releases => self.activate_release(server, release, progress).await,
            Layout::Inplace => self.sync_in_place(server, release, progress).await,
        }
        .map_err(Into::into)
    }

    async fn rollback(&self, server: &Server, progress: &Progress) -> Result<ReleaseId, PortError> {
        self.rollback_to(server, None, progress)
            .await
            .map_err(Into::into)
    }

    fn can_rollback(&self) -> bool {
        self.config.layout == Layout::Releases
    }
}

/// Whether the live tree keeps serving while it is copied into in place: a server the
/// engine does not take out of the pool first (`pooled: false`: staging, job runners,
/// every server without `--rollout`). An in-place activation of a pooled server runs
/// between its depool and its repool.
fn serves_while_copied(server: &Server) -> bool {
    !server.pooled
}

#[cfg(test)]
mod tests {
    use super::*;
    use mwdeploy_exec::SshDefaults;
    use std::path::Path;

    fn transfer(staging: &Path, excludes: &[&str]) -> RsyncTransfer {
        let mut c = RsyncConfig::new(staging, "/srv/mediawiki", Layout::Inplace);
        c.excludes = excludes.iter().map(|e| e.to_string()).collect();
        let hosts = Arc::new(Hosts::new(SshDefaults::new("deploy")).unwrap());
        RsyncTransfer::new(c, hosts, DeployInfo::new("d1")).unwrap()
    }

    #[tokio::test]
    async fn a_tree_counted_once_is_shared_only_with_a_transfer_of_the_same_tree() {
        let staging = std::env::temp_dir().join(format!("mwdeploy-count-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(staging.join("config")).unwrap();
        std::fs::write(staging.join("config/a.php"), [b'a'; 10_000]).unwrap();
        let staged = transfer(&staging, &[]);
        let counted = staged.tree_bytes().await.unwrap();
        // Grown after the count: a transfer sharing it does not walk the tree again.
        std::fs::write(staging.join("config/b.php"), [b'b'; 20_000]).unwrap();
        let now = transfer(&staging, &[]).tree_bytes().await.unwrap();
        assert!(now > counted, "{now} > {counted}");
        let same = transfer(&staging, &[]).sharing_count_of(&staged);
        assert_eq!(same.tree_bytes().await.unwrap(), counted);
        // Another tree (its own excludes, its own subtrees) counts its own, and nothing
        // is taken from a transfer that has not counted yet.
        let other = transfer(&staging, &["/config/a.php"]).sharing_count_of(&staged);
        let own = transfer(&staging, &["/config/a.php"]).tree_bytes().await;
        assert_eq!(other.tree_bytes().await.unwrap(), own.unwrap());
        let other = transfer(&staging, &[]).sharing_count_of(&transfer(&staging, &[]));
        assert_eq!(other.tree_bytes().await.unwrap(), now);
        let subtree = || {
            transfer(&staging, &[])
                .with_scope(Scope::subtrees(
                    vec![TreePath::new("config").unwrap()],
                    None,
                ))
                .unwrap()
        };
        let sub = subtree().sharing_count_of(&staged);
        assert_eq!(
            sub.tree_bytes().await.unwrap(),
            subtree().tree_bytes().await.unwrap()
        );
        std::fs::remove_dir_all(&staging).unwrap();
    }
}
