//! What can go wrong when a release is copied, switched or rolled back, and how the
//! engine is told ([`PortError`] with a kind and the server).

use std::path::PathBuf;

use mwdeploy_core::{HookPoint, PortError, PortErrorKind, ReleaseId, ServerId};

use crate::rsync::{exit_kind, exit_meaning};

/// A transfer, switch, rollback or hook that could not be done. Every variant that
/// concerns a server names it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RsyncError {
    /// A setting that cannot work (found before anything runs).
    #[error("{setting}: {why}")]
    Config {
        /// The setting (`prod_path`, `excludes`, ...).
        setting: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The staging tree could not be read on the deploy host.
    #[error("staging tree {}: {source}", path.display())]
    Staging {
        /// The path that could not be read.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A program could not be started on the deploy host (`rsync`, `ssh`).
    #[error("server {server}: cannot run {program} on the deploy host: {detail} (install it: scripts/install-deps.sh)")]
    Spawn {
        /// The server the command was for.
        server: ServerId,
        /// The program.
        program: String,
        /// What the system said.
        detail: String,
    },
    /// The server could not be reached over ssh.
    #[error("server {server}: cannot reach {host} over ssh: {detail}")]
    Unreachable {
        /// The server.
        server: ServerId,
        /// `user@host:port`.
        host: String,
        /// What ssh said.
        detail: String,
    },
    /// Not enough free space for the new release: nothing was copied.
    #[error(
        "server {server}: not enough room in {}: {} free, {} needed (the tree to copy, {}, plus a reserve of {})",
        path.display(), human(*free), human(*needed), human(*tree), human(*reserve)
    )]
    NoRoom {
        /// The server.
        server: ServerId,
        /// The folder whose file system was measured.
        path: PathBuf,
        /// Free bytes there (`df`).
        free: u64,
        /// Bytes needed: `tree + reserve`.
        needed: u64,
        /// The size of what is copied (the staging tree minus the excludes, or the subtrees).
        tree: u64,
        /// The configured reserve.
        reserve: u64,
    },
    /// A command on the server failed.
    #[error("server {server}: {cmd} exited with {}: {detail}", status(*code))]
    Command {
        /// The server.
        server: ServerId,
        /// The command, quoted.
        cmd: String,
        /// Its exit code (`None`: a signal).
        code: Option<i32>,
        /// What it said.
        detail: String,
    },
    /// The output of a command on the server could not be understood.
    #[error("server {server}: cannot read the output of {cmd}: {detail}")]
    Output {
        /// The server.
        server: ServerId,
        /// The command, quoted.
        cmd: String,
        /// What was wrong with it.
        detail: String,
    },
    /// rsync failed.
    #[error("server {server}: rsync exited with {} ({}): {detail}", status(*code), code.map(exit_meaning).unwrap_or("killed by a signal"))]
    Rsync {
        /// The server.
        server: ServerId,
        /// rsync's exit code (`None`: a signal).
        code: Option<i32>,
        /// What rsync (and ssh) said.
        detail: String,
    },
    /// A hook failed.
    #[error("server {server}: {point} hook {cmd} exited with {}: {detail}", status(*code))]
    Hook {
        /// The server.
        server: ServerId,
        /// The hook point.
        point: HookPoint,
        /// The hook's argv, quoted.
        cmd: String,
        /// Its exit code (`None`: a signal).
        code: Option<i32>,
        /// Its last words.
        detail: String,
    },
    /// There is no release to go back to.
    #[error("server {server}: nothing to roll back to: {reason}")]
    NothingToRollBack {
        /// The server.
        server: ServerId,
        /// Why.
        reason: String,
    },
    /// The named release is not on the server (or its copy never completed).
    #[error("server {server}: no complete release {release} in {}", dir.display())]
    NoSuchRelease {
        /// The server.
        server: ServerId,
        /// The release asked for.
        release: ReleaseId,
        /// The releases folder.
        dir: PathBuf,
    },
    /// A copy into the release that serves would change the live tree.
    #[error("server {server}: release {release} is live; a copy may not write into the serving tree (use a new release id)")]
    ReleaseIsLive {
        /// The server.
        server: ServerId,
        /// The live release.
        release: ReleaseId,
    },
    /// A targeted deploy was refused: the live release is not the fleet's latest complete one.
    #[error("server {server}: a targeted deploy builds on the fleet's latest release {}, but {why}; run a full deploy (--rsync) to this server", latest.as_ref().map(ReleaseId::as_str).unwrap_or("(unknown)"))]
    NeedsFullDeploy {
        /// The server.
        server: ServerId,
        /// The release the caller named as the fleet's latest complete one.
        latest: Option<ReleaseId>,
        /// What the server has instead.
        why: String,
    },
    /// The live path is not what the layout expects.
    #[error("server {server}: {} {what}", path.display())]
    Layout {
        /// The server.
        server: ServerId,
        /// The path.
        path: PathBuf,
        /// What it is, and why that cannot work.
        what: String,
    },
}

impl RsyncError {
    /// The server the error concerns, if any.
    pub fn server(&self) -> Option<&ServerId> {
        match self {
            RsyncError::Config { .. } | RsyncError::Staging { .. } => None,
            RsyncError::Spawn { server, .. }
            | RsyncError::Unreachable { server, .. }
            | RsyncError::NoRoom { server, .. }
            | RsyncError::Command { server, .. }
            | RsyncError::Output { server, .. }
            | RsyncError::Rsync { server, .. }
            | RsyncError::Hook { server, .. }
            | RsyncError::NothingToRollBack { server, .. }
            | RsyncError::NoSuchRelease { server, .. }
            | RsyncError::ReleaseIsLive { server, .. }
            | RsyncError::NeedsFullDeploy { server, .. }
            | RsyncError::Layout { server, .. } => Some(server),
        }
    }

    /// How the engine should treat it: worth a retry, or not.
    pub fn kind(&self) -> PortErrorKind {
        match self {
            RsyncError::Unreachable { .. } => PortErrorKind::Transient,
            RsyncError::Rsync { code: None, .. } => PortErrorKind::Transient,
            RsyncError::Rsync { code: Some(c), .. } => exit_kind(*c),
            RsyncError::Config { .. }
            | RsyncError::Staging { .. }
            | RsyncError::Spawn { .. }
            | RsyncError::NoSuchRelease { .. }
            | RsyncError::ReleaseIsLive { .. }
            | RsyncError::Layout { .. } => PortErrorKind::Misconfigured,
            RsyncError::NoRoom { .. }
            | RsyncError::Command { .. }
            | RsyncError::Output { .. }
            | RsyncError::Hook { .. }
            | RsyncError::NothingToRollBack { .. }
            | RsyncError::NeedsFullDeploy { .. } => PortErrorKind::Permanent,
        }
    }
}

impl From<RsyncError> for PortError {
    fn from(e: RsyncError) -> PortError {
        let text = e.to_string();
        match e.server() {
            Some(server) => {
                // PortError puts "server X: " in front itself.
                let prefix = format!("server {server}: ");
                let detail = text.strip_prefix(&prefix).unwrap_or(&text);
                PortError::new(e.kind(), detail).for_server(server)
            }
            None => PortError::new(e.kind(), text),
        }
    }
}

fn status(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("status {c}"),
        None => "a signal".to_string(),
    }
}

/// Bytes for people: `512 B`, `3.4 MiB`, `1.2 GiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mw1() -> ServerId {
        ServerId::new("mw1").unwrap()
    }

    #[test]
    fn port_errors_name_the_server_once_and_keep_the_kind() {
        let e = RsyncError::NoRoom {
            server: mw1(),
            path: "/srv".into(),
            free: 1024,
            needed: 3 << 30,
            tree: 3 << 30,
            reserve: 0,
        };
        let p: PortError = e.into();
        assert_eq!(p.kind, PortErrorKind::Permanent);
        assert_eq!(p.server, Some(mw1()));
        let text = p.to_string();
        assert_eq!(text.matches("mw1").count(), 1, "{text}");
        assert!(
            text.contains("1.0 KiB free, 3.0 GiB needed"),
            "free and needed space in the message: {text}"
        );
        let p: PortError = RsyncError::Unreachable {
            server: mw1(),
            host: "root@127.0.0.1:22".into(),
            detail: "Connection refused".into(),
        }
        .into();
        assert_eq!(p.kind, PortErrorKind::Transient);
        let p: PortError = RsyncError::Config {
            setting: "keep_releases",
            why: "at least 2".into(),
        }
        .into();
        assert_eq!((p.kind, p.server), (PortErrorKind::Misconfigured, None));
    }

    #[test]
    fn sizes_read_like_df_h() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(5 << 30), "5.0 GiB");
    }
}
