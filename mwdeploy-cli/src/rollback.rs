//! `mwdeploy rollback`: the previous (or a named) release made live again on the
//! servers, through the same engine as a deploy: depool, switch, `post_activate`,
//! canary, repool, `--parallel` servers at once. `--fast` switches without depooling
//! (the switch is atomic): for incidents.
//!
//! ```text
//!  RollbackTransfer (the engine's Transfer port):
//!    copy      checks the target release is on the server, notes the live one
//!    activate  switches to the target (rsync's rollback_to: one `mv -T` of a symlink)
//!    rollback  switches back to the release that was live before (its canary failed)
//! ```
//!
//! In the in-place layout no earlier release exists on the servers: the command says so
//! and how to redeploy an older staging commit.

use std::io::Write;
use std::path::Path;

use mwdeploy::rollback::RollbackSpec;
use mwdeploy_core::ReleaseId;

use crate::cli::RollbackArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::request::{load_config, server_names, OutputMode};
use crate::session::{new_id, warn_on_stderr, Run};

/// Runs `mwdeploy rollback`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &RollbackArgs,
    argv: Vec<String>,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let names = server_names(args.servers.as_deref())?;
    let to = match &args.to {
        Some(t) => Some(ReleaseId::parse(t).map_err(|e| {
            CliError::Usage(format!(
                "--to: {t:?} is not a release id ({e}); `mwdeploy releases` lists them"
            ))
        })?),
        None => None,
    };
    if let Some(m) = &args.message {
        validate_message(m)?;
    }
    let config = load_config(config_file)?;
    let spec = RollbackSpec {
        servers: names,
        to,
        parallel: args.parallel,
        fast: args.fast,
        unattended: args.json,
        message: args.message.clone(),
        argv,
    };
    match mwdeploy::rollback::check(&config, &spec) {
        Ok(()) => {}
        Err(e @ mwdeploy::rollback::RollbackRefused::InPlace { .. }) => {
            eprintln!("mwdeploy: {e}");
            return Ok(exit::USAGE);
        }
        Err(e) => return Err(CliError::Usage(e.to_string())),
    }
    let output = if args.json {
        OutputMode::Json
    } else if args.no_tui {
        OutputMode::Plain
    } else {
        // The dashboard on a terminal, plain lines otherwise (as a deploy).
        OutputMode::Dashboard
    };
    let runtime = crate::ops::runtime()?;
    runtime.block_on(async {
        let id = new_id("rollback");
        let mut run = Run::new(output, id.as_str());
        let controls = run.controls();
        let prepared = mwdeploy::rollback::prepare(
            &config,
            &spec,
            id,
            &controls,
            &mut run.shown(out),
            warn_on_stderr(),
        )
        .await;
        let unreachable = "nothing was touched (--fast switches without the balancer)";
        run.show(prepared, false, unreachable, out).await
    })
}

/// A message on one line, not empty.
fn validate_message(m: &str) -> Result<(), CliError> {
    if m.trim().is_empty() || m.chars().any(char::is_control) {
        return Err(CliError::Usage(
            "--message: write the reason on one line, without control characters".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_one_line() {
        assert!(validate_message("T123 revert").is_ok());
        assert!(validate_message(" ").is_err());
        assert!(validate_message("a\nb").is_err());
    }
}
