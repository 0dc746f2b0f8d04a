//! `mwdeploy recover`: the library's recovery ([`mwdeploy::recover`]) of what killed
//! deploys left out of the pool, shown as every run ([`crate::session`]).
//!
//! Safe to run twice: a second run finds every journal finished and does nothing.

use std::io::Write;
use std::path::Path;

use mwdeploy::recover::{RecoverError, Recovery};

use crate::cli::RecoverArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::request::{load_config, OutputMode};
use crate::session::{new_id, warn_on_stderr, Run};

/// Runs `mwdeploy recover`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &RecoverArgs,
    argv: Vec<String>,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let config = load_config(config_file)?;
    let recovery = match Recovery::find(&config) {
        Ok(r) => r,
        Err(RecoverError::Lock(e)) => {
            eprintln!("mwdeploy: {e}");
            eprintln!("mwdeploy: a running deploy puts its own servers back (see `mwdeploy log --latest --follow`)");
            return Ok(exit::REFUSED);
        }
        Err(e @ RecoverError::LayoutChanged { .. }) => {
            eprintln!("mwdeploy: {e}");
            return Ok(exit::USAGE);
        }
        Err(e) => {
            eprintln!("mwdeploy: {e}");
            return Ok(exit::FAILED);
        }
    };
    if recovery.unfinished().is_empty() {
        out.bytes(b"nothing to recover: every deploy in the journal finished\n");
        return Ok(exit::OK);
    }
    let id = new_id("recover");
    let output = if args.json {
        OutputMode::Json
    } else {
        OutputMode::Plain
    };
    let nothing_out = recovery.servers().next().is_none();
    let code = if nothing_out {
        exit::OK
    } else {
        let runtime = crate::ops::runtime()?;
        runtime.block_on(async {
            let mut run = Run::new(output, id.as_str());
            let controls = run.controls();
            let prepared = recovery
                .prepare(
                    &config,
                    id.clone(),
                    argv,
                    &controls,
                    &mut run.shown(out),
                    warn_on_stderr(),
                )
                .await;
            let unreachable = "nothing was touched; every proxy must confirm each repool";
            run.show(prepared, false, unreachable, out).await
        })?
    };
    for (journal, e) in recovery.close(&config, &id) {
        eprintln!("mwdeploy: warning: cannot close the journal of {journal}: {e}");
    }
    if nothing_out {
        out.fmt(format_args!(
            "no server was left out of the pool; closed the journal of {}\n",
            recovery
                .unfinished()
                .iter()
                .map(|u| u.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(code)
}
