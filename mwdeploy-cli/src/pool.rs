//! `mwdeploy pool depool SERVER` / `pool repool SERVER`: manual pool control on every
//! proxy and backend, confirmed, under the deploy lock, journaled like a deploy (so
//! `mwdeploy log` shows it and `mwdeploy recover` never undoes it).
//!
//! ```text
//!  lock ──> journal: deploy_started, [canary attempts], pool intent, pool result,
//!           deploy_finished
//!  depool: drain, sessions end, maintenance, on every proxy (HAProxy adapter)
//!  repool: the server's canary first (--force skips it), then ready, confirmed serving
//! ```
//!
//! The change itself is the library's ([`mwdeploy::pool::change`]); the viewer's pool
//! menu runs the same, on a task of its dashboard.

use std::io::Write;
use std::path::Path;

use mwdeploy::pool::{change, pooled_server, Outcome};
use mwdeploy_core::event::Record;
use mwdeploy_core::model::validate_name;
use mwdeploy_core::Event;

use crate::cli::{PoolArgs, PoolCommand};
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::request::load_config;
use crate::session::{take_lock, warn_on_stderr};

/// Runs `mwdeploy pool ...`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &PoolArgs,
    argv: Vec<String>,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let (name, depool, force) = match &args.command {
        PoolCommand::Depool { server } => (server, true, false),
        PoolCommand::Repool { server, force } => (server, false, *force),
    };
    validate_name("server", name, 253).map_err(|e| CliError::Usage(e.to_string()))?;
    let config = load_config(config_file)?;
    let server = pooled_server(&config, name).map_err(CliError::Usage)?;
    let what = if depool { "depool" } else { "repool" };
    let _lock = match take_lock(&config.state_dir, &format!("pool {what} {name}")) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let outcome = crate::ops::runtime()?.block_on(change(
        &config,
        &server,
        depool,
        force,
        argv,
        &mut |r: &Record| {
            // The canary's attempts, as they come.
            if let Event::Canary {
                attempt,
                ok,
                detail,
                ..
            } = &r.event
            {
                let said = if *ok { "ok" } else { detail.as_str() };
                out.fmt(format_args!(
                    "{name}: canary attempt {attempt}: {}\n",
                    crate::render::Clean(said)
                ));
                out.flush();
            }
        },
        &warn_on_stderr(),
    ));
    Ok(match outcome {
        Outcome::Done(line) => {
            out.fmt(format_args!("{line}\n"));
            exit::OK
        }
        Outcome::Refused(why) => {
            eprintln!("mwdeploy: refused: {why}");
            exit::REFUSED
        }
        Outcome::Failed(why) => {
            eprintln!("mwdeploy: {why}");
            exit::FAILED
        }
        Outcome::Unusable(why) => return Err(CliError::Usage(why)),
    })
}
