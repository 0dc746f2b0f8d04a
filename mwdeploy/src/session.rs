//! One run of the engine (a deploy, a rollback, a recovery): its id, journal and log
//! file, the steps recorded before the machine starts, and the machine driven against
//! the ports.
//!
//! ```text
//!  Controls::new() ──> (the caller's signal handler: interrupt; its UI: decide, pool)
//!       │
//!  Session::open ──> journal (critical), log file (unless no_log)
//!       │ record() / steps(): the runner's own records before the machine starts
//!       ▼
//!  Session::start(plan, ports) ──> Running { records, controls }
//!       │                             │ the caller shows records and answers prompts,
//!       │                             │ or lets Running::finish do it through an
//!       ▼                             ▼ Observer and a Prompter
//!                                  Report (the machine's verdict)
//! ```
//!
//! Nothing here prints, reads a terminal or installs a signal handler: warnings go to the
//! [`Warn`] callback the caller gives, records to its [`Observer`], questions to its
//! [`Prompter`], and SIGINT is the caller's to turn into [`Controls::interrupt`].

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use mwdeploy_core::event::Record;
use mwdeploy_core::{Decision, Event, Plan, ReleaseId, Report, Rollout, ServerId};
use mwdeploy_runtime::driver::{
    ChannelSubscriber, Driver, DriverHandle, Ports, Subscriber, SubscriberError,
};
use mwdeploy_runtime::journal::Journal;
use mwdeploy_runtime::lock::{DeployLock, Holder};
use mwdeploy_runtime::log_file::LogFile;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::error::{LockRefused, SessionError};

/// Where lines for the operator go that belong to no record (`warning: cannot open the
/// log file ...`, a journal write that failed before the machine ran): the caller decides
/// (the command prints them on stderr after `mwdeploy: `).
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// A [`Warn`] that drops every warning.
pub fn no_warnings() -> Warn {
    Arc::new(|_| {})
}

/// `<UTC time>-<suffix><4 hex>`: a run's id, and (for a deploy) the release id on every
/// server. `suffix` is empty for a deploy, `rollback`, `recover` or `pool` otherwise.
pub fn new_id(suffix: &str) -> ReleaseId {
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

/// Takes the deploy lock of `state_dir` for `message`: one deploy, rollback, recovery or
/// manual pool change at a time. A held lock names its holder.
pub fn take_lock(state_dir: &std::path::Path, message: &str) -> Result<DeployLock, LockRefused> {
    DeployLock::acquire(state_dir, Holder::current(message)).map_err(LockRefused::from)
}

/// What a caller can tell a run from outside it, from any thread: stop it gracefully
/// (SIGINT), answer its prompt, pause, pool a server. Made before the run, so that an
/// interrupt during the steps before the machine starts (staging) counts too.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    interrupted: Arc<AtomicBool>,
    engine: Arc<Mutex<Option<DriverHandle>>>,
}

impl Controls {
    /// Controls for a run that has not started.
    pub fn new() -> Self {
        Controls::default()
    }

    /// Stops the run gracefully: no new step or server starts, running servers finish,
    /// every depooled server is put back (after its canary) or reported.
    pub fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        if let Some(h) = self.engine().as_ref() {
            h.interrupt();
        }
    }

    /// Whether [`interrupt`](Self::interrupt) was called.
    pub fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    /// Tells the running machine `decision` (an answer, pause, resume, stop); `false`
    /// when no machine runs.
    pub fn decide(&self, decision: Decision) -> bool {
        self.engine().as_ref().is_some_and(|h| h.decide(decision))
    }

    /// Asks the running machine to depool (`depool`) or repool `server`, under its rules
    /// (`max_unavailable`, the canary); `false` when no machine runs.
    pub fn pool(&self, server: ServerId, depool: bool) -> bool {
        self.engine()
            .as_ref()
            .is_some_and(|h| h.pool(server, depool))
    }

    fn engine(&self) -> std::sync::MutexGuard<'_, Option<DriverHandle>> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ties these controls to a running driver (done by [`Session::start`]; for a driver
    /// run by hand, such as a simulation's).
    pub fn attach(&self, handle: DriverHandle) {
        *self.engine() = Some(handle.clone());
        // An interrupt before the machine ran reaches it at once.
        if self.is_interrupted() {
            handle.interrupt();
        }
    }
}

/// Sees every record of a run, in order, after the journal got it.
pub trait Observer {
    /// Takes one record.
    fn record(&mut self, record: &Record);
}

/// Answers the engine's questions (the failure prompt: "go on?").
pub trait Prompter {
    /// Sees every record, before [`ask`](Self::ask) for a prompt (to word the question
    /// from what happened). The default ignores them.
    fn observe(&mut self, record: &Record) {
        let _ = record;
    }

    /// A prompt opened: answer through `prompt`'s [`Reply`], now or later, from any
    /// thread. Not answering leaves the machine waiting until its prompt timeout, then no.
    fn ask(&mut self, prompt: Prompt);
}

/// An open prompt.
#[derive(Debug)]
pub struct Prompt {
    /// The engine's question.
    pub question: String,
    /// The way to answer it.
    pub reply: Reply,
}

/// The answer to an open prompt; cloneable, sendable, answered once.
#[derive(Debug, Clone)]
pub struct Reply(DriverHandle);

impl Reply {
    /// The answers of the driver behind `handle`.
    pub fn new(handle: DriverHandle) -> Self {
        Reply(handle)
    }

    /// Answers `yes` (go on) or no (stop).
    pub fn answer(&self, yes: bool) {
        self.0.decide(Decision::Answer(yes));
    }
}

/// A [`Prompter`] that answers every prompt no: the safe answer, for runs nobody watches.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnswerNo;

impl Prompter for AnswerNo {
    fn ask(&mut self, prompt: Prompt) {
        prompt.reply.answer(false);
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

/// Passes records on to `S` and warns about its first error (a subscriber the deploy
/// goes on without: the log file).
struct WarnOnce<S> {
    inner: S,
    warn: Warn,
    warned: bool,
}

impl<S: Subscriber> Subscriber for WarnOnce<S> {
    fn record(&mut self, record: &Record) -> Result<(), SubscriberError> {
        let r = self.inner.record(record);
        if let Err(e) = &r {
            if !std::mem::replace(&mut self.warned, true) {
                (self.warn)(&format!("warning: {e}"));
            }
        }
        r
    }

    fn is_critical(&self) -> bool {
        self.inner.is_critical()
    }
}

/// A run's journal and log file, before and while the machine runs.
pub struct Session {
    id: String,
    journal: Journal,
    log: Option<WarnOnce<LogFile>>,
    controls: Controls,
    warn: Warn,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens the journal of run `id` in `config.state_dir` and the log file (not with
    /// `no_log`; one that cannot be opened is a warning, and the run goes on without it).
    pub fn open(
        config: &Config,
        id: &str,
        no_log: bool,
        controls: &Controls,
        warn: Warn,
    ) -> Result<Session, SessionError> {
        let journal = Journal::create(&config.state_dir, id).map_err(SessionError::Journal)?;
        let log = if no_log {
            None
        } else {
            match LogFile::open(&config.log_file) {
                Ok(l) => Some(WarnOnce {
                    inner: l,
                    warn: warn.clone(),
                    warned: false,
                }),
                Err(e) => {
                    warn(&format!(
                        "warning: cannot open the log file {}: {e}; going on without it",
                        config.log_file.display()
                    ));
                    None
                }
            }
        };
        Ok(Session {
            id: id.to_string(),
            journal,
            log,
            controls: controls.clone(),
            warn,
        })
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records `event` (journal, log file, then `observer`): the runner's own steps
    /// before the machine starts. A journal that cannot be written is a warning here;
    /// once the machine runs it stops the deploy.
    pub fn record(&mut self, event: Event, observer: &mut dyn Observer) {
        let record = Record {
            ts: SystemTime::now(),
            deploy: self.id.clone(),
            event,
        };
        if let Err(e) = self.journal.append(&record) {
            (self.warn)(&format!("journal: {e}"));
        }
        if let Some(log) = self.log.as_mut() {
            // Not critical; it warns once itself.
            let _ = log.record(&record);
        }
        observer.record(&record);
    }

    /// The recorder of the steps before the machine (staging's), showing them to
    /// `observer`.
    pub fn steps<'a>(&'a mut self, observer: &'a mut dyn Observer) -> SessionSteps<'a> {
        SessionSteps {
            session: self,
            observer,
        }
    }

    /// Starts the machine on `plan` against `ports`: records go to the journal (a
    /// record it cannot write stops the deploy before its next pool change) and the log
    /// file, then to [`Running::records`].
    pub fn start(self, plan: Plan, ports: Ports) -> Result<Running, SessionError> {
        let Session {
            journal,
            log,
            controls,
            ..
        } = self;
        let rollout = Rollout::new(plan, tokio::time::Instant::now().into_std())
            .map_err(SessionError::Plan)?;
        let (driver, handle) = Driver::new(ports);
        controls.attach(handle.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let mut driver = driver.subscribe(AfterStart(journal));
        if let Some(log) = log {
            driver = driver.subscribe(AfterStart(log));
        }
        let driver = driver.subscribe(AfterStart(ChannelSubscriber(tx)));
        Ok(Running {
            report: Box::pin(driver.run(rollout)),
            records: rx,
            handle,
            controls,
        })
    }
}

/// A [`Session`]'s recorder of staging's steps.
pub struct SessionSteps<'a> {
    session: &'a mut Session,
    observer: &'a mut dyn Observer,
}

impl std::fmt::Debug for SessionSteps<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSteps")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl SessionSteps<'_> {
    /// Records `event` as [`Session::record`] does.
    pub fn record(&mut self, event: Event) {
        self.session.record(event, &mut *self.observer);
    }
}

impl mwdeploy_mediawiki::Steps for SessionSteps<'_> {
    fn record(&mut self, event: Event) {
        SessionSteps::record(self, event);
    }

    fn interrupted(&self) -> bool {
        self.session.controls.is_interrupted()
    }
}

/// The machine running: its records as they come, and its report at the end.
pub struct Running {
    /// The run to its end; poll it while reading [`records`](Self::records).
    pub report: Pin<Box<dyn Future<Output = Report> + Send>>,
    /// Every record, after the journal got it; closed after the last one.
    pub records: mpsc::UnboundedReceiver<Record>,
    handle: DriverHandle,
    controls: Controls,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

impl Running {
    /// The run's controls.
    pub fn controls(&self) -> &Controls {
        &self.controls
    }

    /// The answer to the prompt open now (or the next one).
    pub fn reply(&self) -> Reply {
        Reply(self.handle.clone())
    }

    /// Runs to the end: each record to `observer`, each open prompt to `prompter`.
    /// Returns the report once every record was seen.
    pub async fn finish(self, observer: &mut dyn Observer, prompter: &mut dyn Prompter) -> Report {
        let Running {
            mut report,
            mut records,
            handle,
            ..
        } = self;
        let mut done = None;
        let mut open = true;
        while done.is_none() || open {
            tokio::select! {
                r = &mut report, if done.is_none() => done = Some(r),
                rec = records.recv(), if open => match rec {
                    Some(record) => {
                        observer.record(&record);
                        prompter.observe(&record);
                        if let Event::Prompt { question, answer: None } = &record.event {
                            prompter.ask(Prompt {
                                question: question.clone(),
                                reply: Reply(handle.clone()),
                            });
                        }
                    }
                    None => open = false,
                },
            }
        }
        done.expect("the loop ends with a report")
    }
}
