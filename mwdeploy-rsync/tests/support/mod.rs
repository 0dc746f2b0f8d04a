//! Helpers for the tests against a real fleet: servers, hosts, transfers, snapshots.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mwdeploy_core::ports::{Progress, ProgressUpdate, Transfer};
use mwdeploy_core::{Layout, ReleaseId, Server, ServerId};
use mwdeploy_exec::{Hosts, SshDefaults};
use mwdeploy_rsync::{DeployInfo, RsyncConfig, RsyncTransfer};
use testfleet::Fleet;

/// Fails (never skips) when a program is missing, naming the install script.
pub(crate) fn require(programs: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    for p in programs {
        assert!(
            dirs.iter().any(|d| d.join(p).is_file()),
            "{p} is not installed: run scripts/install-deps.sh"
        );
    }
}

/// A fleet of `servers` servers and `proxies` proxies, small tree, in `layout`.
pub(crate) fn fleet(servers: usize, proxies: usize, layout: Layout) -> Fleet {
    require(&["rsync", "ssh", "find", "df", "dd", "cp", "head", "readlink"]);
    Fleet::builder()
        .servers(servers)
        .proxies(proxies)
        .tree(120, 1)
        .layout(layout)
        .start()
        .unwrap_or_else(|e| panic!("starting the test fleet: {e}"))
}

/// The deploy's ssh settings for `fleet`, as root.
pub(crate) fn hosts(fleet: &Fleet) -> Arc<Hosts> {
    hosts_as(fleet, "root", false)
}

/// The deploy's ssh settings for `fleet`, as `user`, with or without `remote_sudo`.
pub(crate) fn hosts_as(fleet: &Fleet, user: &str, sudo: bool) -> Arc<Hosts> {
    let mut d = SshDefaults::new(user);
    d.identity = Some(fleet.client_key());
    d.options = fleet.ssh_options();
    d.connect_timeout = Duration::from_secs(5);
    d.sudo = sudo;
    Arc::new(Hosts::new(d).expect("an ssh control folder"))
}

/// Fleet server `i` as the engine sees it.
pub(crate) fn server(fleet: &Fleet, i: usize) -> Server {
    let s = &fleet.servers()[i];
    let mut server = Server::new(ServerId::new(s.name()).unwrap());
    server.ssh_host = Some("127.0.0.1".into());
    server.ssh_port = Some(s.ssh_port());
    server.prod_path = Some(s.live_path().to_path_buf());
    server
}

/// The deploy host's own site, run here.
pub(crate) fn staging_site(fleet: &Fleet) -> Server {
    let mut server = Server::new(ServerId::new("staging").unwrap());
    server.local = true;
    server.prod_path = Some(fleet.staging().live_path().to_path_buf());
    server
}

/// A config for `fleet`: its staging tree; each server says its own live path.
pub(crate) fn config(fleet: &Fleet, layout: Layout) -> RsyncConfig {
    RsyncConfig::new(
        fleet.staging().path(),
        fleet.servers()[0].live_path(),
        layout,
    )
}

pub(crate) fn transfer(fleet: &Fleet, config: RsyncConfig) -> RsyncTransfer {
    RsyncTransfer::new(
        config,
        hosts(fleet),
        DeployInfo::new("test-deploy").commit(".", "0123abcd"),
    )
    .expect("a valid config")
}

/// Release `n`: later than the fleet's first release and than release `n - 1`.
pub(crate) fn release(n: u64) -> ReleaseId {
    ReleaseId::at(
        SystemTime::now() + Duration::from_secs(10 * n),
        &format!("r{n}"),
    )
    .unwrap()
}

/// A progress handle that keeps every update.
pub(crate) fn recorder(server: &Server) -> (Progress, Arc<Mutex<Vec<ProgressUpdate>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let p = Progress::new(server.id.clone(), "test", move |_, _, u| {
        keep.lock().unwrap().push(u)
    });
    (p, seen)
}

pub(crate) fn quiet(server: &Server) -> Progress {
    Progress::discard(server.id.clone())
}

/// Copy, then activate.
pub(crate) async fn deploy(t: &RsyncTransfer, server: &Server, id: &ReleaseId) {
    let p = quiet(server);
    t.copy(server, id, &p)
        .await
        .unwrap_or_else(|e| panic!("copy {id}: {e}"));
    t.activate(server, id, &p)
        .await
        .unwrap_or_else(|e| panic!("activate {id}: {e}"));
}

/// One file of a tree: inode, links, mtime (ns), bytes; a symlink: its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) ino: u64,
    pub(crate) nlink: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) uid: u32,
    pub(crate) bytes: Vec<u8>,
    pub(crate) link: Option<PathBuf>,
}

/// Every file and symlink under `root` (not following symlinks), by relative path.
pub(crate) fn snapshot(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = root.join(&rel);
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let key = rel.display().to_string();
        if meta.file_type().is_symlink() {
            out.insert(
                key,
                Entry {
                    ino: meta.ino(),
                    nlink: meta.nlink(),
                    mtime_ns: 0,
                    uid: meta.uid(),
                    bytes: Vec::new(),
                    link: Some(fs::read_link(&path).unwrap()),
                },
            );
        } else if meta.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        } else {
            out.insert(
                key,
                Entry {
                    ino: meta.ino(),
                    nlink: meta.nlink(),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                    uid: meta.uid(),
                    bytes: fs::read(&path).unwrap(),
                    link: None,
                },
            );
        }
    }
    out
}

/// The release folders (names) in `dir`.
pub(crate) fn release_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| ReleaseId::parse(n).is_ok())
        .collect();
    v.sort();
    v
}

/// Sets a file's modification time.
pub(crate) fn set_mtime(path: &Path, t: SystemTime) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t)).unwrap();
}

/// The fleet server's live release.
pub(crate) fn live(fleet: &Fleet, i: usize) -> ReleaseId {
    fleet.servers()[i]
        .live_release()
        .expect("the live path is a symlink to a release")
}

pub(crate) fn stamp(fleet: &Fleet, i: usize) -> String {
    fleet.servers()[i]
        .served_stamp()
        .unwrap_or_else(|e| panic!("page of mw{}: {e}", i + 1))
}

/// The argv lists of a hook point, from string slices.
pub(crate) fn argvs(lists: &[&[&str]]) -> Vec<Vec<String>> {
    lists
        .iter()
        .map(|l| l.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Guards a test against hanging.
pub(crate) async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}
