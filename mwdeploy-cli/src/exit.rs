//! The exit codes of `mwdeploy`, as the CLI contract documents them.
//!
//! Scripts depend on these numbers: extend the set, never renumber it.

/// Success: every selected server succeeded, or the command did what was asked.
/// `simulate`: every rule of the design held.
pub const OK: i32 = 0;

/// Failure: the deploy finished with failed, rolled-back or skipped servers, or the
/// operator stopped it; a command tried and something failed.
/// `simulate`: a rule of the design broke (the report lists which).
pub const FAILED: i32 = 1;

/// Usage or config error: nothing was touched.
pub const USAGE: i32 = 2;

/// Refused before touching production: the lock is held, a proxy is unreachable, a
/// target is not UP, or the staging canary failed (each without `--force`).
pub const REFUSED: i32 = 3;

/// Interrupted by SIGINT or SIGTERM, after depooled servers were put back.
pub const INTERRUPTED: i32 = 130;

/// The exit code for a deploy that ended with `verdict`.
pub fn of(verdict: mwdeploy_core::Verdict) -> i32 {
    use mwdeploy_core::Verdict;
    match verdict {
        Verdict::Done => OK,
        Verdict::Refused => REFUSED,
        Verdict::Interrupted => INTERRUPTED,
        // Failed, stopped, and any verdict a newer engine adds: not what was asked.
        _ => FAILED,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_the_contract_s() {
        assert_eq!(
            [
                super::OK,
                super::FAILED,
                super::USAGE,
                super::REFUSED,
                super::INTERRUPTED
            ],
            [0, 1, 2, 3, 130]
        );
    }
}
