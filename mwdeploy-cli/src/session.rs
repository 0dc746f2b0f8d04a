//! How the command shows an engine run (a deploy, a rollback, a recovery) run by the
//! library's [`mwdeploy::session`]: records as plain or JSON lines, or the dashboard; the
//! operator's prompts on the line; SIGINT and SIGTERM as a graceful stop.
//!
//! ```text
//!  Controls + watch_signals (SIGINT/SIGTERM ──> Controls::interrupt; SIGHUP: no terminal)
//!  Printer::for_run ──> Shown (the library's Observer): the records before the machine
//!       │ (deploy::prepare, rollback::prepare, Recovery::prepare)
//!       ▼
//!  Shows::run(Running) ──> records ──> printer (plain | JSON lines) or the dashboard
//!                             ▲
//!                             └── prompts: the operator on a terminal, else no
//!       ▼
//!  summary line, servers left out ──> the exit code
//! ```

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use mwdeploy::session::{Controls, Reply, Running};
use mwdeploy_core::event::Record;
use mwdeploy_core::{Decision, Event, Report, Summary};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::CliError;
use crate::output::Output;
use crate::render::{Clean, JsonLines, PlainLines};
use crate::request::OutputMode;

/// How long a prompt on the terminal waits for an answer (no answer: no).
const PROMPT_WAIT: Duration = Duration::from_secs(300);

pub(crate) use mwdeploy::session::new_id;

/// Takes the deploy lock of `state_dir` for `message`; a held lock (named) or an error
/// is printed and gives the exit code of a refusal.
pub(crate) fn take_lock(
    state_dir: &std::path::Path,
    message: &str,
) -> Result<mwdeploy_runtime::lock::DeployLock, i32> {
    mwdeploy::session::take_lock(state_dir, message).map_err(|e| {
        eprintln!("mwdeploy: {e}");
        crate::exit::REFUSED
    })
}

/// The command's [`Warn`](mwdeploy::session::Warn): `mwdeploy: <line>` on stderr.
pub(crate) fn warn_on_stderr() -> mwdeploy::session::Warn {
    std::sync::Arc::new(|line: &str| eprintln!("mwdeploy: {line}"))
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

    /// A printer for run `id` shown as `mode` says, and whether that is the dashboard
    /// (a terminal, neither `--json` nor `--no-tui`): then it keeps what it prints, for
    /// the dashboard to show once it opens.
    pub(crate) fn for_run(mode: OutputMode, id: &str) -> (Self, bool) {
        let dashboard = mode == OutputMode::Dashboard
            && std::io::stdout().is_terminal()
            && std::io::stdin().is_terminal();
        let mut printer = Printer::new(mode, id);
        if dashboard {
            printer.kept = Some(Vec::new());
        }
        (printer, dashboard)
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

/// A [`Printer`] with its output: what the library's session shows records to.
pub(crate) struct Shown<'a, W: Write>(pub(crate) &'a mut Printer, pub(crate) &'a mut Output<W>);

impl<W: Write> mwdeploy::session::Observer for Shown<'_, W> {
    fn record(&mut self, record: &Record) {
        self.0.show(self.1, record);
    }
}

/// A run of the library's (a deploy, a rollback, a recovery) as the command shows it:
/// made before the run is prepared (its signals watched, its records printed), then
/// given what the preparation came to.
pub(crate) struct Run {
    printer: Printer,
    dashboard: bool,
    output: OutputMode,
    controls: Controls,
    signals: JoinHandle<()>,
}

impl Run {
    /// Run `id`, shown as `output` says. Call it inside the tokio runtime.
    pub(crate) fn new(output: OutputMode, id: &str) -> Run {
        let controls = Controls::new();
        let signals = tokio::spawn(watch_signals(controls.clone()));
        let (printer, dashboard) = Printer::for_run(output, id);
        Run {
            printer,
            dashboard,
            output,
            controls,
            signals,
        }
    }

    /// Its controls, for the library's `prepare`.
    pub(crate) fn controls(&self) -> Controls {
        self.controls.clone()
    }

    /// Its printer on `out`: the library's observer of the records before the machine.
    pub(crate) fn shown<'a, W: Write>(&'a mut self, out: &'a mut Output<W>) -> Shown<'a, W> {
        Shown(&mut self.printer, out)
    }

    /// Starts what `prepared` made ready and shows it to its end; or tells why it was
    /// refused (`unreachable`: what an unreachable proxy means for this run). The exit
    /// code.
    pub(crate) async fn show<W: Write>(
        self,
        prepared: Result<mwdeploy::Deployment, mwdeploy::DeployError>,
        exit_when_done: bool,
        unreachable: &str,
        out: &mut Output<W>,
    ) -> Result<i32, CliError> {
        let running = match prepared.and_then(|d| d.start()) {
            Ok(r) => r,
            Err(mwdeploy::DeployError::Unreachable(proxies)) => {
                self.signals.abort();
                for p in &proxies {
                    eprintln!("mwdeploy: {p}");
                }
                eprintln!("mwdeploy: refused: a proxy is unreachable: {unreachable}");
                return Ok(crate::exit::REFUSED);
            }
            Err(e) => {
                self.signals.abort();
                return crate::deploy::refusal(e);
            }
        };
        let shows = Shows {
            dashboard: self.dashboard,
            exit_when_done,
            printer: self.printer,
            output: self.output,
            controls: self.controls,
            signals: self.signals,
        };
        Ok(shows.run(running, out).await)
    }
}

/// How a started run is shown.
struct Shows {
    dashboard: bool,
    exit_when_done: bool,
    printer: Printer,
    output: OutputMode,
    controls: Controls,
    signals: JoinHandle<()>,
}

impl Shows {
    /// Shows `running` to its end; the summary line; the exit code of its report.
    async fn run<W: Write>(self, running: Running, out: &mut Output<W>) -> i32 {
        let Shows {
            dashboard,
            exit_when_done,
            mut printer,
            output,
            controls,
            signals,
        } = self;
        let reply = running.reply();
        let Running {
            report: run,
            records: rx,
            ..
        } = running;
        let interactive = output != OutputMode::Json
            && std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal();
        if dashboard {
            // The dashboard shows what was printed before it opened, then the engine's
            // records; it answers prompts and stops through the controls itself.
            let (tui_tx, tui_rx) = mpsc::unbounded_channel();
            for r in printer.kept.take().unwrap_or_default() {
                let _ = tui_tx.send(r);
            }
            let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
            let forward = forward(rx, tui_tx, closed, &reply);
            let control = EngineControl(controls.clone());
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
            return finish(out, output, &report);
        }
        let report = lines(run, rx, &reply, interactive, |r| printer.show(out, r)).await;
        signals.abort();
        finish(out, output, &report)
    }
}

/// Passes the engine's records on to the dashboard until it closes (`closed`); a
/// dashboard closed before the deploy ended (its terminal went away, or it failed) leaves
/// the prompts, the open one too, to be answered no, as without a terminal.
async fn forward(
    mut rx: mpsc::UnboundedReceiver<Record>,
    tui: mpsc::UnboundedSender<Record>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
    handle: &Reply,
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
    handle: &Reply,
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
struct EngineControl(Controls);

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
    fn take_over(&mut self, handle: &Reply) {
        self.answering = true;
        if self.model.prompt().is_some() {
            handle.answer(false);
        }
    }

    /// Takes `record`; when it opens a prompt, answers it through `handle`.
    pub(crate) fn record(&mut self, record: &Record, handle: &Reply) {
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
fn ask(handle: &Reply, text: &str, interactive: bool) {
    if !interactive {
        handle.answer(false);
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
        handle.answer(yes);
    });
}

/// SIGINT and SIGTERM stop the run gracefully through `controls` (a runner's own steps
/// stop between steps, the engine, once it runs, stops). SIGHUP means the terminal went
/// away: the run carries on without it ([`crate::tty`]).
pub(crate) async fn watch_signals(controls: Controls) {
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
        controls.interrupt();
    }
}
