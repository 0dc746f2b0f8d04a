//! `mwdeploy lock status` and `mwdeploy lock release`: the deploy lock of `state_dir`.
//!
//! The lock is an `flock` the kernel drops when its holder dies, plus a record of the
//! holder. `status` says who holds it (or that nobody does, and whether a dead holder left
//! its record); `release` clears such a stale record and refuses while the holder lives:
//! a live lock is never broken from here.

use std::io::Write;
use std::path::Path;

use mwdeploy_runtime::lock::{lock_path, DeployLock, Holder, LockError, LockStatus};

use crate::cli::{LockArgs, LockCommand};
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::Clean;

/// Runs `mwdeploy lock ...`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &LockArgs,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let config = super::load_config(config_file)?;
    let state_dir = &config.state_dir;
    match args.command {
        LockCommand::Status => status(state_dir, out),
        LockCommand::Release => release(state_dir, out),
    }
}

fn status<W: Write>(state_dir: &Path, out: &mut Output<W>) -> Result<i32, CliError> {
    let file = lock_path(state_dir);
    // Reading the lock must not create the state dir of a host that never deployed.
    if !state_dir.is_dir() {
        out.fmt(format_args!(
            "nobody holds the deploy lock ({} does not exist yet)\n",
            state_dir.display()
        ));
        return Ok(exit::OK);
    }
    match DeployLock::status(state_dir) {
        Ok(LockStatus::Free) => {
            out.fmt(format_args!(
                "nobody holds the deploy lock ({})\n",
                file.display()
            ));
        }
        Ok(LockStatus::Stale(h)) => {
            out.fmt(format_args!(
                "nobody holds the deploy lock ({}); its holder is gone but left a record:\n",
                file.display()
            ));
            holder_lines(out, &h);
            out.bytes(b"`mwdeploy lock release` clears it\n");
        }
        Ok(LockStatus::Held(h)) => {
            out.fmt(format_args!(
                "the deploy lock ({}) is held\n",
                file.display()
            ));
            match h {
                Some(h) => holder_lines(out, &h),
                None => out.bytes(b"  by a process that left no readable record\n"),
            }
        }
        Ok(_) => out.fmt(format_args!(
            "the deploy lock ({}) is in a state this version does not know\n",
            file.display()
        )),
        Err(e) => {
            eprintln!("mwdeploy: cannot read the deploy lock: {e}");
            return Ok(exit::FAILED);
        }
    }
    Ok(exit::OK)
}

fn release<W: Write>(state_dir: &Path, out: &mut Output<W>) -> Result<i32, CliError> {
    let file = lock_path(state_dir);
    if !state_dir.is_dir() {
        out.fmt(format_args!(
            "nothing to release: {} does not exist yet\n",
            state_dir.display()
        ));
        return Ok(exit::OK);
    }
    match DeployLock::clear_stale(state_dir) {
        Ok(Some(h)) => {
            out.fmt(format_args!(
                "cleared the stale record of the deploy lock ({}); its holder was gone:\n",
                file.display()
            ));
            holder_lines(out, &h);
            Ok(exit::OK)
        }
        Ok(None) => {
            out.fmt(format_args!(
                "nothing to release: nobody holds the deploy lock ({})\n",
                file.display()
            ));
            Ok(exit::OK)
        }
        Err(LockError::Held { holder, .. }) => {
            let who = match holder {
                Some(h) => Clean(&h.to_string()).to_string(),
                None => "a process that left no readable record".to_string(),
            };
            eprintln!(
                "mwdeploy: refused: the deploy lock ({}) is held by {who}, which is still \
                 running; it is released when that process ends (stop it there, or wait)",
                file.display()
            );
            Ok(exit::REFUSED)
        }
        Err(e) => {
            eprintln!("mwdeploy: cannot release the deploy lock: {e}");
            Ok(exit::FAILED)
        }
    }
}

/// The holder, one field a line.
fn holder_lines<W: Write>(out: &mut Output<W>, h: &Holder) {
    out.fmt(format_args!("  user:     {}\n", Clean(&h.user)));
    out.fmt(format_args!("  host:     {}\n", Clean(&h.host)));
    out.fmt(format_args!("  pid:      {}\n", h.pid));
    out.fmt(format_args!("  started:  {}\n", Clean(&h.started)));
    if !h.message.is_empty() {
        out.fmt(format_args!("  message:  {}\n", Clean(&h.message)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Output<Vec<u8>>) -> i32) -> (i32, String) {
        let mut out = Output::new(Vec::new());
        let code = f(&mut out);
        (code, String::from_utf8(out.into_inner().unwrap()).unwrap())
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("mwdeploy-ops-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_missing_state_dir_is_a_free_lock_and_is_not_created() {
        let d = temp("missing");
        let (code, text) = render(|out| status(&d, out).unwrap());
        assert_eq!(code, 0);
        assert!(text.starts_with("nobody holds"), "{text}");
        let (code, text) = render(|out| release(&d, out).unwrap());
        assert_eq!(code, 0);
        assert!(text.starts_with("nothing to release"), "{text}");
        assert!(!d.exists());
    }

    #[test]
    fn a_stale_record_is_shown_then_cleared() {
        let d = temp("stale");
        std::fs::create_dir_all(&d).unwrap();
        let h = Holder::current("deploying \x1b[31m1.45");
        std::fs::write(lock_path(&d), serde_json::to_string(&h).unwrap()).unwrap();
        let (code, text) = render(|out| status(&d, out).unwrap());
        assert_eq!(code, 0);
        assert!(text.contains("its holder is gone"), "{text}");
        assert!(text.contains("message:  deploying ?[31m1.45"), "{text}");
        let (code, text) = render(|out| release(&d, out).unwrap());
        assert_eq!(code, 0);
        assert!(text.starts_with("cleared the stale record"), "{text}");
        let (_, text) = render(|out| status(&d, out).unwrap());
        assert!(
            text.starts_with("nobody holds") && !text.contains("gone"),
            "{text}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
