//! The deploy runner: a checked [`DeployRequest`] run against the real fleet.
//!
//! ```text
//!  proxies reachable (--rollout) ──> lock (state_dir) ──> deploy id = release id
//!        │                             journal (critical subscriber), log file
//!        ▼
//!  deploy_started, then staging (prepare): pulls, patches, sync to staging's live
//!  tree, l10n, staging hooks                                    (prep_step records)
//!        │
//!        ▼
//!  Driver(Rollout(plan)) on a current-thread tokio runtime: staging's canary, then
//!  the servers
//!     ports: HaproxyPool (--rollout) | no pool changes, RsyncTransfer (whole tree or
//!            the pulled subtrees), Canary, Hooks (with --l10n), webhooks (Discord,
//!            Slack; none with --no-log)
//!     records ──> journal, log_file (not with --no-log), and a channel ──> plain
//!                 lines | JSON lines on stdout
//!     prompts  <── the operator on a terminal, else "no"
//!     SIGINT / SIGTERM ──> staging stops between steps; the engine stops gracefully
//!                          (servers put back, exit 130); SIGHUP ignored
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mwdeploy_core::driver::{
    ChannelSubscriber, Driver, DriverHandle, Ports, Subscriber, SubscriberError,
};
use mwdeploy_core::event::{PrepStatus, Record};
use mwdeploy_core::exec::Hosts;
use mwdeploy_core::journal::Journal;
use mwdeploy_core::lock::{DeployLock, Holder, LockError};
use mwdeploy_core::ports::{Notifier, PoolControl};
use mwdeploy_core::{Decision, Event, Layout, ReleaseId, Rollout, Server, Summary};
use mwdeploy_rsync::{DeployInfo, RsyncConfig, RsyncTransfer, Scope as TransferScope, TreePath};
use tokio::sync::mpsc;

use crate::adapters::{canary, haproxy, hooks, rsync_config, NoNotifier, NoPool};
use crate::error::CliError;
use crate::exit;
use crate::log_file::LogFile;
use crate::notify::{Curl, Webhooks};
use crate::output::Output;
use crate::prepare::{self, Prep, Show, Stopped};
use crate::render::{JsonLines, PlainLines};
use crate::request::{DeployRequest, OutputMode, SyncScope};

/// How long a prompt on the terminal waits for an answer (no answer: no).
const PROMPT_WAIT: Duration = Duration::from_secs(300);

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

impl<W: Write> Show for (&mut Printer, &mut Output<W>) {
    fn show(&mut self, record: &Record) {
        self.0.show(self.1, record);
    }
}

/// Passes records on to `S`, all but the machine's `deploy_started`: the runner records
/// its own first, before the staging steps, so the journal starts with it.
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
    let hosts = match Hosts::new(config.ssh_defaults()) {
        Ok(h) => Arc::new(h),
        Err(e) => return refused("cannot prepare ssh", &e),
    };
    let rsync = rsync_config(config, req.work.provision).map_err(CliError::Usage)?;
    let hooks = Arc::new(hooks(req, hosts.clone(), &rsync).map_err(CliError::Usage)?);
    let canary = canary(config, hosts.clone()).map_err(CliError::Usage)?;
    let pool: Arc<dyn PoolControl> = if req.rollout {
        let pool = haproxy(config, &hosts).map_err(CliError::Usage)?;
        // Every proxy must answer before anything changes, also with --force (which
        // skips only the check that every target is UP).
        let unreachable: Vec<String> = pool
            .status()
            .await
            .proxies
            .into_iter()
            .filter_map(|p| p.error.map(|e| e.to_string()))
            .collect();
        if !unreachable.is_empty() {
            for e in &unreachable {
                eprintln!("mwdeploy: {e}");
            }
            hosts.close().await;
            return refused(
                "a proxy is unreachable",
                &"nothing was touched; every proxy must confirm each pool change",
            );
        }
        Arc::new(pool)
    } else {
        eprintln!(
            "mwdeploy: without --rollout the servers stay pooled: they serve while their \
             tree is updated"
        );
        Arc::new(NoPool)
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
    let mut printer = Printer::new(req.output, deploy_id);
    let mut plan = req.plan(deploy_id, release.clone());
    if !req.rollout || req.work.provision {
        // New servers are not UP yet; without --rollout the pool is not read.
        plan.preflight = false;
    }
    for s in &mut plan.servers {
        s.hooks = hooks.points(&s.id);
    }
    let staging = plan.staging.as_mut().map(|s| {
        s.hooks = hooks.points(&s.id);
        s.clone()
    });

    // SIGINT and SIGTERM: between staging steps, the deploy stops before production;
    // once the engine runs, it stops gracefully.
    let interrupted = Arc::new(AtomicBool::new(false));
    let engine: Arc<Mutex<Option<DriverHandle>>> = Arc::default();
    let signals = tokio::spawn(watch_signals(interrupted.clone(), engine.clone()));

    let scope = {
        let mut show = (&mut printer, &mut *out);
        let mut prep = Prep {
            deploy: deploy_id,
            journal: &mut journal,
            log: &mut log,
            show: &mut show,
            interrupted: &interrupted,
        };
        prep.record(Event::started(&plan));
        let prepared = prepare_staging(
            &mut prep,
            req,
            &rsync,
            &hosts,
            &hooks,
            staging.as_ref(),
            &plan,
            &release,
        )
        .await;
        match prepared {
            Ok(scope) => scope,
            Err(stopped) => {
                signals.abort();
                hosts.close().await;
                return Ok(match stopped {
                    Stopped::Interrupted => {
                        eprintln!("mwdeploy: interrupted before any production server was touched");
                        exit::INTERRUPTED
                    }
                    Stopped::Failed(e) => {
                        eprintln!(
                            "mwdeploy: refused: staging: {e}; no production server was touched"
                        );
                        exit::REFUSED
                    }
                });
            }
        }
    };
    let transfer = Arc::new(
        RsyncTransfer::new(rsync.clone(), hosts.clone(), scope.info)
            .and_then(|t| t.with_scope(scope.fleet))
            .map_err(|e| CliError::Usage(format!("rsync: {e}")))?,
    );

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
        transfer,
        health: Arc::new(canary),
        hooks: hooks.clone(),
        notifier,
    });
    {
        let mut engine = engine.lock().unwrap_or_else(|e| e.into_inner());
        *engine = Some(handle.clone());
        // An interrupt during staging's last step reaches the machine at once.
        if interrupted.load(Ordering::SeqCst) {
            handle.interrupt();
        }
    }

    let rollout = Rollout::new(plan, tokio::time::Instant::now().into_std())
        .map_err(|e| CliError::Usage(format!("invalid rollout plan: {e}")))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut driver = driver.subscribe(AfterStart(journal));
    if let Some(log) = log {
        driver = driver.subscribe(AfterStart(log));
    }
    let driver = driver.subscribe(AfterStart(ChannelSubscriber(tx)));
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

/// What the servers' transfer copies, and what their manifests record.
struct Scope {
    fleet: TransferScope,
    info: DeployInfo,
}

/// Staging's work before production: pulls and patches on the checkout, the sync to
/// staging's live tree with its hooks and l10n. Returns the servers' transfer scope
/// (the whole tree, or the subtrees pulled on top of the fleet's latest release).
#[allow(clippy::too_many_arguments)]
async fn prepare_staging(
    prep: &mut Prep<'_>,
    req: &DeployRequest,
    rsync: &RsyncConfig,
    hosts: &Arc<Hosts>,
    hooks: &Arc<mwdeploy_rsync::Hooks>,
    staging: Option<&Server>,
    plan: &mwdeploy_core::Plan,
    release: &ReleaseId,
) -> Result<Scope, Stopped> {
    let config = &req.config;
    let mut info = DeployInfo::new(plan.deploy_id.clone());
    let versions = if req.work.uses_versions() {
        match prepare::versions(req) {
            Ok(v) => v,
            Err(e) => {
                prep.step("versions", PrepStatus::Failed, Some(e.clone()), Vec::new());
                return Err(Stopped::Failed(e));
            }
        }
    } else {
        Vec::new()
    };
    if !req.work.rsync && !req.work.provision {
        let pulled = prepare::checkout(prep, req, &versions).await?;
        for (repo, commit) in pulled.commits {
            info = info.commit(repo, commit);
        }
    }
    let subtrees = match req.work.sync_scope(&versions) {
        SyncScope::Whole => None,
        SyncScope::Paths(paths) => Some(
            paths
                .iter()
                .map(|p| TreePath::new(&p.to_string_lossy()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Stopped::Failed(format!("sync scope: {e}")))?,
        ),
    };
    // A targeted copy builds on the live release: staging's own, and the fleet's latest.
    let scope_for = |base: Option<ReleaseId>| match &subtrees {
        None => TransferScope::Full,
        Some(paths) => TransferScope::subtrees(paths.clone(), base),
    };
    let probe = RsyncTransfer::new(rsync.clone(), hosts.clone(), info.clone())
        .map_err(|e| Stopped::Failed(format!("rsync: {e}")))?;
    let releases = config.layout == Layout::Releases && subtrees.is_some();
    if let Some(staging) = staging {
        let base = if releases {
            probe
                .latest_release(std::slice::from_ref(staging))
                .await
                .map_err(|e| {
                    prep.fail_step(
                        "staging_sync",
                        format!("cannot read staging's releases: {e}"),
                    )
                })?
        } else {
            None
        };
        let transfer = RsyncTransfer::new(rsync.clone(), hosts.clone(), info.clone())
            .and_then(|t| t.with_scope(scope_for(base)))
            .map_err(|e| prep.fail_step("staging_sync", format!("rsync: {e}")))?;
        let l10n = match (&config.l10n_command, req.work.l10n) {
            (Some(cmd), true) => {
                let point = prepare::l10n_point(config.layout);
                Some(
                    mwdeploy_rsync::Hooks::new(hosts.clone(), rsync)
                        .and_then(|h| h.global(point, vec![prepare::l10n_argv(cmd, config.layout)]))
                        .map_err(|e| prep.fail_step("l10n", format!("l10n_command: {e}")))?,
                )
            }
            _ => None,
        };
        prepare::sync_staging(
            prep,
            &transfer,
            &**hooks,
            l10n.as_ref().map(|h| h as &dyn mwdeploy_core::ports::Hook),
            staging,
            release,
            config.layout,
        )
        .await?;
    }
    let fleet_base = if releases {
        probe.latest_release(&plan.servers).await.map_err(|e| {
            prep.fail_step(
                "fleet_releases",
                format!("cannot read the servers' releases: {e}"),
            )
        })?
    } else {
        None
    };
    Ok(Scope {
        fleet: scope_for(fleet_base),
        info,
    })
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

/// SIGINT and SIGTERM stop the deploy gracefully: `interrupted` is set (staging stops
/// between steps) and the engine, once it runs, is asked to stop. SIGHUP is taken and
/// ignored: the deploy carries on without its terminal.
async fn watch_signals(interrupted: Arc<AtomicBool>, engine: Arc<Mutex<Option<DriverHandle>>>) {
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
            _ = hup.recv() => continue,
        }
        interrupted.store(true, Ordering::SeqCst);
        if let Some(h) = engine.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h.interrupt();
        }
    }
}
