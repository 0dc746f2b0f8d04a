//! The `mwdeploy` command: flags in, the `mwdeploy` library called, its reports
//! rendered, an exit code out. Everything a deploy does lives in the libraries; here is
//! only what a command line needs. A library itself, so that it can be tested without a
//! process.
//!
//! ```text
//!  argv ──> cli (clap) ──> request (flags ──> mwdeploy::DeploySpec ──> DeployRequest)
//!            │                  ├─> dry_run (--dry-run: the plan and each step's commands)
//!            │                  └─> deploy: mwdeploy::deploy::prepare ──> Running ──┐
//!            ├─> rollback, recover, pool, status, releases, lock, log (the library's) │
//!            ├─> simulate, demo (mwdeploy-sim)                                       │
//!            ▼                                                                       ▼
//!       exit code (exit::of a Verdict, or an error)      session: plain | JSON lines,
//!                                                        the dashboard (mwdeploy-tui),
//!                                                        the line prompt, SIGINT
//! ```
//!
//! - `cli`: the subcommands and flags.
//! - `request`: a deploy's flags checked into the library's request.
//! - `dry_run`: `--dry-run`, the checked request printed.
//! - `deploy`, `rollback`, `recover`, `pool`: the library's runs, refusals told.
//! - `session`: how a run is shown: printer, dashboard, line prompt, signals.
//! - `ops`: `status`, `log`, `lock`, `releases`, `completions`.
//! - `pool_menu`: the viewer's pool menu: a pool change when no deploy holds the lock.
//! - `check_config`: `mwdeploy check-config`: the config checked, every host reached.
//! - `simulate`, `demo`: the engine on a simulated fleet, in virtual or real time.
//! - `sandbox`: a small real fleet on 127.0.0.1 (testfleet's parts) to deploy to.
//! - `output`: a locked, buffered stdout that ends quietly on a closed pipe.
//! - `viewer`: `mwdeploy` without a deploy flag: the latest deploy, followed in the
//!   dashboard or summed up.
//! - [`exit`]: the exit codes, mapped here and only here.
//! - [`packaging`]: the man pages and completion scripts a package installs.
#![warn(missing_docs)]

/// std's `eprintln!` panics when stderr cannot be written, which is every write once the
/// terminal went away: a warning would end a deploy half way. This one, which shadows it
/// in the whole crate, drops the line instead ([`tty`]).
macro_rules! eprintln {
    ($($arg:tt)*) => {
        $crate::tty::stderr_line(format_args!($($arg)*))
    };
}

mod check_config;
mod cli;
mod demo;
mod deploy;
mod dry_run;
mod error;
pub mod exit;
mod ops;
mod output;
pub mod packaging;
mod pool;
mod pool_menu;
mod recover;
mod request;
mod rollback;
mod sandbox;
mod session;
mod simulate;
mod viewer;

pub(crate) use mwdeploy::config;
pub(crate) use mwdeploy_mediawiki::steps as prepare;
pub(crate) use mwdeploy_tui as tui;
pub(crate) use mwdeploy_tui::tty;

/// Events as lines, and the text helpers they share.
mod render {
    pub(crate) use mwdeploy_core::text::{count, Clean, SummaryText};
    pub(crate) use mwdeploy_runtime::render::{JsonLines, PlainLines};
}

use std::ffi::OsString;

use clap::Parser;

use crate::cli::{Command, Invocation};
use crate::output::Output;

/// The arguments as given, the program name left out (for the journal).
fn given(argv: &[OsString]) -> Vec<String> {
    argv.iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

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
        Some(Command::Demo(args)) => demo::run(args, &mut out),
        Some(Command::Sandbox(args)) => sandbox::run(args, &mut out),
        Some(Command::Status(args)) => ops::status::run(cli.config_file.as_deref(), args, &mut out),
        Some(Command::Log(args)) => ops::log::run(cli.config_file.as_deref(), args, &mut out),
        Some(Command::Lock(args)) => ops::lock::run(cli.config_file.as_deref(), args, &mut out),
        Some(Command::Releases(args)) => {
            ops::releases::run(cli.config_file.as_deref(), args, &mut out)
        }
        Some(Command::Completions(args)) => ops::completions::run(args, &mut out),
        Some(Command::Pool(args)) => {
            pool::run(cli.config_file.as_deref(), args, given(&argv), &mut out)
        }
        Some(Command::CheckConfig) => check_config::run(cli.config_file.as_deref(), &mut out),
        Some(Command::Recover(args)) => {
            recover::run(cli.config_file.as_deref(), args, given(&argv), &mut out)
        }
        Some(Command::Rollback(args)) => {
            rollback::run(cli.config_file.as_deref(), args, given(&argv), &mut out)
        }
        None => deploy_or_view(
            cli.config_file.as_deref(),
            &cli.deploy,
            given(&argv),
            &mut out,
        ),
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

/// The top-level invocation: a deploy when a deploy flag is given, else a hint.
///
/// Checks the flags (names first, before the config is read), reads and checks the
/// config, prints its warnings on stderr, and builds the deploy's request. With
/// `--dry-run` the request is printed; else it runs.
fn deploy_or_view<W: std::io::Write>(
    config_file: Option<&std::path::Path>,
    args: &cli::DeployArgs,
    argv: Vec<String>,
    out: &mut output::Output<W>,
) -> Result<i32, error::CliError> {
    if !args.starts_deploy() {
        let shaping = args.shaping_flags();
        if shaping.is_empty() {
            return crate::viewer::run(config_file, out);
        }
        return Err(error::CliError::Usage(format!(
            "{} alone do{} not start a deploy: say what to deploy with one of --core, \
             --mediawiki, --extension NAME, --skin NAME, --config, --patch P, --rsync or \
             --provision",
            shaping.join(" "),
            if shaping.len() == 1 { "es" } else { "" }
        )));
    }
    let flags = request::DeployFlags::check(args)?;
    let config = request::load_config(config_file)?;
    let request = request::DeployRequest::new(flags, config, argv)?;
    if request.dry_run {
        return dry_run::run(&request, out);
    }
    crate::deploy::run(&request, out)
}
