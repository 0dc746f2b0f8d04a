//! mwdeploy-tui: the live dashboard of a deploy, in the terminal (ratatui).
//!
//! It draws the records of a deploy's event stream (the journal's [`Record`]s, from a
//! running engine, a journal being followed, or a simulation) and sends the operator's
//! keys back through a [`Control`]: the `mwdeploy` command implements it for the engine's
//! driver handle, its viewer for a deploy running in another process.
//!
//! ```
//! use std::time::SystemTime;
//! use mwdeploy_core::event::{Event, Record, Summary};
//! use mwdeploy_core::Verdict;
//! use mwdeploy_tui::Dashboard;
//!
//! // The state the screen is drawn from, folded from the records (pure: no terminal).
//! let mut dash = Dashboard::new("d1".into(), None, vec!["mw1".into()]);
//! let end = Event::DeployFinished { summary: Summary::default(), duration_s: 1.0, verdict: Verdict::Done };
//! dash.apply(&Record { ts: SystemTime::now(), deploy: "d1".into(), event: end });
//! assert_eq!(dash.finished().unwrap().verdict, Verdict::Done);
//! // `mwdeploy_tui::run(records, &control, TuiOptions::from_env(false))` shows it live.
//! ```
//!
//! ```text
//!  engine ──Record──> records (mpsc) ──┐
//!                                      ▼
//!  terminal ──crossterm events──> input thread ──> input (mpsc) ──> run loop ──> model::Dashboard
//!   (blocking std thread: poll + read)                 │   (apply: fold each record)
//!                                                      │
//!                     keys::on_key(dash, ui, key) <────┤ key
//!                        │ Command                     │ record batch, key, resize, 250 ms tick
//!                        ▼                             ▼
//!      Control (decide | pool | interrupt)      view::draw(frame, dash, ui, now)
//!      = the engine's driver handle (a viewer's:       │
//!        pool only, its results back as records)       │
//!                                                      ▼
//!                                       terminal::TerminalGuard (raw mode, alternate screen;
//!                                       restored on drop and on panic)
//! ```
//!
//! - `model`: [`model::Dashboard`], the state folded from the records. Pure; times come
//!   from the records or are passed in.
//! - `view`: the screen drawn from the state, at any size, colours only when asked.
//! - `keys`: a key press turned into a command for the engine.
//! - `terminal`: the terminal's modes, always given back.
//!
//! The dashboard never decides anything itself but the failure prompt's timeout: a prompt
//! left unanswered for [`PROMPT_TIMEOUT`] is answered No. When the records end (the deploy is
//! over) the screen stays until a key is pressed, or closes at once with `exit_when_done`,
//! and when the deploy was interrupted (exit code 130: Ctrl+C here, SIGINT or SIGTERM).

#![warn(missing_docs)]

mod keys;
pub mod model;
mod terminal;
pub mod tty;
mod view;

#[cfg(test)]
mod tests;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mwdeploy_core::event::Record;
use mwdeploy_core::Decision;
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self as term_event, Event as TermEvent};
use ratatui::Terminal;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

pub(crate) use keys::{on_key, Command};
pub use model::Dashboard;
use terminal::TerminalGuard;
pub(crate) use view::draw;

/// An open prompt unanswered this long is answered No.
pub const PROMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// How often the screen is redrawn without news (elapsed times move).
const TICK: Duration = Duration::from_millis(250);

/// How long the input thread waits for a key before it looks whether it should end.
const INPUT_POLL: Duration = Duration::from_millis(100);

/// What the dashboard tells the running deploy; the deploy runner implements it for the
/// engine's driver handle.
pub trait Control: Sync {
    /// An answer to the open prompt, a pause, a resume or a stop.
    fn decide(&self, d: Decision);
    /// A manual pool change of `server` (`depool`: out; else back in). What comes of it
    /// arrives as the deploy's records, or, where there is no deploy to record it (the
    /// viewer), as records sent to `notes`, which the dashboard shows.
    fn pool(&self, server: &str, depool: bool, notes: &UnboundedSender<Record>);
    /// Ctrl+C: stop gracefully, as on SIGINT (exit 130).
    fn interrupt(&self);
}

/// How the dashboard runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TuiOptions {
    /// Close as soon as the deploy ends, without waiting for a key.
    pub exit_when_done: bool,
    /// Colours (off with `NO_COLOR`).
    pub colour: bool,
    /// Watching a deploy that runs in another process (`mwdeploy` without flags): keys
    /// look (select, logs) and open the pool menu (which works when no deploy holds the
    /// lock); q, Esc, Ctrl+C or Ctrl+X close the viewer.
    pub viewer: bool,
}

impl TuiOptions {
    /// Options with colours unless `NO_COLOR` is set to anything but the empty string.
    pub fn from_env(exit_when_done: bool) -> Self {
        TuiOptions {
            exit_when_done,
            colour: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
            viewer: false,
        }
    }
}

/// What covers the main screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Overlay {
    /// Nothing: the main screen.
    #[default]
    None,
    /// "Stop the deploy? ... [y/N]".
    ConfirmStop,
    /// The pool menu for the server of this row.
    PoolMenu {
        /// The server's row.
        row: usize,
    },
    /// The full log of the server of this row.
    Log {
        /// The server's row.
        row: usize,
        /// Lines up from the newest.
        scroll: usize,
    },
}

/// The dashboard's own state: what the operator did, not what the deploy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UiState {
    /// Colours on.
    pub(crate) colour: bool,
    /// The selected server's row.
    pub(crate) selected: usize,
    /// What covers the screen.
    pub(crate) overlay: Overlay,
    /// A pause was asked (and no resume since).
    pub(crate) paused: bool,
    /// A stop was asked (Ctrl+X and yes, or Ctrl+C).
    pub(crate) stop_asked: bool,
    /// The sequence number of the last prompt answered, so that its box closes before the
    /// engine's echo of the answer arrives.
    pub(crate) answered: Option<u64>,
    /// A viewer: nothing is sent to the deploy.
    pub(crate) viewer: bool,
}

impl UiState {
    /// The state at the start.
    pub(crate) fn new(colour: bool) -> Self {
        UiState {
            colour,
            ..UiState::default()
        }
    }

    /// The deploy's open prompt, unless it was answered here already.
    pub(crate) fn open_prompt<'a>(&self, dash: &'a Dashboard) -> Option<&'a model::OpenPrompt> {
        dash.prompt().filter(|p| self.answered != Some(p.seq))
    }
}

/// Runs the dashboard until the deploy is over (the records end) and a key is pressed, or
/// at once then with `opts.exit_when_done`. The terminal is restored before this returns,
/// also on an error.
pub async fn run(
    mut records: UnboundedReceiver<Record>,
    control: &dyn Control,
    opts: TuiOptions,
) -> io::Result<()> {
    let mut guard = TerminalGuard::enter()?;
    let (tx, mut input) = mpsc::unbounded_channel();
    let reader = InputThread::spawn(tx)?;
    let result = event_loop(guard.terminal(), &mut records, &mut input, control, opts).await;
    // The reader first, then the terminal (also when this future is dropped half way).
    drop(reader);
    drop(guard);
    result
}

/// Reads terminal events on a blocking thread and forwards them, until it is dropped or
/// nobody listens.
#[derive(Debug)]
struct InputThread {
    quit: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl InputThread {
    fn spawn(tx: UnboundedSender<io::Result<TermEvent>>) -> io::Result<Self> {
        let quit = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&quit);
        let handle = std::thread::Builder::new()
            .name("mwdeploy-tui-input".into())
            .spawn(move || {
                // A hung-up terminal reads as end of file at once, forever: the thread
                // ends (closing the channel) instead of spinning on it.
                while !flag.load(Ordering::SeqCst) && !crate::tty::check_stdin() {
                    let next = match term_event::poll(INPUT_POLL) {
                        Ok(false) => continue,
                        Ok(true) => term_event::read(),
                        Err(e) => Err(e),
                    };
                    let failed = next.is_err();
                    if failed {
                        crate::tty::check_stdin();
                    }
                    if tx.send(next).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(InputThread {
            quit,
            handle: Some(handle),
        })
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.quit.store(true, Ordering::SeqCst);
        // It ends within one poll interval.
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The loop: fold records, handle keys, redraw. Generic over the backend so that tests can
/// drive it with ratatui's test backend and made-up key events.
async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    records: &mut UnboundedReceiver<Record>,
    input: &mut UnboundedReceiver<io::Result<TermEvent>>,
    control: &dyn Control,
    opts: TuiOptions,
) -> io::Result<()> {
    let mut dash = Dashboard::new(String::new(), None, Vec::new());
    let mut ui = UiState::new(opts.colour);
    ui.viewer = opts.viewer;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut records_open = true;
    let mut input_open = true;
    // The prompt on screen and when it was first shown (monotonic, for its timeout).
    let mut shown: Option<(u64, tokio::time::Instant)> = None;
    // What the control reports of the pool changes it makes itself (the viewer's).
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    loop {
        // The terminal went away (SIGHUP, or it failed): close without touching it; the
        // deploy goes on without a dashboard.
        if crate::tty::is_gone() {
            return Ok(());
        }
        if let Err(e) = terminal.draw(|f| draw(f, &dash, &ui, SystemTime::now())) {
            return if crate::tty::check_stdin() {
                Ok(())
            } else {
                Err(e)
            };
        }
        tokio::select! {
            r = records.recv(), if records_open => match r {
                Some(r) => {
                    dash.apply(&r);
                    while let Ok(r) = records.try_recv() {
                        dash.apply(&r);
                    }
                }
                None => {
                    records_open = false;
                    dash.mark_ended();
                    // An interrupted deploy (Ctrl+C here, or SIGINT/SIGTERM) does not wait
                    // for a key: the process is being stopped.
                    let interrupted = dash.finished().is_some_and(|f| f.verdict == mwdeploy_core::Verdict::Interrupted);
                    if opts.exit_when_done || !input_open || interrupted {
                        return Ok(());
                    }
                }
            },
            ev = input.recv(), if input_open => match ev {
                Some(Ok(TermEvent::Key(key))) => {
                    if let Some(cmd) = on_key(&dash, &mut ui, key) {
                        match cmd {
                            Command::Decide(d) => control.decide(d),
                            Command::Pool { server, depool } => {
                                dash.pool_requested(&server, depool);
                                control.pool(&server, depool, &notes_tx);
                            }
                            Command::Interrupt => control.interrupt(),
                            Command::Close => return Ok(()),
                        }
                    }
                }
                // A resize, focus or mouse event: the redraw above the wait does it.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    // No keys any more: show the deploy to its end (unless the terminal
                    // went away, which the top of the loop sees).
                    input_open = false;
                    if !records_open {
                        return Ok(());
                    }
                }
            },
            Some(r) = notes.recv() => dash.apply(&r),
            _ = tick.tick() => {}
        }
        // A prompt unanswered for PROMPT_TIMEOUT is No.
        match dash.prompt().map(|p| p.seq) {
            Some(seq) if ui.answered != Some(seq) => match shown {
                Some((s, at)) if s == seq => {
                    if at.elapsed() >= PROMPT_TIMEOUT {
                        ui.answered = Some(seq);
                        control.decide(Decision::Answer(false));
                        dash.set_notice("No answer in 5 minutes: answered No".into());
                    }
                }
                _ => shown = Some((seq, tokio::time::Instant::now())),
            },
            _ => shown = None,
        }
    }
}
