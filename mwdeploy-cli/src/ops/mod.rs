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

use crate::config::Config;
use crate::error::CliError;

pub(crate) use crate::request::load_config;

/// A runtime for one command's adapters (ssh, the admin sockets): one thread is enough,
/// everything they do is waiting.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)
}

/// `--servers LIST|all`: indices into `config.servers`, in config order. Each name is
/// checked as a name before it is looked up, and must be a server of the config.
pub(crate) fn select_servers(
    config: &Config,
    names: Option<&[String]>,
) -> Result<Vec<usize>, CliError> {
    let names = crate::request::server_names(names)?;
    crate::request::select_servers(config, names.as_deref())
}
