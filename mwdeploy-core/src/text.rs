//! Text for people: shared by every renderer (plain lines, the dashboard, webhooks), so
//! a server's output reads the same everywhere and never drives a terminal.
//!
//! ```
//! use mwdeploy_core::text::{count, Clean};
//! assert_eq!(Clean("ok\x1b[2J").to_string(), "ok?[2J");
//! assert_eq!(count(2, "server"), "2 servers");
//! ```

use std::fmt;

use crate::event::Summary;

/// `1 server`, `2 servers`.
pub fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The summary in words: `48 succeeded, 0 warned, 0 failed, 2 rolled back, 0 skipped`.
#[derive(Debug)]
pub struct SummaryText<'a>(pub &'a Summary);

impl fmt::Display for SummaryText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "{} succeeded, {} warned, {} failed, {} rolled back, {} skipped",
            s.succeeded, s.warned, s.failed, s.rolled_back, s.skipped
        )
    }
}

/// Text with control characters (terminal escapes, carriage returns) replaced by `?`,
/// so remote output cannot drive the operator's terminal.
#[derive(Debug)]
pub struct Clean<'a>(pub &'a str);

impl fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(char::is_control) {
            f.write_str(&rest[..i])?;
            f.write_str("?")?;
            let c = rest[i..].chars().next().expect("found at i");
            rest = &rest[i + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}
