//! The deploy runner: a checked [`DeployRequest`] run against the real fleet.
//!
//! ```text
//!  lock (state_dir) ──> deploy id = release id ──> journal (critical subscriber)
//!        │
//!        ▼
//!  staging: rsync staging_path -> staging live tree, staging hooks   (prep_step records)
//!        │
//!        ▼
//!  Driver(Rollout(plan)) on a current-thread tokio runtime
//!     ports: HaproxyPool (--rollout) | no pool changes, RsyncTransfer, Canary, Hooks,
//!            webhooks (Discord, Slack; none with --no-log)
//!     records ──> journal, log_file (not with --no-log), and a channel ──> plain
//!                 lines | JSON lines on stdout
//!     prompts  <── the operator on a terminal, else "no"
//!     SIGINT / SIGTERM ──> interrupt (servers put back, exit 130); SIGHUP ignored
//! ```
//!
//! Only `--rsync` (the whole staging tree, no pulls) runs here for now.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mwdeploy_core::driver::{ChannelSubscriber, Driver, DriverHandle, Ports, Subscriber};
use mwdeploy_core::event::{PrepStatus, Record};
use mwdeploy_core::exec::Hosts;
use mwdeploy_core::journal::Journal;
use mwdeploy_core::lock::{DeployLock, Holder, LockError};
use mwdeploy_core::ports::{Hook, Notifier, PoolControl, Progress, Transfer};
use mwdeploy_core::{Decision, Event, HookPoint, ReleaseId, Rollout, Server, Summary};
use mwdeploy_rsync::{DeployInfo, RsyncTransfer};
use tokio::sync::mpsc;

use crate::adapters::{canary, haproxy, hooks, rsync_config, NoNotifier, NoPool};
use crate::error::CliError;
use crate::exit;
use crate::log_file::LogFile;
use crate::notify::{Curl, Webhooks};
use crate::output::Output;
use crate::render::{JsonLines, PlainLines};
use crate::request::{DeployRequest, OutputMode, Work};

/// How long a prompt on the terminal waits for an answer (no answer: no).
const PROMPT_WAIT: Duration = Duration::from_secs(300);

/// Whether this runner can do `work`: `--rsync` alone (no pulls, patches, l10n or
/// provisioning yet).
pub(crate) fn supports(work: &Work) -> bool {
    *work
        == Work {
            rsync: true,
            ..Work::default()
        }
}

/// Runs the deploy `req` asks for; returns the exit code (0, 1, 3 or 130).
pub(crate) fn run<W: Write>(req: &DeployRequest, out: &mut Output<W>) -> Result<i32, CliError> {
    let config = &req.config;
    let message = req.message.clone().unwrap_or_default();
    let _lock = match DeployLock::acquire(&config.state_dir, Holder::current(message)) {
        Ok(l) => l,
        Err(e @ LockError::Held { .. }) => {
            eprintln!("mwdeploy: refused: the deploy lock {e}");
            return Ok(exit::REFUSED);
        }
        Err(e) => {
            eprintln!("mwdeploy: cannot take the deploy lock: {e}");
            return Ok(exit::REFUSED);
        }
    };
    let release = new_release();
    let deploy_id = release.as_str().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    runtime.block_on(deploy(req, &deploy_id, release, out))
}

/// `<UTC time>-<4 hex>`: the deploy id, and the release id on every server.
fn new_release() -> ReleaseId {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    let suffix = format!("{:04x}", h.finish() & 0xffff);
    ReleaseId::at(SystemTime::now(), &suffix).expect("4 hex digits are a valid suffix")
}

/// Shows records on stdout as the request's output mode says.
struct Printer {
    json: Option<JsonLines>,
    plain: PlainLines,
    started: Instant,
}

impl Printer {
    fn new(mode: OutputMode, deploy_id: &str) -> Self {
        Printer {
            json: (mode == OutputMode::Json).then(|| JsonLines::new(deploy_id)),
            plain: PlainLines,
            started: Instant::now(),
        }
    }

    fn show<W: Write>(&mut self, out: &mut Output<W>, record: &Record) {
        match &mut self.json {
            Some(j) => j.event(out, &record.event, record.ts),
            None => self.plain.event(out, &record.event, self.started.elapsed()),
        }
        out.flush();
    }
}

/// A deploy-wide step before the machine starts (the staging sync), recorded in the
/// journal and shown.
struct Prep<'a, W: Write> {
    deploy: &'a str,
    journal: &'a mut Journal,
    log: &'a mut Option<LogFile>,
    printer: &'a mut Printer,
    out: &'a mut Output<W>,
}

impl<W: Write> Prep<'_, W> {
    fn step(&mut self, step: &str, status: PrepStatus, detail: Option<String>) {
        let record = Record {
            ts: SystemTime::now(),
            deploy: self.deploy.to_string(),
            event: Event::PrepStep {
                commits: Vec::new(),
                step: step.to_string(),
                status,
                detail,
            },
        };
        if let Err(e) = self.journal.append(&record) {
            eprintln!("mwdeploy: journal: {e}");
        }
        if let Some(log) = self.log.as_mut() {
            // Not critical; the log file warns once itself.
            let _ = log.record(&record);
        }
        self.printer.show(self.out, &record);
    }
}

async fn deploy<W: Write>(
    req: &DeployRequest,
    deploy_id: &str,
    release: ReleaseId,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let config = &req.config;
    let refused = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("mwdeploy: refused: {what}: {e}");
        Ok(exit::REFUSED)
    };
    let mut journal = match Journal::create(&config.state_dir, deploy_id) {
        Ok(j) => j,
        Err(e) => return refused("cannot open the journal", &e),
    };
    // --no-log: no log file and no webhooks (the journal stays).
    let mut log = if req.no_log {
        None
    } else {
        match LogFile::open(&config.log_file) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!(
                    "mwdeploy: warning: cannot open the log file {}: {e}; going on without it",
                    config.log_file.display()
                );
                None
            }
        }
    };
    let hosts = match Hosts::new(config.ssh_defaults()) {
        Ok(h) => Arc::new(h),
        Err(e) => return refused("cannot prepare ssh", &e),
    };
    let rsync = match rsync_config(config) {
        Ok(c) => c,
        Err(e) => return Err(CliError::Usage(e)),
    };
    let transfer = Arc::new(
        RsyncTransfer::new(rsync.clone(), hosts.clone(), DeployInfo::new(deploy_id))
            .map_err(|e| CliError::Usage(format!("rsync: {e}")))?,
    );
    let hooks = Arc::new(hooks(req, hosts.clone(), &rsync).map_err(CliError::Usage)?);
    let canary = canary(config, hosts.clone()).map_err(CliError::Usage)?;
    let pool: Arc<dyn PoolControl> = if req.rollout {
        Arc::new(haproxy(config, &hosts).map_err(CliError::Usage)?)
    } else {
        eprintln!(
            "mwdeploy: without --rollout the servers stay pooled: they serve while their \
             release is switched"
        );
        Arc::new(NoPool)
    };

    let mut printer = Printer::new(req.output, deploy_id);
    let mut plan = req.plan(deploy_id, release.clone());
    if !req.rollout {
        plan.preflight = false;
    }
    for s in &mut plan.servers {
        s.hooks = hooks.points(&s.id);
    }
    let staging = plan.staging.as_mut().map(|s| {
        s.hooks = hooks.points(&s.id);
        s.clone()
    });

    // Signals: from here on an interrupt reaches the machine (queued until it runs).
    let notifier: Arc<dyn Notifier> = if req.no_log {
        Arc::new(NoNotifier)
    } else {
        let webhooks = Webhooks::new(
            crate::notify::hooks(&config.webhooks),
            Curl::default(),
            deploy_id,
            plan.servers.iter().map(|s| s.id.to_string()).collect(),
            req.message.clone(),
        );
        if webhooks.is_on() {
            Arc::new(webhooks)
        } else {
            Arc::new(NoNotifier)
        }
    };
    let (driver, handle) = Driver::new(Ports {
        pool,
        transfer: transfer.clone(),
        health: Arc::new(canary),
        hooks: hooks.clone(),
        notifier,
    });
    let signals = tokio::spawn(watch_signals(handle.clone()));

    if let Some(staging) = &staging {
        let mut prep = Prep {
            deploy: deploy_id,
            journal: &mut journal,
            log: &mut log,
            printer: &mut printer,
            out,
        };
        if let Err(e) = sync_staging(&mut prep, &*transfer, &*hooks, staging, &release).await {
            if req.force {
                eprintln!("mwdeploy: warning: staging: {e} (--force: going on)");
            } else {
                signals.abort();
                eprintln!("mwdeploy: refused: staging: {e}; no production server was touched");
                return Ok(exit::REFUSED);
            }
        }
    }

    let rollout = Rollout::new(plan, tokio::time::Instant::now().into_std())
        .map_err(|e| CliError::Usage(format!("invalid rollout plan: {e}")))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut driver = driver.subscribe(journal);
    if let Some(log) = log {
        driver = driver.subscribe(log);
    }
    let driver = driver.subscribe(ChannelSubscriber(tx));
    let interactive = req.output != OutputMode::Json
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    let run = driver.run(rollout);
    tokio::pin!(run);
    let mut report = None;
    let mut channel_open = true;
    while report.is_none() || channel_open {
        tokio::select! {
            r = &mut run, if report.is_none() => report = Some(r),
            rec = rx.recv(), if channel_open => match rec {
                Some(record) => {
                    printer.show(out, &record);
                    if let Event::Prompt { question, answer: None } = &record.event {
                        ask(&handle, question, interactive);
                    }
                }
                None => channel_open = false,
            },
        }
    }
    signals.abort();
    let report = report.expect("the loop ends with a report");
    if req.output != OutputMode::Json {
        summary_line(out, &report.summary);
        for (server, why) in &report.left_out {
            out.fmt(format_args!("left out of the pool: {server}: {why}\n"));
        }
        out.flush();
    }
    if let Some(why) = &report.refused {
        eprintln!("mwdeploy: refused: {why}");
    }
    Ok(report.exit_code)
}

/// `✓ N succeeded   ✗ N failed   – N skipped/rolled back` (`! N warned` when any).
fn summary_line<W: Write>(out: &mut Output<W>, s: &Summary) {
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

/// Answers an open prompt: on a terminal, the operator (300 s, then no); otherwise no.
fn ask(handle: &DriverHandle, question: &str, interactive: bool) {
    if !interactive {
        handle.decide(Decision::Answer(false));
        return;
    }
    eprint!("{} Continue? [y/N] ", crate::render::Clean(question));
    let _ = std::io::stderr().flush();
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

/// SIGINT and SIGTERM stop the deploy gracefully; SIGHUP is taken and ignored.
async fn watch_signals(handle: DriverHandle) {
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
            _ = int.recv() => { handle.interrupt(); }
            _ = term.recv() => { handle.interrupt(); }
            _ = hup.recv() => {}
        }
    }
}

/// Syncs `staging_path` into staging's live tree with the servers' transfer, and runs
/// staging's `post_copy` and `post_activate` hooks; the machine then runs its canary.
async fn sync_staging<W: Write>(
    prep: &mut Prep<'_, W>,
    transfer: &dyn Transfer,
    hooks: &dyn Hook,
    staging: &Server,
    release: &ReleaseId,
) -> Result<(), String> {
    let progress = Progress::new(staging.id.clone(), "staging_sync", |_, _, _| {});
    prep.step("staging_sync", PrepStatus::Running, None);
    let synced = async {
        transfer.copy(staging, release, &progress).await?;
        if staging.hooks.contains(HookPoint::PostCopy) {
            hooks
                .run(staging, HookPoint::PostCopy, release, &progress)
                .await?;
        }
        transfer.activate(staging, release, &progress).await
    }
    .await;
    if let Err(e) = synced {
        let detail = format!("sync failed: {e}");
        prep.step("staging_sync", PrepStatus::Failed, Some(detail.clone()));
        return Err(detail);
    }
    prep.step("staging_sync", PrepStatus::Ok, None);
    if staging.hooks.contains(HookPoint::PostActivate) {
        prep.step("staging_hooks", PrepStatus::Running, None);
        if let Err(e) = hooks
            .run(staging, HookPoint::PostActivate, release, &progress)
            .await
        {
            let detail = format!("post_activate failed: {e}");
            prep.step("staging_hooks", PrepStatus::Failed, Some(detail.clone()));
            return Err(detail);
        }
        prep.step("staging_hooks", PrepStatus::Ok, None);
    }
    Ok(())
}
