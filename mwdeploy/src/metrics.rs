//! Metrics of the last deploy in the Prometheus text format, for node_exporter's
//! textfile collector (`metrics_file:` in the config).
//!
//! A [`Metrics`] observes a run's records; [`Metrics::write`] then rewrites the file
//! atomically (a new file beside it, renamed over it), carrying the running totals
//! (`mwdeploy_deploys_total`) over from the file it replaces.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use mwdeploy::metrics::Metrics;
//! use mwdeploy::session::Observer;
//! use mwdeploy_core::event::{Event, Record, Summary};
//! use mwdeploy_core::Verdict;
//!
//! let mut m = Metrics::default();
//! let at = |s| UNIX_EPOCH + Duration::from_secs(s);
//! let summary = Summary { succeeded: 2, ..Summary::default() };
//! let end = Event::DeployFinished { summary, duration_s: 12.5, verdict: Verdict::Done };
//! m.record(&Record { ts: at(100), deploy: "d1".into(), event: end });
//! let text = m.text("");
//! assert!(text.contains("mwdeploy_last_deploy_exit_code 0\n"));
//! assert!(text.contains("mwdeploy_last_deploy_servers{outcome=\"succeeded\"} 2\n"));
//! assert!(text.contains("mwdeploy_deploys_total{exit_code=\"0\"} 1\n"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use mwdeploy_core::event::{Event, PoolAction, PoolPhase, Record, Summary};
use mwdeploy_core::{ServerId, Verdict};

use crate::session::Observer;

/// What a run's records say for the metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Servers out of the pool now: since when (their depool's intent).
    out_since: BTreeMap<ServerId, SystemTime>,
    /// Each server's time out of the pool in this run, in seconds.
    out_secs: BTreeMap<ServerId, f64>,
    /// The end: its time, counts, duration and verdict.
    finished: Option<(SystemTime, Summary, f64, Verdict)>,
}

fn secs_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).map_or(0.0, |d| d.as_secs_f64())
}

impl Observer for Metrics {
    fn record(&mut self, record: &Record) {
        match &record.event {
            // The server's own records; a proxy's answer is one part of them.
            Event::Pool {
                server,
                proxy: None,
                action: PoolAction::Depool,
                phase: PoolPhase::Intent,
                ..
            } => {
                self.out_since.entry(server.clone()).or_insert(record.ts);
                self.out_secs.entry(server.clone()).or_insert(0.0);
            }
            Event::Pool {
                server,
                proxy: None,
                action: PoolAction::Repool,
                phase: PoolPhase::Result,
                ok: Some(true),
                ..
            } => {
                if let Some(since) = self.out_since.remove(server) {
                    *self.out_secs.entry(server.clone()).or_insert(0.0) +=
                        secs_between(since, record.ts);
                }
            }
            Event::DeployFinished {
                summary,
                duration_s,
                verdict,
            } => {
                // Servers still out (kept out, left out) count until the end.
                for (server, since) in std::mem::take(&mut self.out_since) {
                    *self.out_secs.entry(server).or_insert(0.0) += secs_between(since, record.ts);
                }
                self.finished = Some((record.ts, *summary, *duration_s, *verdict));
            }
            _ => {}
        }
    }
}

/// The `mwdeploy_deploys_total` counts in a previous file's text, by exit code.
fn totals(previous: &str) -> BTreeMap<String, u64> {
    previous
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("mwdeploy_deploys_total{exit_code=\"")?;
            let (code, rest) = rest.split_once("\"} ")?;
            Some((code.to_string(), rest.trim().parse().ok()?))
        })
        .collect()
}

impl Metrics {
    /// The metrics of run `id` as its journal in `state_dir` records them.
    pub fn of_journal(
        state_dir: &Path,
        id: &str,
    ) -> Result<Metrics, mwdeploy_runtime::journal::JournalError> {
        use mwdeploy_runtime::journal;
        let read = journal::read(&journal::path(state_dir, id))?;
        let mut m = Metrics::default();
        for r in &read.records {
            m.record(r);
        }
        Ok(m)
    }

    /// Whether the run ended (only then is there a last deploy to describe).
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// The file's text, given the text of the file it replaces (for the totals).
    pub fn text(&self, previous: &str) -> String {
        let mut totals = totals(previous);
        let mut t = String::new();
        let family = |t: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(t, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        if let Some((ts, summary, duration, verdict)) = &self.finished {
            let code = verdict.journal_code();
            *totals.entry(code.to_string()).or_insert(0) += 1;
            family(
                &mut t,
                "mwdeploy_last_deploy_timestamp_seconds",
                "gauge",
                "When the last deploy ended (Unix time).",
            );
            let _ = writeln!(
                t,
                "mwdeploy_last_deploy_timestamp_seconds {}",
                secs_between(UNIX_EPOCH, *ts)
            );
            family(
                &mut t,
                "mwdeploy_last_deploy_duration_seconds",
                "gauge",
                "How long the last deploy took.",
            );
            let _ = writeln!(t, "mwdeploy_last_deploy_duration_seconds {duration}");
            family(
                &mut t,
                "mwdeploy_last_deploy_exit_code",
                "gauge",
                "The last deploy's exit code (0 done, 1 failed, 3 refused, 130 interrupted).",
            );
            let _ = writeln!(t, "mwdeploy_last_deploy_exit_code {code}");
            family(
                &mut t,
                "mwdeploy_last_deploy_servers",
                "gauge",
                "The last deploy's servers by outcome.",
            );
            for (outcome, n) in [
                ("succeeded", summary.succeeded),
                ("warned", summary.warned),
                ("failed", summary.failed),
                ("rolled_back", summary.rolled_back),
                ("skipped", summary.skipped),
            ] {
                let _ = writeln!(
                    t,
                    "mwdeploy_last_deploy_servers{{outcome=\"{outcome}\"}} {n}"
                );
            }
            family(
                &mut t,
                "mwdeploy_server_out_of_service_seconds",
                "gauge",
                "Each server's time out of the pool in the last deploy.",
            );
            for (server, secs) in &self.out_secs {
                let _ = writeln!(
                    t,
                    "mwdeploy_server_out_of_service_seconds{{server=\"{server}\"}} {secs:.3}"
                );
            }
        }
        family(
            &mut t,
            "mwdeploy_deploys_total",
            "counter",
            "Deploys run from this state dir, by exit code.",
        );
        for (code, n) in &totals {
            let _ = writeln!(t, "mwdeploy_deploys_total{{exit_code=\"{code}\"}} {n}");
        }
        t
    }

    /// Rewrites `path` atomically with [`text`](Self::text): a new file beside it
    /// (mode 0644, for the exporter), synced, renamed over it.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let previous = std::fs::read_to_string(path).unwrap_or_default();
        let text = self.text(&previous);
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::other("metrics_file names no file"))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all());
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }
}
