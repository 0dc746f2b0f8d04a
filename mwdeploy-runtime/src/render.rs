//! Events as output lines: JSON lines (`--json`, the journal's schema) and plain lines.
//!
//! Both renderers write into a [`Sink`] (a `Vec<u8>`, or the command's buffered stdout)
//! and never flush: the caller flushes once at the end. They keep small caches (the timestamp of the last instant, one buffer) so
//! a run of millions of events allocates almost nothing per line.

use std::fmt;
use std::io;
use std::time::{Duration, SystemTime};

use mwdeploy_core::event::{PoolAction, PrepStatus};
use mwdeploy_core::text::{count, Clean, SummaryText};
use mwdeploy_core::{Event, ServerId};

/// Where rendered lines go.
pub trait Sink {
    /// Writes `bytes` as they are.
    fn bytes(&mut self, bytes: &[u8]);
    /// Writes formatted text (use with `format_args!`).
    fn fmt(&mut self, args: fmt::Arguments<'_>);
    /// An error while preparing output (serializing, say); the default drops it.
    fn fail(&mut self, e: io::Error) {
        let _ = e;
    }
}

impl Sink for Vec<u8> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn fmt(&mut self, args: fmt::Arguments<'_>) {
        let _ = io::Write::write_fmt(self, args);
    }
}

/// Renders events as one JSON object per line: `ts`, `deploy`, then the event's fields.
#[derive(Debug)]
pub struct JsonLines {
    /// The deploy id, already encoded as a JSON string.
    deploy: String,
    /// The last instant formatted, and its text: events come in bursts at one instant.
    ts_at: Option<SystemTime>,
    ts: String,
    buf: Vec<u8>,
}

impl JsonLines {
    /// A renderer for the events of deploy `deploy_id`.
    pub fn new(deploy_id: &str) -> Self {
        JsonLines {
            deploy: serde_json::Value::from(deploy_id).to_string(),
            ts_at: None,
            ts: String::new(),
            buf: Vec::with_capacity(512),
        }
    }

    /// Writes `event`, which happened at `at`, as one line.
    pub fn event<S: Sink + ?Sized>(&mut self, out: &mut S, event: &Event, at: SystemTime) {
        self.buf.clear();
        // The core's events serialize as `{"event":"...",...}`: the tag comes first.
        match serde_json::to_writer(&mut self.buf, event) {
            Ok(()) => self.line(out, at, None),
            Err(e) => out.fail(e.into()),
        }
    }

    /// Writes `object` (a JSON object whose `event` field names it) as one line, with
    /// `event` right after `ts` and `deploy` whatever order the map keeps its keys in.
    pub fn object<S: Sink + ?Sized>(
        &mut self,
        out: &mut S,
        mut object: serde_json::Map<String, serde_json::Value>,
        at: SystemTime,
    ) {
        let event = object.remove("event");
        self.buf.clear();
        match serde_json::to_writer(&mut self.buf, &object) {
            Ok(()) => self.line(out, at, event.as_ref()),
            Err(e) => out.fail(e.into()),
        }
    }

    /// `{"ts":..,"deploy":..,`, then `"event":..,` when given, then `self.buf` without its `{`.
    ///
    /// Splicing the bytes keeps `ts` and `deploy` first without serde_json's
    /// `preserve_order` feature, and costs no intermediate map per event.
    fn line<S: Sink + ?Sized>(
        &mut self,
        out: &mut S,
        at: SystemTime,
        event: Option<&serde_json::Value>,
    ) {
        if self.ts_at != Some(at) {
            self.ts.clear();
            fmt::Write::write_fmt(
                &mut self.ts,
                format_args!("{}", humantime::format_rfc3339_millis(at)),
            )
            .expect("formatting into a String does not fail");
            self.ts_at = Some(at);
        }
        out.bytes(b"{\"ts\":\"");
        out.bytes(self.ts.as_bytes());
        out.bytes(b"\",\"deploy\":");
        out.bytes(self.deploy.as_bytes());
        if let Some(event) = event {
            out.fmt(format_args!(",\"event\":{event}"));
        }
        let rest = self.buf.get(1..).unwrap_or_default();
        if rest != b"}" {
            out.bytes(b",");
        }
        out.bytes(rest);
        out.bytes(b"\n");
    }
}

/// Renders the events an operator reads as plain lines: server states, stages,
/// prompts, stops, preparation steps, warnings and the end; pool commands, canary
/// attempts, hooks and progress are left to `--json`.
#[derive(Debug, Default)]
pub struct PlainLines;

impl PlainLines {
    /// Writes `event`, `at` after the start, if it is one an operator reads.
    pub fn event<S: Sink + ?Sized>(&mut self, out: &mut S, event: &Event, at: Duration) {
        let t = at.as_secs_f64();
        match event {
            Event::DeployStarted {
                servers,
                release,
                layout,
                ..
            } => out.fmt(format_args!(
                "{t:>9.1}s  deploy started: {release} to {}, {layout} layout\n",
                count(servers.len(), "server"),
            )),
            Event::PrepStep {
                step,
                status,
                detail,
                commits,
            } => {
                out.fmt(format_args!(
                    "{t:>9.1}s  {}: {}",
                    Clean(step),
                    prep_status(*status)
                ));
                match detail {
                    Some(d) => out.fmt(format_args!(" ({})\n", Clean(d))),
                    None => out.bytes(b"\n"),
                }
                // What was fetched, so the operator can check it is what was merged.
                for c in commits {
                    out.fmt(format_args!("{:>12}{}\n", "", Clean(c)));
                }
            }
            Event::StageStarted { stage, servers } => out.fmt(format_args!(
                "{t:>9.1}s  stage {stage} started: {}{}\n",
                count(servers.len(), "server"),
                Span(servers),
            )),
            Event::StageFinished { stage } => {
                out.fmt(format_args!("{t:>9.1}s  stage {stage} finished\n"))
            }
            Event::ServerState {
                server,
                state,
                detail,
            } => server_line(out, t, server, state.as_str(), detail.as_deref()),
            // Failed steps: what explains the state that follows.
            Event::Canary {
                server,
                attempt,
                ok: false,
                detail,
                ..
            } => {
                let detail = format!("attempt {attempt} failed: {detail}");
                server_line(out, t, server, "canary", Some(&detail));
            }
            Event::Hook {
                server,
                hook,
                ok: false,
                detail,
            } => {
                let detail = format!("{hook} failed: {}", detail.as_deref().unwrap_or("?"));
                server_line(out, t, server, "hooks", Some(&detail));
            }
            Event::Rollback {
                server, ok: false, ..
            } => server_line(out, t, server, "rolling_back", Some("rollback failed")),
            Event::Pool {
                server,
                proxy: None,
                action,
                ok: Some(false),
                detail,
                ..
            } => {
                let what = match action {
                    PoolAction::Depool => "depool",
                    PoolAction::Repool => "repool",
                };
                let detail = format!("{what} failed: {}", detail.as_deref().unwrap_or("?"));
                server_line(out, t, server, "pool", Some(&detail));
            }
            Event::Prompt { question, answer } => match answer {
                None => out.fmt(format_args!("{t:>9.1}s  prompt: {}\n", Clean(question))),
                Some(a) => out.fmt(format_args!(
                    "{t:>9.1}s  prompt answered {}: {}\n",
                    Clean(a),
                    Clean(question)
                )),
            },
            Event::Stopping { reason, detail } => out.fmt(format_args!(
                "{t:>9.1}s  stopping ({reason}): {}\n",
                Clean(detail)
            )),
            Event::Warning { server, detail } => match server {
                Some(s) => server_line(out, t, s, "warning", Some(detail)),
                None => out.fmt(format_args!("{t:>9.1}s  warning: {}\n", Clean(detail))),
            },
            Event::DeployFinished {
                summary, verdict, ..
            } => out.fmt(format_args!(
                "{t:>9.1}s  deploy finished: {}; exit code {}\n",
                SummaryText(summary),
                verdict.journal_code()
            )),
            _ => {}
        }
    }
}

/// `  12.3s  mw00004   canary        attempt 2 failed: ...`
fn server_line<S: Sink + ?Sized>(
    out: &mut S,
    t: f64,
    server: &ServerId,
    what: &str,
    detail: Option<&str>,
) {
    match detail {
        // ServerId's Display ignores width: pad its text.
        Some(d) => out.fmt(format_args!(
            "{t:>9.1}s  {:<8}  {what:<12}  {}\n",
            server.as_str(),
            Clean(d)
        )),
        None => out.fmt(format_args!("{t:>9.1}s  {:<8}  {what}\n", server.as_str())),
    }
}

fn prep_status(s: PrepStatus) -> &'static str {
    match s {
        PrepStatus::Running => "running",
        PrepStatus::Ok => "ok",
        PrepStatus::Failed => "failed",
        PrepStatus::Warned => "warned",
    }
}

/// ` (mw1)`, ` (mw1, mw2)`, ` (mw1 .. mw9)`: a stage's servers without listing thousands.
struct Span<'a>(&'a [ServerId]);

impl fmt::Display for Span<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => Ok(()),
            [one] => write!(f, " ({one})"),
            [a, b] => write!(f, " ({a}, {b})"),
            [first, .., last] => write!(f, " ({first} .. {last})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mwdeploy_core::ServerStatus;

    fn render(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn server_state(detail: Option<&str>) -> Event {
        Event::ServerState {
            server: ServerId::new("mw00004").unwrap(),
            state: ServerStatus::Canary,
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn json_lines_start_with_ts_and_deploy() {
        let at = mwdeploy_sim::sim_epoch() + Duration::from_millis(12_345);
        let text = render(|out| {
            let mut j = JsonLines::new("sim-\"7\"");
            j.event(out, &server_state(Some("attempt 2")), at);
            j.event(out, &Event::StageFinished { stage: 1 }, at);
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with(
                r#"{"ts":"2026-01-01T00:00:12.345Z","deploy":"sim-\"7\"","event":"server_state","#
            ),
            "{}",
            lines[0]
        );
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["deploy"], "sim-\"7\"");
        }
    }

    /// The journal writes `mwdeploy_core::event::Record`s: `--json` lines must be the same
    /// bytes, so that one reader handles both.
    #[test]
    fn json_lines_are_the_journal_s_records() {
        let at = mwdeploy_sim::sim_epoch() + Duration::from_millis(1_500);
        let events = [
            server_state(Some("attempt 2")),
            server_state(None),
            Event::StageFinished { stage: 3 },
            Event::Prompt {
                question: "go on?".into(),
                answer: None,
            },
        ];
        let text = render(|out| {
            let mut j = JsonLines::new("d-1");
            for e in &events {
                j.event(out, e, at);
            }
        });
        for (line, event) in text.lines().zip(&events) {
            let record = mwdeploy_core::event::Record {
                ts: at,
                deploy: "d-1".into(),
                event: event.clone(),
            };
            assert_eq!(line, serde_json::to_string(&record).unwrap());
        }
        assert_eq!(text.lines().count(), events.len());
    }

    #[test]
    fn json_objects_put_the_event_first() {
        let at = mwdeploy_sim::sim_epoch();
        let serde_json::Value::Object(map) =
            serde_json::json!({"a": 1, "event": "simulation_report", "z": [1]})
        else {
            unreachable!()
        };
        let text = render(|out| JsonLines::new("d").object(out, map, at));
        assert_eq!(
            text,
            "{\"ts\":\"2026-01-01T00:00:00.000Z\",\"deploy\":\"d\",\"event\":\"simulation_report\",\"a\":1,\"z\":[1]}\n"
        );
    }

    #[test]
    fn plain_lines_show_server_states_and_failures_and_skip_noise() {
        let mw4 = ServerId::new("mw00004").unwrap();
        let canary = |ok| Event::Canary {
            server: mw4.clone(),
            attempt: 2,
            ok,
            status: Some(if ok { 200 } else { 500 }),
            detail: "HTTP 500".into(),
        };
        let text = render(|out| {
            let mut p = PlainLines;
            p.event(
                out,
                &server_state(Some("waiting:\x1b[31m red")),
                Duration::from_millis(12_300),
            );
            p.event(out, &canary(true), Duration::from_secs(13));
            p.event(out, &canary(false), Duration::from_secs(14));
            p.event(
                out,
                &Event::StageStarted {
                    stage: 2,
                    servers: vec![mw4.clone()],
                },
                Duration::from_secs(15),
            );
        });
        assert_eq!(
            text,
            "     12.3s  mw00004   canary        waiting:?[31m red\n\
             \x20    14.0s  mw00004   canary        attempt 2 failed: HTTP 500\n\
             \x20    15.0s  stage 2 started: 1 server (mw00004)\n"
        );
    }

    #[test]
    fn clean_replaces_control_characters() {
        assert_eq!(Clean("a\rb\u{9b}c\u{7}").to_string(), "a?b?c?");
        assert_eq!(Clean("plain ünïcode").to_string(), "plain ünïcode");
    }

    #[test]
    fn spans_stay_short() {
        let ids: Vec<ServerId> = (1..=5)
            .map(|n| ServerId::new(&format!("mw{n}")).unwrap())
            .collect();
        assert_eq!(Span(&ids[..1]).to_string(), " (mw1)");
        assert_eq!(Span(&ids[..2]).to_string(), " (mw1, mw2)");
        assert_eq!(Span(&ids).to_string(), " (mw1 .. mw5)");
    }
}
