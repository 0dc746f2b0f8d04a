//! The human log (`log_file`): one line per event an operator reads, appended.
//!
//! `2026-11-22T05:41:57Z 20261122T054157Z-ab12 mw1       canary        attempt 2 failed: HTTP 500`
//!
//! The text is the plain rendering of [`PlainLines`] (control characters already
//! replaced by `?`), without its elapsed-time column. A new file is created with mode
//! 0640. Not critical: a write that fails is the subscriber's error, which the driver
//! does not stop for (a runner may warn about the first one).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use mwdeploy_core::event::Record;

use mwdeploy_core::text::Clean;

use crate::driver::{Subscriber, SubscriberError};
use crate::render::PlainLines;

/// The log file of one deploy.
#[derive(Debug)]
pub struct LogFile {
    file: File,
    plain: PlainLines,
}

impl LogFile {
    /// Opens `path` for appending (0640 if it is created).
    pub fn open(path: &Path) -> std::io::Result<LogFile> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)?;
        Ok(LogFile {
            file,
            plain: PlainLines,
        })
    }

    /// The lines for `record` (none for events the plain output leaves out).
    fn lines(&mut self, record: &Record) -> String {
        let mut text = Vec::new();
        self.plain.event(&mut text, &record.event, Duration::ZERO);
        let text = String::from_utf8_lossy(&text);
        let ts = humantime::format_rfc3339_seconds(record.ts);
        let deploy = Clean(&record.deploy);
        let mut lines = String::new();
        for l in text.lines() {
            // Drop the elapsed-time column (`      0.0s  `): the line has its own time.
            let l = l.trim_start();
            let l = l.split_once("s  ").map_or(l, |(_, rest)| rest);
            lines.push_str(&format!("{ts} {deploy} {l}\n"));
        }
        lines
    }
}

impl Subscriber for LogFile {
    fn record(&mut self, record: &Record) -> Result<(), SubscriberError> {
        let lines = self.lines(record);
        if lines.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(lines.as_bytes())
            .map_err(|e| SubscriberError {
                subscriber: "log_file".into(),
                detail: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mwdeploy_core::{Event, ServerId, ServerStatus};
    use std::os::unix::fs::PermissionsExt;
    use std::time::SystemTime;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("mwdeploy-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lines_are_appended_with_time_and_deploy_and_cleaned() {
        let dir = tmp("append");
        let path = dir.join("mwdeploy.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut log = LogFile::open(&path).unwrap();
        let ts = SystemTime::UNIX_EPOCH + Duration::from_secs(86400);
        let rec = |event| Record {
            ts,
            deploy: "D1".into(),
            event,
        };
        log.record(&rec(Event::ServerState {
            server: ServerId::new("mw1").unwrap(),
            state: ServerStatus::Failed,
            detail: Some("boom \u{1b}[31mred\u{7}".into()),
        }))
        .unwrap();
        log.record(&rec(Event::Warning {
            server: None,
            detail: "careful".into(),
        }))
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "old line\n\
             1970-01-02T00:00:00Z D1 mw1       failed        boom ?[31mred?\n\
             1970-01-02T00:00:00Z D1 warning: careful\n"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_new_log_is_0640() {
        let dir = tmp("mode");
        let path = dir.join("new.log");
        drop(LogFile::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The umask may take bits away, never add them.
        assert_eq!(mode & !0o640, 0, "{mode:o}");
        assert_eq!(mode & 0o600, 0o600, "{mode:o}");
        assert!(LogFile::open(&dir.join("missing/x.log")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
