//! `mwdeploy check-config`: the config parsed and checked, then every proxy and server
//! reached the way a deploy reaches them, and the staging checkout looked at. Nothing
//! is changed; a host key missing from known_hosts is printed for the operator to check
//! and add, never accepted.
//!
//! ```text
//!  config ──> proxies: the pool read through each admin socket (HAProxy adapter)
//!         ──> servers: `true` over ssh (host keys checked); on a host-key failure,
//!                      ssh-keyscan prints the key to check
//!         ──> staging: a git checkout, not writable by the web server user
//! ```

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use mwdeploy_exec::{Cmd, Hosts};

use crate::config::Config;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::Clean;
use crate::request::load_config;
use mwdeploy::ports::haproxy;

/// The web server's user on Debian: it must not be able to change the staging checkout
/// (whatever it writes there is deployed to every server).
const WEB_USER: &str = "www-data";

/// Runs `mwdeploy check-config`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let config = load_config(config_file)?;
    out.fmt(format_args!(
        "config {}: ok ({} servers, {} proxies, release_layout: {})\n",
        config.file.display(),
        config.servers.len(),
        config.proxies.len(),
        config.layout
    ));
    let mut problems = 0usize;
    for w in staging_warnings(&config) {
        out.fmt(format_args!("warning: {w}\n"));
    }
    let hosts =
        Hosts::new(config.ssh_defaults()).map_err(|e| CliError::Usage(format!("ssh: {e}")))?;
    crate::ops::runtime()?.block_on(async {
        if !config.proxies.is_empty() {
            match haproxy(&config, &hosts) {
                Err(e) => {
                    problems += 1;
                    out.fmt(format_args!("proxies: {}\n", Clean(&e.to_string())));
                }
                Ok(pool) => {
                    for p in pool.status().await.proxies {
                        match p.error {
                            None => out.fmt(format_args!(
                                "proxy {}: reached, {} read\n",
                                p.proxy,
                                crate::render::count(p.backends.len(), "backend")
                            )),
                            Some(e) => {
                                problems += 1;
                                out.fmt(format_args!(
                                    "proxy {}: NOT reached: {}\n",
                                    p.proxy,
                                    Clean(&e.to_string())
                                ));
                            }
                        }
                    }
                }
            }
        }
        for s in &config.servers {
            let server = s.to_server();
            if server.local {
                out.fmt(format_args!("server {}: local, no ssh\n", s.name));
                continue;
            }
            let runner = match hosts.runner(&server) {
                Ok(r) => r,
                Err(e) => {
                    problems += 1;
                    out.fmt(format_args!(
                        "server {}: {}\n",
                        s.name,
                        Clean(&e.to_string())
                    ));
                    continue;
                }
            };
            match runner.run_ok(&Cmd::new(["true"])).await {
                Ok(_) => out.fmt(format_args!(
                    "server {}: reached ({})\n",
                    s.name,
                    runner.host()
                )),
                Err(e) => {
                    problems += 1;
                    let text = e.to_string();
                    out.fmt(format_args!(
                        "server {}: NOT reached ({}): {}\n",
                        s.name,
                        runner.host(),
                        Clean(&text)
                    ));
                    if host_key_problem(&text) {
                        let host = s.ssh_host.as_deref().unwrap_or(s.name.as_str());
                        let port = s.ssh_port.or(config.ssh_port);
                        for line in keyscan(host, port) {
                            out.fmt(format_args!(
                                "  its host key, to check (with the server's owner) before you \
                                 add it to known_hosts: {}\n",
                                Clean(&line)
                            ));
                        }
                    }
                }
            }
            out.flush();
        }
        hosts.close().await;
    });
    if problems == 0 {
        out.bytes(b"everything was reached\n");
        Ok(exit::OK)
    } else {
        out.fmt(format_args!(
            "{} could not be reached\n",
            crate::render::count(problems, "host")
        ));
        Ok(exit::FAILED)
    }
}

/// Whether ssh failed on the host key (unknown, or changed).
fn host_key_problem(error: &str) -> bool {
    mwdeploy_exec::ssh_failure_kind(error) == Some(mwdeploy_exec::FailureKind::HostKey)
}

/// `ssh-keyscan` of `host`: its key lines as a known_hosts file would hold them. Nothing
/// is written.
fn keyscan(host: &str, port: Option<u16>) -> Vec<String> {
    let mut cmd = Command::new("ssh-keyscan");
    cmd.args(["-T", "5"]);
    if let Some(p) = port {
        cmd.args(["-p", &p.to_string()]);
    }
    cmd.arg("--").arg(host);
    match cmd.output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What is wrong with the staging checkout: missing, not a git checkout, or writable by
/// the web server user.
fn staging_warnings(config: &Config) -> Vec<String> {
    let path = &config.staging_path;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return vec![format!("staging_path {}: {e}", path.display())],
    };
    let mut warnings = Vec::new();
    if !path.join(".git").exists() {
        warnings.push(format!(
            "staging_path {} is not a git checkout: only --rsync and --provision can deploy it",
            path.display()
        ));
    }
    if let Some((uid, gid)) = user_ids(WEB_USER) {
        let mode = meta.mode();
        let why = if meta.uid() == uid {
            Some("it owns it")
        } else if meta.gid() == gid && mode & 0o020 != 0 {
            Some("its group can write it")
        } else if mode & 0o002 != 0 {
            Some("everyone can write it")
        } else {
            None
        };
        if let Some(why) = why {
            warnings.push(format!(
                "staging_path {} is writable by the web server user {WEB_USER} ({why}): code \
                 it writes there would be deployed to every server; give the checkout to the \
                 deploy user (git_user) instead",
                path.display()
            ));
        }
    }
    warnings
}

/// The uid and gid of `user`, from /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then_some(())?;
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_failures_are_told_apart() {
        assert!(host_key_problem("ssh: Host key verification failed."));
        assert!(!host_key_problem(
            "ssh: connect to host x port 22: Connection refused"
        ));
    }

    #[test]
    fn users_are_read_from_passwd() {
        assert_eq!(user_ids("root"), Some((0, 0)));
        assert_eq!(user_ids("no-such-user-here"), None);
    }
}
