//! The dashboard's state: every event of a deploy folded into what the screen shows.
//!
//! Pure: no IO and no clock. Times come from the records (`ts`) or are passed in.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use mwdeploy_core::event::{Event, PoolAction, PoolPhase, PrepStatus, Record, Summary};
use mwdeploy_core::{HookPoint, Layout, ServerStatus};

use mwdeploy_core::text::Clean;

/// Log lines kept per server for the full-log view.
pub const LOG_LINES: usize = 500;

/// Remote or operator text as a terminal would show it, without its control sequences:
/// escape sequences (colours, cursor moves, titles) dropped, a line redrawn with `\r` (a
/// progress meter) kept from its last redraw, tabs as spaces, any other control character
/// as `?` ([`Clean`]).
pub fn clean(text: &str) -> String {
    let text = text.trim_end_matches(['\r', '\n']);
    let text = text.rsplit('\r').find(|s| !s.is_empty()).unwrap_or("");
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte.
                Some('[') => skip_csi(&mut chars),
                // OSC, DCS, APC, PM, SOS: up to BEL or ST (ESC \).
                Some(']' | 'P' | '_' | '^' | 'X') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                // A two-character sequence (or a lone ESC at the end).
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    Clean(&out).to_string()
}

fn skip_csi(chars: &mut impl Iterator<Item = char>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            break;
        }
    }
}

/// One preparation step (a pull, a patch, l10n, the staging sync or canary).
#[derive(Debug, Clone, PartialEq)]
pub struct PrepRow {
    /// The step's name as the engine gives it (`staging_canary`).
    pub step: String,
    /// Its latest state.
    pub status: PrepStatus,
    /// When it started running (or was first seen).
    pub started: SystemTime,
    /// When it ended (ok, failed or warned).
    pub ended: Option<SystemTime>,
    /// What was seen, cleaned.
    pub detail: Option<String>,
    /// Incoming commits of a pull.
    pub commits: usize,
}

impl PrepRow {
    /// How long it took, or has been running at `now`.
    pub fn duration(&self, now: SystemTime) -> Duration {
        since(self.started, self.ended.unwrap_or(now))
    }
}

/// One line of a server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When it happened.
    pub ts: SystemTime,
    /// The text, cleaned.
    pub text: String,
}

/// Why a server failed, for the failure prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCause {
    /// The failing step was the canary.
    pub canary: bool,
    /// `HTTP 502`, a hook's error, the state's detail.
    pub reason: String,
}

/// One server of the deploy.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRow {
    /// Its name.
    pub name: String,
    /// Its state.
    pub state: ServerStatus,
    /// The detail of its latest state, cleaned.
    pub detail: Option<String>,
    /// When its current run started (it left `pending`).
    pub since: Option<SystemTime>,
    /// When it reached a final state.
    pub ended: Option<SystemTime>,
    /// The running step of the latest progress report (`copy`).
    pub step: Option<String>,
    /// Percent done of that step.
    pub percent: Option<f32>,
    /// Its rate as the tool printed it.
    pub rate: Option<String>,
    /// Why its run failed, if it did.
    pub failure: Option<FailureCause>,
    /// The latest lines, oldest first, at most [`LOG_LINES`].
    pub log: VecDeque<LogLine>,
}

impl ServerRow {
    fn new(name: String) -> ServerRow {
        ServerRow {
            name,
            state: ServerStatus::Pending,
            detail: None,
            since: None,
            ended: None,
            step: None,
            percent: None,
            rate: None,
            failure: None,
            log: VecDeque::new(),
        }
    }

    /// How long its run has taken at `now` (frozen once it ended); `None` before it started.
    pub fn elapsed(&self, now: SystemTime) -> Option<Duration> {
        self.since.map(|s| since(s, self.ended.unwrap_or(now)))
    }

    /// The newest log line.
    pub fn last_line(&self) -> Option<&LogLine> {
        self.log.back()
    }

    fn push_log(&mut self, ts: SystemTime, text: String) {
        if self.log.len() == LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(LogLine { ts, text });
    }
}

/// An open question for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenPrompt {
    /// Counts prompts: an answer names the prompt it was meant for.
    pub seq: u64,
    /// The engine's question, cleaned.
    pub question: String,
    /// When it was asked.
    pub asked: SystemTime,
    /// The row of the server whose failure led to it, if it follows a failure.
    pub server: Option<usize>,
}

/// The end of the deploy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finished {
    /// Counts by final state.
    pub summary: Summary,
    /// How it ended.
    pub verdict: mwdeploy_core::Verdict,
    /// How long the deploy took.
    pub duration: Duration,
}

/// A manual pool change asked from the dashboard, waiting for its result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolRequest {
    server: String,
    depool: bool,
}

/// Everything the dashboard shows, folded from the deploy's records.
#[derive(Debug, Clone)]
pub struct Dashboard {
    deploy_id: String,
    message: Option<String>,
    layout: Option<Layout>,
    prep: Vec<PrepRow>,
    prep_index: HashMap<String, usize>,
    stage: Option<(u32, usize)>,
    rows: Vec<ServerRow>,
    index: HashMap<String, usize>,
    finals: usize,
    last_failed: Option<usize>,
    prompt_seq: u64,
    prompt: Option<OpenPrompt>,
    stopping: Option<String>,
    notice: Option<String>,
    pool_request: Option<PoolRequest>,
    finished: Option<Finished>,
    ended: bool,
}

impl Dashboard {
    /// A dashboard for `servers`, all pending. `DeployStarted` fills in what is not known
    /// yet (an empty id, no message, servers not listed).
    pub fn new(deploy_id: String, message: Option<String>, servers: Vec<String>) -> Self {
        let mut dash = Dashboard {
            deploy_id,
            message: message.map(|m| clean(&m)),
            layout: None,
            prep: Vec::new(),
            prep_index: HashMap::new(),
            stage: None,
            rows: Vec::with_capacity(servers.len()),
            index: HashMap::with_capacity(servers.len()),
            finals: 0,
            last_failed: None,
            prompt_seq: 0,
            prompt: None,
            stopping: None,
            notice: None,
            pool_request: None,
            finished: None,
            ended: false,
        };
        for s in servers {
            dash.row(&s);
        }
        dash
    }

    /// The row of `server`, added at the end if it is new.
    fn row(&mut self, server: &str) -> usize {
        if let Some(&i) = self.index.get(server) {
            return i;
        }
        let i = self.rows.len();
        self.rows.push(ServerRow::new(server.to_string()));
        self.index.insert(server.to_string(), i);
        i
    }

    /// Folds one record in. Costs O(1) per event, apart from the lists the event carries.
    pub fn apply(&mut self, record: &Record) {
        let ts = record.ts;
        if self.deploy_id.is_empty() {
            self.deploy_id = clean(&record.deploy);
        }
        match &record.event {
            Event::DeployStarted {
                servers,
                layout,
                message,
                ..
            } => {
                self.layout = Some(*layout);
                if let Some(m) = message {
                    self.message = Some(clean(m));
                }
                for s in servers {
                    self.row(s.as_str());
                }
            }
            Event::PrepStep {
                step,
                status,
                detail,
                commits,
            } => self.prep_step(ts, step, *status, detail.as_deref(), commits.len()),
            Event::StageStarted { stage, servers } => {
                self.stage = Some((*stage, servers.len()));
                for s in servers {
                    self.row(s.as_str());
                }
            }
            Event::StageFinished { .. } => {}
            Event::ServerState {
                server,
                state,
                detail,
            } => self.server_state(ts, server.as_str(), *state, detail.as_deref()),
            Event::Progress {
                server,
                step,
                percent,
                rate,
                line,
            } => self.progress(
                ts,
                server.as_str(),
                step,
                *percent,
                rate.as_deref(),
                line.as_deref(),
            ),
            Event::Pool {
                server,
                proxy,
                backend,
                action,
                phase,
                ok,
                detail,
            } => self.pool_change(
                ts,
                server.as_str(),
                proxy.as_deref(),
                backend.as_deref(),
                *action,
                *phase,
                *ok,
                detail.as_deref(),
            ),
            Event::Canary {
                server,
                attempt,
                ok,
                status,
                detail,
            } => self.canary_attempt(ts, server.as_str(), *attempt, *ok, *status, detail),
            Event::Hook {
                server,
                hook,
                ok,
                detail,
            } => self.hook_ran(ts, server.as_str(), *hook, *ok, detail.as_deref()),
            Event::Rollback {
                server,
                from,
                to,
                ok,
            } => {
                let i = self.row(server.as_str());
                let text = match (ok, to) {
                    (true, Some(to)) => format!("rolled back from {from} to {to}"),
                    (true, None) => format!("rolled back from {from}"),
                    (false, _) => format!("rollback from {from} failed"),
                };
                self.rows[i].push_log(ts, text);
            }
            Event::Prompt { question, answer } => {
                self.prompt_event(ts, question, answer.as_deref())
            }
            Event::Warning { server, detail } => {
                self.warning(ts, server.as_ref().map(|s| s.as_str()), detail)
            }
            Event::Stopping { reason, detail } => {
                self.stopping = Some(format!("{reason}: {}", clean(detail)));
            }
            Event::DeployFinished {
                summary,
                duration_s,
                verdict,
            } => {
                self.prompt = None;
                self.finished = Some(Finished {
                    summary: *summary,
                    verdict: *verdict,
                    duration: Duration::try_from_secs_f64(*duration_s).unwrap_or_default(),
                });
            }
            _ => {}
        }
    }

    /// A step's progress: its name, percentage, rate, a line of its output.
    fn progress(
        &mut self,
        ts: SystemTime,
        server: &str,
        step: &str,
        percent: Option<f32>,
        rate: Option<&str>,
        line: Option<&str>,
    ) {
        let i = self.row(server);
        let row = &mut self.rows[i];
        row.step = Some(clean(step));
        if percent.is_some() {
            row.percent = percent.map(|p| p.clamp(0.0, 100.0));
        }
        if rate.is_some() {
            row.rate = rate.map(clean);
        }
        if let Some(l) = line {
            row.push_log(ts, clean(l));
        }
    }

    /// A pool change's intent or result on one proxy: the server's log, and the notice
    /// when it answers a change asked here.
    #[allow(clippy::too_many_arguments)]
    fn pool_change(
        &mut self,
        ts: SystemTime,
        server: &str,
        proxy: Option<&str>,
        backend: Option<&str>,
        action: PoolAction,
        phase: PoolPhase,
        ok: Option<bool>,
        detail: Option<&str>,
    ) {
        let verb = match action {
            PoolAction::Depool => "depool",
            PoolAction::Repool => "repool",
        };
        let place = match (proxy, backend) {
            (Some(p), Some(b)) => format!(" on {}/{}", clean(p), clean(b)),
            (Some(p), None) => format!(" on {}", clean(p)),
            (None, Some(b)) => format!(" in {}", clean(b)),
            (None, None) => String::new(),
        };
        let text = match (phase, ok) {
            (PoolPhase::Intent, _) => format!("{verb}{place}…"),
            (PoolPhase::Result, Some(true)) => format!("{verb}{place}: confirmed"),
            (PoolPhase::Result, _) => format!(
                "{verb}{place} failed: {}",
                detail.map(clean).unwrap_or_else(|| "?".into())
            ),
        };
        let i = self.row(server);
        // The results of a change asked here (one per proxy) become the notice,
        // until the server's pool is changed the other way.
        let depool = action == PoolAction::Depool;
        let asked = self
            .pool_request
            .as_ref()
            .and_then(|r| (r.server == server).then_some(r.depool == depool));
        match (asked, phase) {
            (Some(true), PoolPhase::Result) => {
                self.notice = Some(format!("{}: {text}", server));
            }
            (Some(false), PoolPhase::Intent) => self.pool_request = None,
            _ => {}
        }
        self.rows[i].push_log(ts, text);
    }

    /// A canary attempt: the log, and why the server failed when it did.
    fn canary_attempt(
        &mut self,
        ts: SystemTime,
        server: &str,
        attempt: u32,
        ok: bool,
        status: Option<u16>,
        detail: &str,
    ) {
        let i = self.row(server);
        let row = &mut self.rows[i];
        let detail = clean(detail);
        if ok {
            row.push_log(ts, format!("canary attempt {attempt} passed"));
        } else {
            let reason = match status {
                Some(s) => format!("HTTP {s}"),
                None if detail.is_empty() => "no answer".to_string(),
                None => detail.clone(),
            };
            row.push_log(ts, format!("canary attempt {attempt} failed: {detail}"));
            row.failure = Some(FailureCause {
                canary: true,
                reason,
            });
        }
    }

    /// A hook ran: the log, and why the server failed when it did.
    fn hook_ran(
        &mut self,
        ts: SystemTime,
        server: &str,
        hook: HookPoint,
        ok: bool,
        detail: Option<&str>,
    ) {
        let i = self.row(server);
        let row = &mut self.rows[i];
        if ok {
            row.push_log(ts, format!("hooks {hook} passed"));
        } else {
            let d = detail.map(clean).unwrap_or_else(|| "?".into());
            row.push_log(ts, format!("hooks {hook} failed: {d}"));
            row.failure = Some(FailureCause {
                canary: false,
                reason: format!("{hook} hook: {d}"),
            });
        }
    }

    /// A prompt opened, or was answered.
    fn prompt_event(&mut self, ts: SystemTime, question: &str, answer: Option<&str>) {
        match answer {
            None => {
                self.prompt_seq += 1;
                self.prompt = Some(OpenPrompt {
                    seq: self.prompt_seq,
                    question: clean(question),
                    asked: ts,
                    server: self.last_failed.filter(|_| is_failure_question(question)),
                });
            }
            Some(a) => {
                self.prompt = None;
                self.notice = Some(format!("answered {}: {}", clean(a), clean(question)));
            }
        }
    }

    /// A warning: on its server's log (and the notice for the pool menu's answers), or
    /// the notice.
    fn warning(&mut self, ts: SystemTime, server: Option<&str>, detail: &str) {
        match server {
            Some(s) => {
                let i = self.row(s);
                self.rows[i].push_log(ts, format!("warning: {}", clean(detail)));
                // The pool menu's answer (done, or why not) shows on the main screen,
                // and ends the request: the deploy's own pool changes of the server
                // after it are not its result.
                if detail.starts_with("pool: ") {
                    self.notice = Some(clean(detail));
                    self.pool_request = None;
                }
            }
            None => self.notice = Some(format!("warning: {}", clean(detail))),
        }
    }

    fn prep_step(
        &mut self,
        ts: SystemTime,
        step: &str,
        status: PrepStatus,
        detail: Option<&str>,
        commits: usize,
    ) {
        let i = match self.prep_index.get(step) {
            Some(&i) => i,
            None => {
                self.prep.push(PrepRow {
                    step: clean(step),
                    status,
                    started: ts,
                    ended: None,
                    detail: None,
                    commits: 0,
                });
                self.prep_index
                    .insert(step.to_string(), self.prep.len() - 1);
                self.prep.len() - 1
            }
        };
        let row = &mut self.prep[i];
        if status == PrepStatus::Running {
            // A step run again (a retry) counts from its new start.
            if row.ended.is_some() {
                row.started = ts;
                row.ended = None;
            }
        } else {
            row.ended = Some(ts);
        }
        row.status = status;
        if let Some(d) = detail {
            row.detail = Some(clean(d));
        }
        row.commits = row.commits.max(commits);
    }

    fn server_state(
        &mut self,
        ts: SystemTime,
        server: &str,
        state: ServerStatus,
        detail: Option<&str>,
    ) {
        let i = self.row(server);
        let row = &mut self.rows[i];
        let was = row.state;
        let starts = !matches!(state, ServerStatus::Pending)
            && !state.is_final()
            && (was == ServerStatus::Pending || was.is_final());
        if starts {
            row.since = Some(ts);
            row.ended = None;
            row.failure = None;
        }
        if state.is_final() {
            row.ended = Some(ts);
            // A server that never ran (skipped) has no elapsed time.
            if row.since.is_none() && state != ServerStatus::Skipped {
                row.since = Some(ts);
            }
        }
        match (was.is_final(), state.is_final()) {
            (false, true) => self.finals += 1,
            (true, false) => self.finals -= 1,
            _ => {}
        }
        row.state = state;
        row.detail = detail.map(clean);
        row.step = None;
        row.percent = None;
        row.rate = None;
        let words = state_words(state);
        let text = match &row.detail {
            Some(d) => format!("{words}: {d}"),
            None => words.to_string(),
        };
        if matches!(state, ServerStatus::Failed | ServerStatus::RolledBack) {
            if row.failure.is_none() {
                row.failure = Some(FailureCause {
                    canary: false,
                    reason: row.detail.clone().unwrap_or_else(|| words.to_string()),
                });
            }
            self.last_failed = Some(i);
        }
        if state == ServerStatus::Warned {
            self.last_failed = Some(i);
        }
        row.push_log(ts, text);
    }

    /// Notes a manual pool change asked from the dashboard: its result becomes the notice.
    pub fn pool_requested(&mut self, server: &str, depool: bool) {
        let verb = if depool { "depool" } else { "repool" };
        self.notice = Some(format!("{server}: {verb} asked…"));
        self.pool_request = Some(PoolRequest {
            server: server.to_string(),
            depool,
        });
    }

    /// Sets the notice line (what the dashboard itself did).
    pub fn set_notice(&mut self, text: String) {
        self.notice = Some(text);
    }

    /// The deploy's id.
    pub fn deploy_id(&self) -> &str {
        &self.deploy_id
    }

    /// The operator's message.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The preparation steps, in the order they first ran.
    pub fn prep(&self) -> &[PrepRow] {
        &self.prep
    }

    /// The current stage and its number of servers.
    pub fn stage(&self) -> Option<(u32, usize)> {
        self.stage
    }

    /// The servers, in the deploy's order.
    pub fn rows(&self) -> &[ServerRow] {
        &self.rows
    }

    /// Servers in a final state.
    pub fn done_count(&self) -> usize {
        self.finals
    }

    /// The open prompt.
    pub fn prompt(&self) -> Option<&OpenPrompt> {
        self.prompt.as_ref()
    }

    /// Why the deploy is stopping, once it is.
    pub fn stopping(&self) -> Option<&str> {
        self.stopping.as_deref()
    }

    /// The latest notice (a pool result, an answer, a warning).
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// Notes that no more records come (the deploy is over, with or without its last event).
    pub fn mark_ended(&mut self) {
        self.ended = true;
        self.prompt = None;
    }

    /// Whether the deploy is over: its last event came, or the records ended.
    pub fn is_over(&self) -> bool {
        self.ended || self.finished.is_some()
    }

    /// The end, once the deploy ended.
    pub fn finished(&self) -> Option<&Finished> {
        self.finished.as_ref()
    }

    /// The text of the failure prompt: `Canary failed on mw2 (HTTP 502). Continue?` when it
    /// follows a server's failure, else the engine's question. The second value, in the release
    /// layout, says that the server was rolled back.
    pub fn prompt_text(&self, p: &OpenPrompt) -> (String, Option<String>) {
        let Some(row) = p.server.map(|i| &self.rows[i]) else {
            return (p.question.clone(), None);
        };
        let main = match &row.failure {
            // The engine's question already says it.
            _ if p.question.starts_with("Canary failed on") => p.question.clone(),
            Some(FailureCause {
                canary: true,
                reason,
            }) => format!("Canary failed on {} ({reason}). Continue?", row.name),
            Some(FailureCause { reason, .. }) => {
                format!("{} failed ({reason}). Continue?", row.name)
            }
            None => format!("{} failed. Continue?", row.name),
        };
        let note = (row.state == ServerStatus::RolledBack).then(|| {
            format!(
                "{} was rolled back: the previous release is live and it is back in the pool.",
                row.name
            )
        });
        (main, note)
    }
}

/// Whether a question follows a failure (not a stage approval).
fn is_failure_question(question: &str) -> bool {
    question.contains("failed")
}

/// A state in words, for logs and the row's label.
pub fn state_words(s: ServerStatus) -> &'static str {
    match s {
        ServerStatus::Pending => "pending",
        ServerStatus::Copying => "copying",
        ServerStatus::Depooling => "depooling",
        ServerStatus::Transferring => "transferring",
        ServerStatus::Activating => "activating",
        ServerStatus::Hooks => "hooks",
        ServerStatus::Canary => "canary",
        ServerStatus::Repooling => "repooling",
        ServerStatus::Baking => "baking",
        ServerStatus::RollingBack => "rolling back",
        ServerStatus::Done => "done",
        ServerStatus::Warned => "warned",
        ServerStatus::Failed => "failed",
        ServerStatus::RolledBack => "rolled back",
        ServerStatus::Skipped => "skipped",
    }
}

/// `to - from`, zero if the clock went back.
pub fn since(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or_default()
}
