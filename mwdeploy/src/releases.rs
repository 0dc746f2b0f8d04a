//! The releases on the servers (`mwdeploy releases`): the releases on each server, with their
//! manifests, and which one is live (the release layout). In place there are none.
//!
//! Each server is read over its own ssh connection, all at once; a server that cannot
//! be read is shown as such and makes the exit code 1.

use std::sync::Arc;

use mwdeploy_core::text::{count, Clean};
use mwdeploy_core::Server;
use mwdeploy_exec::Hosts;
use mwdeploy_rsync::{DeployInfo, Live, Manifest, ManifestScope, RsyncTransfer, ServerReleases};

use crate::config::Config;
use crate::error::BuildError;
use crate::ports::rsync_config;
use crate::session::Warn;
use crate::table::Table;

/// `error` without a leading `<what>: ` that only repeats what the line already names
/// (`server mw2: cannot reach ...` shown under mw2).
pub fn unprefixed<'a>(error: &'a str, what: &str) -> &'a str {
    error
        .strip_prefix(what)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(error)
}

/// Every server's releases, read all at once, in the order of `servers`.
pub async fn read_all(
    config: &Config,
    hosts: Arc<Hosts>,
    servers: &[Server],
    warn: &Warn,
) -> Result<Vec<Result<ServerReleases, String>>, BuildError> {
    let rsync = rsync_config(config, false)?;
    let transfer = Arc::new(
        RsyncTransfer::new(rsync, hosts, DeployInfo::new("releases")).map_err(BuildError::Rsync)?,
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (i, server) in servers.iter().enumerate() {
        let transfer = transfer.clone();
        let server = server.clone();
        tasks.spawn(async move { (i, transfer.releases(&server).await) });
    }
    let mut read: Vec<Result<ServerReleases, String>> = servers
        .iter()
        .map(|_| Err("not read".to_string()))
        .collect();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, r)) => read[i] = r.map_err(|e| e.to_string()),
            Err(e) => warn(&format!("a release read stopped: {e}")),
        }
    }
    Ok(read)
}

/// One server in words: where its releases are, what is live, then a table of its
/// releases.
pub fn text(r: &ServerReleases) -> String {
    let head = format!(
        "{}: {} in {}; {}\n",
        r.server,
        count(r.releases.len(), "release"),
        r.paths.releases.display(),
        live_text(r)
    );
    if r.releases.is_empty() {
        return head;
    }
    let mut t = Table::new(&["", "RELEASE", "CREATED", "DEPLOY", "SCOPE", "COMMITS"]);
    // Newest first: the live one is usually at the top.
    for e in r.releases.iter().rev() {
        let role = if e.live {
            "live"
        } else if e.previous {
            "previous"
        } else {
            ""
        };
        let mut row = vec![role.to_string(), e.id.to_string()];
        match &e.manifest {
            Some(m) => row.extend(manifest_cells(m)),
            None => row.extend(["-".into(), "-".into(), "no manifest".into(), "".into()]),
        }
        t.row(row);
    }
    head + &t.render("  ")
}

/// What the live path is, in words.
pub fn live_text(r: &ServerReleases) -> String {
    let prod = r.paths.prod.display();
    match &r.live {
        Live::Release(id) => match &r.previous {
            Some(p) => format!("live: {id}; a rollback goes to {p}"),
            None => format!("live: {id}; no release to roll back to"),
        },
        Live::Directory { .. } => {
            format!("{prod} is a plain folder, not a release (not converted yet)")
        }
        Live::Elsewhere(p) => format!(
            "{prod} points at {}, outside the releases folder",
            Clean(&p.display().to_string())
        ),
        Live::Missing => format!("nothing is live: {prod} does not exist"),
        _ => format!("{prod}: a live state this version does not know"),
    }
}

/// CREATED, DEPLOY, SCOPE, COMMITS of a manifest.
fn manifest_cells(m: &Manifest) -> [String; 4] {
    let scope = match &m.scope {
        ManifestScope::Full => "full".to_string(),
        ManifestScope::Subtrees { base, paths } => {
            let on = base
                .as_ref()
                .map(|b| format!(" on {b}"))
                .unwrap_or_default();
            format!("{}{on}", paths.join(","))
        }
        ManifestScope::Converted => "converted".to_string(),
        _ => "?".to_string(),
    };
    let commits: Vec<String> = m
        .commits
        .iter()
        .map(|(repo, commit)| format!("{repo}@{}", commit.get(..12).unwrap_or(commit)))
        .collect();
    [
        Clean(&m.created).to_string(),
        Clean(&m.deploy).to_string(),
        Clean(&scope).to_string(),
        Clean(&commits.join(" ")).to_string(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prefix_naming_the_subject_again_is_dropped() {
        let e = "server mw2: cannot reach root@h over ssh";
        assert_eq!(
            super::unprefixed(e, "server mw2"),
            "cannot reach root@h over ssh"
        );
        assert_eq!(super::unprefixed(e, "server mw3"), e);
        assert_eq!(super::unprefixed(e, "server mw"), e);
    }
}
