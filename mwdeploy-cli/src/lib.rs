//! The `mwdeploy` command as a library, so that it can be tested without a process.
//!
//! ```text
//!  argv ──> cli (clap) ──> simulate ──> mwdeploy_core::sim::Simulation
//!            │                 │              │ events, virtual time
//!            │                 ▼              ▼
//!            │              exit code    render (plain lines | JSON lines) ──> output (stdout)
//!            ▼
//!       deploy flags ──> request (flags + config ──> DeployRequest) ──> dry_run (--dry-run)
//!                              ▲                                   └─> deploy (--rsync)
//!                 config.yaml ─┘ (config: read, checked, defaults)
//! ```
//!
//! - `cli`: the subcommands and flags.
//! - `config`: `config.yaml`, checked, and the engine's types built from it.
//! - `request`: a deploy's flags checked and joined with the config.
//! - `dry_run`: `--dry-run`, the checked request printed.
//! - `deploy`: the deploy runner (`--rsync`): lock, journal, staging sync, the engine's
//!   driver against HAProxy, rsync, the canary and the hooks.
//! - `adapters`: the engine's ports built from the config (HAProxy, rsync, canary, hooks).
//! - `simulate`: `mwdeploy simulate`.
//! - `ops`: the operations subcommands: `status`, `log`, `lock`, `releases`,
//!   `completions`.
//! - `render`: events as plain or JSON lines.
//! - `output`: a locked, buffered stdout that ends quietly on a closed pipe.
//! - [`exit`]: the exit codes.
#![warn(missing_docs)]

mod adapters;
mod cli;
mod config;
mod deploy;
mod dry_run;
mod error;
pub mod exit;
mod log_file;
mod notify;
mod ops;
mod output;
mod render;
mod request;
mod simulate;

use std::ffi::OsString;

use clap::Parser;

use crate::cli::{Command, Invocation};
use crate::output::Output;

/// Runs the command with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    run(std::env::args_os())
}

/// Runs the command with `args` (the first is the program name); returns the exit code.
///
/// Output goes to the process's stdout, errors to its stderr.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Invocation::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is a usage error.
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    if let Some(command) = &cli.command {
        let given = cli.deploy.given();
        if !given.is_empty() {
            let e = error::CliError::Usage(format!(
                "{} cannot be combined with the subcommand `{}`: deploy flags start a deploy, \
                 which is the command without a subcommand",
                given.join(" "),
                command.name()
            ));
            eprintln!("mwdeploy: {e}");
            return e.exit_code();
        }
    }
    let mut out = Output::stdout();
    let result = match &cli.command {
        Some(Command::Simulate(args)) => simulate::run(args, &mut out),
        Some(Command::Status(args)) => ops::status::run(cli.config_file.as_deref(), args, &mut out),
        Some(Command::Log(args)) => ops::log::run(cli.config_file.as_deref(), args, &mut out),
        Some(Command::Lock(args)) => ops::lock::run(cli.config_file.as_deref(), args, &mut out),
        Some(Command::Releases(args)) => {
            ops::releases::run(cli.config_file.as_deref(), args, &mut out)
        }
        Some(Command::Completions(args)) => ops::completions::run(args, &mut out),
        None => {
            let given = argv
                .iter()
                .skip(1)
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            request::run(cli.config_file.as_deref(), &cli.deploy, given, &mut out)
        }
    };
    let flushed = out.finish();
    match (result, flushed) {
        (Ok(code), Ok(())) => code,
        (Err(e), _) => {
            eprintln!("mwdeploy: {e}");
            e.exit_code()
        }
        (Ok(_), Err(e)) => {
            let e = error::CliError::from(e);
            eprintln!("mwdeploy: {e}");
            e.exit_code()
        }
    }
}
