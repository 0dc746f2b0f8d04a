//! `mwdeploy releases [--servers LIST]`: the releases on each server, with their
//! manifests, and which one is live (the release layout). In place there are none.
//!
//! Each server is read over its own ssh connection, all at once; a server that cannot
//! be read is shown as such and makes the exit code 1.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use mwdeploy_core::{Layout, Server};
use mwdeploy_exec::Hosts;
use mwdeploy_rsync::{DeployInfo, Live, Manifest, ManifestScope, RsyncTransfer, ServerReleases};

use super::table::Table;
use crate::cli::ReleasesArgs;
use crate::config::Config;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::{count, Clean};
use mwdeploy::ports::rsync_config;

/// Runs `mwdeploy releases`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &ReleasesArgs,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let config = super::load_config(config_file)?;
    let selected = super::select_servers(&config, args.servers.as_deref())?;
    if config.layout == Layout::Inplace {
        out.fmt(format_args!(
            "{} sets release_layout: inplace: the servers have no release directories, each \
             live tree (prod_path) is updated in place, so there are no releases to list\n",
            config.file.display()
        ));
        return Ok(exit::OK);
    }
    let servers: Vec<Server> = selected
        .iter()
        .map(|&i| config.servers[i].to_server())
        .collect();
    if servers.is_empty() {
        out.bytes(b"no server in the config\n");
        return Ok(exit::OK);
    }
    let hosts = Arc::new(Hosts::new(config.ssh_defaults()).map_err(CliError::Output)?);
    let read = super::runtime()?.block_on(read_all(&config, hosts, &servers))?;
    let mut failed = 0;
    for (server, result) in servers.iter().zip(&read) {
        match result {
            Ok(r) => show(out, r),
            Err(e) => {
                failed += 1;
                let e = super::unprefixed(e, &format!("server {}", server.id));
                out.fmt(format_args!(
                    "{}: cannot be read: {}\n",
                    server.id,
                    Clean(e)
                ));
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "mwdeploy: {} of {} could not be read",
            count(failed, "server"),
            servers.len()
        );
        return Ok(exit::FAILED);
    }
    Ok(exit::OK)
}

/// Every server's releases, read all at once, in the order of `servers`.
pub(crate) async fn read_all(
    config: &Config,
    hosts: Arc<Hosts>,
    servers: &[Server],
) -> Result<Vec<Result<ServerReleases, String>>, CliError> {
    let rsync = rsync_config(config, false)?;
    let transfer = Arc::new(
        RsyncTransfer::new(rsync, hosts, DeployInfo::new("releases"))
            .map_err(|e| CliError::Usage(format!("rsync: {e}")))?,
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
            Err(e) => eprintln!("mwdeploy: a release read stopped: {e}"),
        }
    }
    Ok(read)
}

/// One server: where its releases are, what is live, then a table of its releases.
pub(crate) fn show<W: Write>(out: &mut Output<W>, r: &ServerReleases) {
    out.fmt(format_args!(
        "{}: {} in {}; {}\n",
        r.server,
        count(r.releases.len(), "release"),
        r.paths.releases.display(),
        live_text(r)
    ));
    if r.releases.is_empty() {
        return;
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
    out.bytes(t.render("  ").as_bytes());
}

/// What the live path is, in words.
pub(crate) fn live_text(r: &ServerReleases) -> String {
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
