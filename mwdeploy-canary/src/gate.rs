//! The error gate: after the repool, while the server takes real traffic, count new
//! lines of its error log that match a pattern.

use std::time::Duration;

use mwdeploy_core::ports::{Progress, ProgressUpdate};
use mwdeploy_core::Health;
use mwdeploy_exec::{Cmd, CommandRunner};
use regex::Regex;

use crate::error::ConfigError;

/// Counts matching lines a log gains during a window; too many fails the server.
#[derive(Debug, Clone)]
pub struct ErrorRateGate {
    log: String,
    pattern: Regex,
    threshold: u32,
    sudo: bool,
}

/// Where a file stood: its inode and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Mark {
    inode: u64,
    size: u64,
}

impl ErrorRateGate {
    /// A gate on `log` (an absolute path on the server) failing at `threshold` lines
    /// matching `pattern` (a regular expression, e.g. `PHP (Fatal|Warning)`).
    pub fn new(log: impl Into<String>, pattern: &str, threshold: u32) -> Result<Self, ConfigError> {
        let log = log.into();
        if !log.starts_with('/') || log.contains('\n') || log.contains('\0') {
            return Err(ConfigError::LogPath(log));
        }
        let pattern = Regex::new(pattern).map_err(|e| ConfigError::Pattern {
            pattern: pattern.to_string(),
            why: e.to_string(),
        })?;
        if threshold == 0 {
            return Err(ConfigError::Threshold);
        }
        Ok(ErrorRateGate {
            log,
            pattern,
            threshold,
            sudo: false,
        })
    }

    /// Reads the log through `sudo -n` (logs readable only by root).
    pub fn sudo(mut self, sudo: bool) -> Self {
        self.sudo = sudo;
        self
    }

    /// Watches for `window`: healthy below the threshold, unhealthy at or above it,
    /// unknown when the log cannot be read (the plan's `on_unknown` decides).
    pub async fn watch(
        &self,
        runner: &dyn CommandRunner,
        window: Duration,
        progress: &Progress,
    ) -> Health {
        let start = match self.marks(runner).await {
            Ok((Some(m), _)) => m,
            Ok((None, _)) => return self.unknown("it does not exist"),
            Err(e) => return self.unknown(&e),
        };
        tokio::time::sleep(window).await;
        let (now, rotated) = match self.marks(runner).await {
            Ok(m) => m,
            Err(e) => return self.unknown(&e),
        };
        // Where the new lines are: the tail of the same file; or, after a rotation, the
        // tail of the old file (now `<log>.1`) and all of the new one; or, after a
        // truncation or a replacement, all of the current file.
        let mut parts: Vec<(String, u64)> = Vec::new();
        match (now, rotated) {
            (Some(n), _) if n.inode == start.inode && n.size >= start.size => {
                parts.push((self.log.clone(), start.size));
            }
            (n, Some(r)) if r.inode == start.inode => {
                parts.push((format!("{}.1", self.log), start.size));
                if n.is_some() {
                    parts.push((self.log.clone(), 0));
                }
            }
            (Some(_), _) => parts.push((self.log.clone(), 0)),
            (None, _) => return self.unknown("it disappeared during the window"),
        }
        let mut count = 0u32;
        for (file, from) in parts {
            match self.count(runner, &file, from).await {
                Ok(n) => count += n,
                Err(e) => return self.unknown(&e),
            }
        }
        progress.report(ProgressUpdate::line(format!(
            "{count} matching line(s) in {}",
            self.log
        )));
        if count >= self.threshold {
            Health::unhealthy(format!(
                "{count} lines matching {:?} in {} within {}s (threshold {})",
                self.pattern.as_str(),
                self.log,
                window.as_secs(),
                self.threshold
            ))
        } else {
            Health::Healthy
        }
    }

    fn unknown(&self, why: &str) -> Health {
        Health::Unknown {
            reason: format!("cannot read {}: {why}", self.log),
        }
    }

    /// The log's mark and its rotated copy's, each `None` if missing.
    async fn marks(
        &self,
        runner: &dyn CommandRunner,
    ) -> Result<(Option<Mark>, Option<Mark>), String> {
        let rotated = format!("{}.1", self.log);
        let cmd = Cmd::new([
            "stat",
            "--format=%i %s %n",
            "--",
            self.log.as_str(),
            rotated.as_str(),
        ])
        .sudo(self.sudo);
        // A missing file makes stat exit 1 but still describe the others.
        let out = runner
            .run(&cmd, &mut |_, _| {})
            .await
            .map_err(|e| e.to_string())?;
        let mut log = None;
        let mut old = None;
        for line in out.stdout.lines() {
            let mut it = line.splitn(3, ' ');
            let (Some(i), Some(s), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let (Ok(inode), Ok(size)) = (i.parse(), s.parse()) else {
                continue;
            };
            let m = Some(Mark { inode, size });
            if name == self.log {
                log = m;
            } else if name == rotated {
                old = m;
            }
        }
        if log.is_none() && old.is_none() && !out.success() {
            let words = out.last_words();
            if !words.contains("No such file") {
                return Err(words.to_string());
            }
        }
        Ok((log, old))
    }

    /// Matching lines in `file` from byte `from` on, counted as they stream.
    async fn count(
        &self,
        runner: &dyn CommandRunner,
        file: &str,
        from: u64,
    ) -> Result<u32, String> {
        let offset = format!("+{}", from + 1);
        let cmd = Cmd::new(["tail", "-c", offset.as_str(), "--", file]).sudo(self.sudo);
        let mut n = 0u32;
        let pattern = &self.pattern;
        let out = runner
            .run(&cmd, &mut |stream, line| {
                if stream == mwdeploy_exec::Stream::Stdout && pattern.is_match(line) {
                    n += 1;
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(out.last_words().to_string());
        }
        Ok(n)
    }
}
