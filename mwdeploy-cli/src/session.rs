//! One run of the engine by the command (a deploy, a rollback, a recovery): its journal
//! and log file, its output, its signals, and the driver loop with the operator's
//! prompts.
//!
//! ```text
//!  Session::open ──> journal (critical), log file (unless --no-log), printer,
//!                    signal watcher (SIGINT/SIGTERM ──> interrupted; SIGHUP: no terminal)
//!       │ record() / prep(): the runner's own records before the machine starts
//!       ▼
//!  Session::drive(plan, ports) ──> Driver(Rollout) ──> records ──> journal, log,
//!                                     ▲                  printer (plain | JSON lines)
//!                                     └── prompts: the operator on a terminal, else no
//!       ▼
//!  summary line, servers left out ──> the exit code
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mwdeploy_core::event::Record;
use mwdeploy_core::{Decision, Event, Plan, ReleaseId, Report, Rollout, Summary};
use mwdeploy_runtime::driver::{
    ChannelSubscriber, Driver, DriverHandle, Ports, Subscriber, SubscriberError,
};
use mwdeploy_runtime::journal::Journal;
use mwdeploy_runtime::lock::{DeployLock, Holder, LockError};
use mwdeploy_runtime::log_file::LogFile;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::CliError;
use crate::output::Output;
use crate::render::{Clean, JsonLines, PlainLines};
use crate::request::OutputMode;

/// How long a prompt on the terminal waits for an answer (no answer: no).
const PROMPT_WAIT: Duration = Duration::from_secs(300);

/// `<UTC time>-<suffix><4 hex>`: a run's id, and (for a deploy) the release id on every
/// server. `suffix` is empty for a deploy, `rollback` or `recover` otherwise.
pub(crate) fn new_id(suffix: &str) -> ReleaseId {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    let suffix = format!("{suffix}{:04x}", h.finish() & 0xffff);
    ReleaseId::at(SystemTime::now(), &suffix).expect("a letters-and-hex suffix is valid")
}

/// Takes the deploy lock of `state_dir` for `message`; a held lock (named) or an error
/// is printed and gives the exit code of a refusal.
pub(crate) fn take_lock(state_dir: &std::path::Path, message: &str) -> Result<DeployLock, i32> {
    match DeployLock::acquire(state_dir, Holder::current(message)) {
        Ok(l) => Ok(l),
        Err(e @ LockError::Held { .. }) => {
            eprintln!("mwdeploy: refused: the deploy lock {e}");
            Err(crate::exit::REFUSED)
        }
        Err(e) => {
            eprintln!("mwdeploy: cannot take the deploy lock: {e}");
            Err(crate::exit::REFUSED)
        }
    }
}

/// Shows records on stdout as the output mode says.
#[derive(Debug)]
pub(crate) struct Printer {
    json: Option<JsonLines>,
    plain: PlainLines,
    started: Instant,
    /// With the dashboard: the records shown before it opens, which it then shows too.
    kept: Option<Vec<Record>>,
}

impl Printer {
    /// A printer for the records of run `id`.
    pub(crate) fn new(mode: OutputMode, id: &str) -> Self {
        Printer {
            json: (mode == OutputMode::Json).then(|| JsonLines::new(id)),
            plain: PlainLines,
            started: Instant::now(),
            kept: None,
        }
    }

    /// Shows `record`, flushed at once.
    pub(crate) fn show<W: Write>(&mut self, out: &mut Output<W>, record: &Record) {
        if let Some(kept) = &mut self.kept {
            kept.push(record.clone());
        }
        match &mut self.json {
            Some(j) => j.event(out, &record.event, record.ts),
            None => self.plain.event(out, &record.event, self.started.elapsed()),
        }
        out.flush();
    }
}

impl<W: Write> Show for (&mut Printer, &mut Output<W>) {
    fn show(&mut self, record: &Record) {
        self.0.show(self.1, record);
    }
}

/// Shows a record on stdout (plain or JSON lines).
pub(crate) trait Show {
    /// Shows `record`.
    fn show(&mut self, record: &Record);
}

/// Records the steps of the preparation: journal, log file and output.
pub(crate) struct Prep<'a> {
    pub(crate) deploy: &'a str,
    pub(crate) journal: &'a mut Journal,
    pub(crate) log: &'a mut Option<Log>,
    pub(crate) show: &'a mut dyn Show,
    /// Set by SIGINT or SIGTERM: no new step starts.
    pub(crate) interrupted: &'a AtomicBool,
}

impl Prep<'_> {
    /// Records `event`.
    pub(crate) fn record(&mut self, event: Event) {
        let record = Record {
            ts: SystemTime::now(),
            deploy: self.deploy.to_string(),
            event,
        };
        if let Err(e) = self.journal.append(&record) {
            eprintln!("mwdeploy: journal: {e}");
        }
        if let Some(log) = self.log.as_mut() {
            // Not critical; the log file warns once itself.
            let _ = log.record(&record);
        }
        self.show.show(&record);
    }
}

impl mwdeploy_mediawiki::Steps for Prep<'_> {
    fn record(&mut self, event: Event) {
        Prep::record(self, event);
    }

    fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

/// The log file of a session: its first failed write is a warning on stderr.
pub(crate) type Log = WarnOnce<LogFile>;

/// Passes records on to `S` and warns on stderr about its first error (a subscriber the
/// deploy goes on without).
#[derive(Debug)]
pub(crate) struct WarnOnce<S> {
    inner: S,
    warned: bool,
}

impl<S> WarnOnce<S> {
    fn new(inner: S) -> Self {
        WarnOnce {
            inner,
            warned: false,
        }
    }
}

impl<S: Subscriber> Subscriber for WarnOnce<S> {
    fn record(&mut self, record: &Record) -> Result<(), SubscriberError> {
        let r = self.inner.record(record);
        if let Err(e) = &r {
            if !self.warned {
                self.warned = true;
                eprintln!("mwdeploy: warning: {e}");
            }
        }
        r
    }

    fn is_critical(&self) -> bool {
        self.inner.is_critical()
    }
}

/// Passes records on to `S`, all but the machine's `deploy_started`: the session
/// records its own first, before the runner's own steps, so the journal starts with it.
struct AfterStart<S>(S);

impl<S: Subscriber> Subscriber for AfterStart<S> {
    fn record(&mut self, record: &Record) -> Result<(), SubscriberError> {
        if matches!(record.event, Event::DeployStarted { .. }) {
            return Ok(());
        }
        self.0.record(record)
    }

    fn is_critical(&self) -> bool {
        self.0.is_critical()
    }
}

/// An engine run's journal, log file, output and signals.
pub(crate) struct Session {
    /// The dashboard is shown (a terminal, neither `--json` nor `--no-tui`).
    dashboard: bool,
    exit_when_done: bool,
    id: String,
    journal: Journal,
    log: Option<Log>,
    printer: Printer,
    output: OutputMode,
    interrupted: Arc<AtomicBool>,
    engine: Arc<Mutex<Option<DriverHandle>>>,
    signals: JoinHandle<()>,
}

impl Session {
    /// Opens the journal of run `id` in `config.state_dir`, the log file (not with
    /// `no_log`) and starts watching for signals. Call it inside the tokio runtime.
    pub(crate) fn open(
        config: &Config,
        id: &str,
        output: OutputMode,
        no_log: bool,
    ) -> Result<Session, String> {
        let journal = Journal::create(&config.state_dir, id)
            .map_err(|e| format!("cannot open the journal: {e}"))?;
        let log = if no_log {
            None
        } else {
            match LogFile::open(&config.log_file) {
                Ok(l) => Some(WarnOnce::new(l)),
                Err(e) => {
                    eprintln!(
                        "mwdeploy: warning: cannot open the log file {}: {e}; going on without it",
                        config.log_file.display()
                    );
                    None
                }
            }
        };
        let interrupted = Arc::new(AtomicBool::new(false));
        let engine: Arc<Mutex<Option<DriverHandle>>> = Arc::default();
        let signals = tokio::spawn(watch_signals(interrupted.clone(), engine.clone()));
        let dashboard = output == OutputMode::Dashboard
            && std::io::stdout().is_terminal()
            && std::io::stdin().is_terminal();
        let mut printer = Printer::new(output, id);
        if dashboard {
            printer.kept = Some(Vec::new());
        }
        Ok(Session {
            dashboard,
            exit_when_done: false,
            id: id.to_string(),
            journal,
            log,
            printer,
            output,
            interrupted,
            engine,
            signals,
        })
    }

    /// The printer, and what a [`Prep`] needs to record the runner's own steps
    /// (journal, log file, output) before `drive`.
    pub(crate) fn parts(&mut self) -> (&mut Printer, SessionPrep<'_>) {
        (
            &mut self.printer,
            SessionPrep {
                id: &self.id,
                journal: &mut self.journal,
                log: &mut self.log,
                interrupted: &self.interrupted,
            },
        )
    }

    /// `--exit-when-done`: the dashboard closes when the run ends.
    pub(crate) fn exit_when_done(mut self, yes: bool) -> Self {
        self.exit_when_done = yes;
        self
    }

    /// Ends the session before the engine ran (a refusal, an interrupt in staging).
    pub(crate) fn abandon(self) {
        self.signals.abort();
    }

    /// Runs `plan` on `ports` to the end: records to the journal, log file and output,
    /// prompts answered by the operator on a terminal (else no), SIGINT/SIGTERM as a
    /// graceful stop. Prints the summary line (not under `--json`); returns the exit
    /// code of the report.
    pub(crate) async fn drive<W: Write>(
        self,
        plan: Plan,
        ports: Ports,
        out: &mut Output<W>,
    ) -> Result<i32, CliError> {
        let Session {
            dashboard,
            exit_when_done,
            journal,
            log,
            mut printer,
            output,
            interrupted,
            engine,
            signals,
            ..
        } = self;
        let (driver, handle) = Driver::new(ports);
        {
            let mut engine = engine.lock().unwrap_or_else(|e| e.into_inner());
            *engine = Some(handle.clone());
            // An interrupt before the machine ran reaches it at once.
            if interrupted.load(Ordering::SeqCst) {
                handle.interrupt();
            }
        }
        let rollout = Rollout::new(plan, tokio::time::Instant::now().into_std())
            .map_err(|e| CliError::Usage(format!("invalid rollout plan: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut driver = driver.subscribe(AfterStart(journal));
        if let Some(log) = log {
            driver = driver.subscribe(AfterStart(log));
        }
        let driver = driver.subscribe(AfterStart(ChannelSubscriber(tx)));
        let interactive = output != OutputMode::Json
            && std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal();
        let run = driver.run(rollout);
        if dashboard {
            // The dashboard shows what was printed before it opened, then the engine's
            // records; it answers prompts and stops through the handle itself.
            let (tui_tx, tui_rx) = mpsc::unbounded_channel();
            for r in printer.kept.take().unwrap_or_default() {
                let _ = tui_tx.send(r);
            }
            let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
            let forward = forward(rx, tui_tx, closed, &handle);
            let control = EngineControl(handle.clone());
            let opts = crate::tui::TuiOptions::from_env(exit_when_done);
            let dashboard = async {
                let shown = crate::tui::run(tui_rx, &control, opts).await;
                drop(closed_tx);
                shown
            };
            let (report, (), shown) = tokio::join!(run, forward, dashboard);
            signals.abort();
            if let Err(e) = shown {
                eprintln!("mwdeploy: the dashboard failed ({e}); the deploy went on without it");
            }
            return Ok(finish(out, output, &report));
        }
        let report = lines(run, rx, &handle, interactive, |r| printer.show(out, r)).await;
        signals.abort();
        Ok(finish(out, output, &report))
    }
}

/// Passes the engine's records on to the dashboard until it closes (`closed`); a
/// dashboard closed before the deploy ended (its terminal went away, or it failed) leaves
/// the prompts, the open one too, to be answered no, as without a terminal.
async fn forward(
    mut rx: mpsc::UnboundedReceiver<Record>,
    tui: mpsc::UnboundedSender<Record>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
    handle: &DriverHandle,
) {
    let mut prompt = LinePrompt::watching();
    let mut open = true;
    loop {
        tokio::select! {
            rec = rx.recv() => match rec {
                Some(r) => {
                    prompt.record(&r, handle);
                    if open {
                        let _ = tui.send(r);
                    }
                }
                None => return,
            },
            _ = &mut closed, if open => {
                open = false;
                prompt.take_over(handle);
            }
        }
    }
}

/// Runs `run` while its records are shown with `show` and its prompts answered on the
/// line (the operator on a terminal when `interactive`, else no); returns its report
/// once every record was shown.
pub(crate) async fn lines(
    run: impl std::future::Future<Output = Report>,
    mut rx: mpsc::UnboundedReceiver<Record>,
    handle: &DriverHandle,
    interactive: bool,
    mut show: impl FnMut(&Record),
) -> Report {
    tokio::pin!(run);
    let mut prompt = LinePrompt::new(interactive);
    let mut report = None;
    let mut channel_open = true;
    while report.is_none() || channel_open {
        tokio::select! {
            r = &mut run, if report.is_none() => report = Some(r),
            rec = rx.recv(), if channel_open => match rec {
                Some(record) => {
                    show(&record);
                    prompt.record(&record, handle);
                }
                None => channel_open = false,
            },
        }
    }
    report.expect("the loop ends with a report")
}

/// The summary line and the servers left out (not under `--json`); the exit code.
fn finish<W: Write>(out: &mut Output<W>, output: OutputMode, report: &Report) -> i32 {
    if output != OutputMode::Json {
        summary_line(out, &report.summary);
        for (server, why) in &report.left_out {
            out.fmt(format_args!("left out of the pool: {server}: {why}\n"));
        }
        out.flush();
    }
    if let Some(why) = &report.refused {
        eprintln!("mwdeploy: refused: {why}");
    }
    crate::exit::of(report.verdict)
}

/// The dashboard's keys, sent to the running engine.
struct EngineControl(DriverHandle);

impl crate::tui::Control for EngineControl {
    fn decide(&self, d: Decision) {
        self.0.decide(d);
    }

    fn pool(&self, server: &str, depool: bool, _: &mpsc::UnboundedSender<Record>) {
        // Through the engine: max_unavailable and the canary hold, and its answer (or why
        // not) comes back as events.
        if let Ok(id) = mwdeploy_core::ServerId::new(server) {
            self.0.pool(id, depool);
        }
    }

    fn interrupt(&self) {
        self.0.interrupt();
    }
}

/// The journal, log file and interrupt flag of a [`Session`], for a [`Prep`].
pub(crate) struct SessionPrep<'a> {
    id: &'a str,
    journal: &'a mut Journal,
    log: &'a mut Option<Log>,
    interrupted: &'a AtomicBool,
}

impl<'a> SessionPrep<'a> {
    /// A [`Prep`] that shows its records with `show`.
    pub(crate) fn with(self, show: &'a mut dyn Show) -> Prep<'a> {
        Prep {
            deploy: self.id,
            journal: self.journal,
            log: self.log,
            show,
            interrupted: self.interrupted,
        }
    }
}

/// `✓ N succeeded   ✗ N failed   – N skipped/rolled back` (`! N warned` when any).
pub(crate) fn summary_line<W: Write>(out: &mut Output<W>, s: &Summary) {
    out.fmt(format_args!(
        "✓ {} succeeded   ✗ {} failed   – {} skipped/rolled back",
        s.succeeded,
        s.failed,
        s.skipped + s.rolled_back
    ));
    if s.warned > 0 {
        out.fmt(format_args!("   ! {} warned", s.warned));
    }
    out.bytes(b"\n");
}

/// The line prompt of plain output: follows the records (the dashboard's model, so the
/// question names the failed server and why) and answers each open prompt: on a
/// terminal, the operator (300 s, then no); otherwise no.
pub(crate) struct LinePrompt {
    model: crate::tui::model::Dashboard,
    interactive: bool,
    /// Answers prompts (else it only follows, while the dashboard answers them).
    answering: bool,
}

impl LinePrompt {
    /// A prompt that asks on the terminal when `interactive`.
    pub(crate) fn new(interactive: bool) -> Self {
        LinePrompt {
            model: crate::tui::model::Dashboard::new(String::new(), None, Vec::new()),
            interactive,
            answering: true,
        }
    }

    /// One that follows the records without answering, until [`LinePrompt::take_over`].
    fn watching() -> Self {
        LinePrompt {
            answering: false,
            ..LinePrompt::new(false)
        }
    }

    /// From now on answers no, the prompt open now too.
    fn take_over(&mut self, handle: &DriverHandle) {
        self.answering = true;
        if self.model.prompt().is_some() {
            handle.decide(Decision::Answer(false));
        }
    }

    /// Takes `record`; when it opens a prompt, answers it through `handle`.
    pub(crate) fn record(&mut self, record: &Record, handle: &DriverHandle) {
        self.model.apply(record);
        if !self.answering {
            return;
        }
        if let Event::Prompt {
            question,
            answer: None,
        } = &record.event
        {
            let (text, note) = match self.model.prompt() {
                Some(p) => self.model.prompt_text(p),
                None => (question.clone(), None),
            };
            if self.interactive {
                if let Some(n) = note {
                    eprintln!("{}", Clean(&n));
                }
            }
            ask(handle, &text, self.interactive);
        }
    }
}

/// Answers an open prompt whose question is `text`: on a terminal, the operator (300 s,
/// then no); otherwise no.
fn ask(handle: &DriverHandle, text: &str, interactive: bool) {
    if !interactive {
        handle.decide(Decision::Answer(false));
        return;
    }
    // Not `eprint!`, which panics when the terminal went away.
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{} [y/N] ", Clean(text)).and_then(|()| err.flush());
    drop(err);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let ok = std::io::stdin().read_line(&mut line).is_ok();
        let _ = tx.send(ok && matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"));
    });
    let handle = handle.clone();
    std::thread::spawn(move || {
        let yes = rx.recv_timeout(PROMPT_WAIT).unwrap_or(false);
        handle.decide(Decision::Answer(yes));
    });
}

/// SIGINT and SIGTERM stop the run gracefully: `interrupted` is set (a runner's own
/// steps stop between steps) and the engine, once it runs, is asked to stop. SIGHUP
/// means the terminal went away: the run carries on without it ([`crate::tty`]).
pub(crate) async fn watch_signals(
    interrupted: Arc<AtomicBool>,
    engine: Arc<Mutex<Option<DriverHandle>>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("mwdeploy: warning: cannot watch for signals");
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {
                // The terminal went away: the dashboard closes, output for it is
                // dropped, the run goes on.
                crate::tty::hang_up();
                continue;
            }
        }
        interrupted.store(true, Ordering::SeqCst);
        if let Some(h) = engine.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h.interrupt();
        }
    }
}
