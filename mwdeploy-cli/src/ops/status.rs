//! `mwdeploy status [--json]`: the library's fleet status ([`mwdeploy::status`]) shown
//! plain or as one JSON object. Exit 0 when every pooled server is UP on every proxy
//! and backend; 1 when one is not or a proxy could not be read.

use std::io::Write;
use std::path::Path;

use crate::cli::StatusArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::session::warn_on_stderr;

/// Runs `mwdeploy status`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &StatusArgs,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let config = super::load_config(config_file)?;
    let fleet = super::runtime()?.block_on(mwdeploy::status::read(&config, &warn_on_stderr()))?;
    let a = fleet.assess();
    let code = if a.is_ok() { exit::OK } else { exit::FAILED };
    if args.json {
        let mut json = a.json(&fleet.pool);
        json["exit_code"] = code.into();
        out.fmt(format_args!("{json}\n"));
    } else {
        out.bytes(a.plain(&fleet.pool).as_bytes());
    }
    Ok(code)
}
