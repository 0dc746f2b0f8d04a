//! `mwdeploy releases [--servers LIST]`: the releases on each server, with their
//! manifests, and which one is live (the release layout), as the library reads them
//! ([`mwdeploy::releases`]). In place there are none.
//!
//! Each server is read over its own ssh connection, all at once; a server that cannot
//! be read is shown as such and makes the exit code 1.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use mwdeploy::releases::{read_all, text, unprefixed};
use mwdeploy_core::{Layout, Server};
use mwdeploy_exec::Hosts;

use crate::cli::ReleasesArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::{count, Clean};
use crate::session::warn_on_stderr;

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
    let read = super::runtime()?.block_on(read_all(&config, hosts, &servers, &warn_on_stderr()))?;
    let mut failed = 0;
    for (server, result) in servers.iter().zip(&read) {
        match result {
            Ok(r) => out.bytes(text(r).as_bytes()),
            Err(e) => {
                failed += 1;
                let e = unprefixed(e, &format!("server {}", server.id));
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
