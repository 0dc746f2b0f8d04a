//! The operations subcommands: what an operator asks of a fleet and a state dir between
//! (and during) deploys, without changing anything on the servers.
//!
//! ```text
//!  -C config.yaml ──> load (as a deploy: diagnostics on stderr, exit 2)
//!        │
//!        ├─> lock      state_dir/lock: who holds it; clear a stale record
//!        ├─> log       state_dir/deploys/<id>.jsonl: rendered, or as it is; --follow
//!        ├─> releases  every server's releases (rsync adapter over ssh)
//!        └─> status    every proxy's view of every pooled server (HAProxy adapter),
//!                      and the release each one serves
//!  completions         clap's description of the command, as a shell script
//! ```
//!
//! None of them takes the deploy lock or changes a server, a proxy or a journal;
//! `lock release` only empties a lock record whose holder is gone.

pub(crate) mod completions;
pub(crate) mod lock;
pub(crate) mod log;
pub(crate) mod releases;
pub(crate) mod status;
mod table;

use std::path::Path;

use mwdeploy_core::model::validate_name;

use crate::config::{config_path, Config};
use crate::error::CliError;
use crate::render::count;

/// The longest server name accepted on the command line.
const NAME_MAX: usize = 253;

/// Reads and checks the config as a deploy does: every diagnostic on stderr and a usage
/// error (exit 2) when it is refused; its warnings on stderr when it is accepted.
pub(crate) fn load_config(flag: Option<&Path>) -> Result<Config, CliError> {
    let file = config_path(flag);
    match Config::load(&file) {
        Ok(config) => {
            for w in config.warnings() {
                eprintln!("mwdeploy: warning: {w}");
            }
            Ok(config)
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            Err(CliError::Usage(format!(
                "{} in {}: nothing was run",
                count(diagnostics.len(), "config error"),
                file.display()
            )))
        }
    }
}

/// A runtime for one command's adapters (ssh, the admin sockets): one thread is enough,
/// everything they do is waiting.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)
}

/// `error` without a leading `<what>: ` that only repeats what the line already names
/// (`server mw2: cannot reach ...` shown under mw2).
pub(crate) fn unprefixed<'a>(error: &'a str, what: &str) -> &'a str {
    error
        .strip_prefix(what)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(error)
}

/// `--servers LIST|all`: indices into `config.servers`, in config order. Each name is
/// checked as a name before it is looked up, and must be a server of the config.
pub(crate) fn select_servers(
    config: &Config,
    names: Option<&[String]>,
) -> Result<Vec<usize>, CliError> {
    let usage = |m: String| CliError::Usage(m);
    let names = match names {
        None => return Ok((0..config.servers.len()).collect()),
        Some([one]) if one == "all" => return Ok((0..config.servers.len()).collect()),
        Some(names) if names.iter().any(|n| n == "all") => {
            return Err(usage(
                "--servers: \"all\" cannot be combined with server names".to_string(),
            ))
        }
        Some(names) => names,
    };
    for n in names {
        validate_name("server", n, NAME_MAX).map_err(|e| usage(format!("--servers: {e}")))?;
        if config.server(n).is_none() {
            let known: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
            let shown = if known.len() > 12 {
                format!("{}, ... ({} in all)", known[..12].join(", "), known.len())
            } else {
                known.join(", ")
            };
            return Err(usage(format!(
                "--servers: {n:?} is not a server of {} (mw_servers: {shown})",
                config.file.display()
            )));
        }
    }
    Ok((0..config.servers.len())
        .filter(|&i| names.iter().any(|n| n == config.servers[i].name.as_str()))
        .collect())
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
