//! `mwdeploy demo`: the real engine deploying to a simulated fleet, in real time.
//!
//! ```text
//!  flags ──> Plan (mw1..mwN, pooled, parallel 1, max_unavailable 1, on_failure: prompt)
//!        └─> FleetModel (no random faults; --fail breaks one server's new release),
//!            paced so a server takes a few seconds, as SimFleet ports reporting progress
//!
//!  Driver(Rollout(plan)) on a current-thread tokio runtime, real clock
//!     records ──> ChannelSubscriber ──> mpsc ──> the dashboard (a terminal, no --no-tui)
//!                                            └─> plain lines | JSON lines on stdout
//!     prompts  <── the dashboard's keys | the line prompt on a terminal | else "no"
//!     SIGINT / SIGTERM ──> the engine stops gracefully (servers put back, exit 130)
//! ```
//!
//! The fleet is the one `mwdeploy simulate` uses, but its steps are real sleeps: the
//! tokio clock is not paused. Unlike a deploy's session there is no journal, log file,
//! lock or webhook: nothing is written anywhere but the terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mwdeploy_core::event::Record;
use mwdeploy_core::{Decision, Layout, Plan, ReleaseId, Report, Rollout, Server, ServerId};
use mwdeploy_runtime::driver::{ChannelSubscriber, Driver, DriverHandle, Ports};
use mwdeploy_sim::{Faults, FleetModel, SimFleet};
use tokio::sync::mpsc;

use crate::cli::DemoArgs;
use crate::error::CliError;
use crate::output::Output;
use crate::render::{count, JsonLines, PlainLines};
use crate::session::{summary_line, watch_signals};

/// The simulated steps' durations as a factor of the simulation's: a copy of about
/// 8 s becomes about 2.4 s, so a server's whole cycle takes 2 to 4 s.
const PACE: f64 = 0.3;

/// How often a copy reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(300);

/// Pause between canary attempts: short, so a failing server does not stall the show.
const CANARY_PAUSE: Duration = Duration::from_millis(700);

/// Seeds the steps' jitter; the demo draws no random faults.
const SEED: u64 = 1;

/// Runs the demo `args` describe, writing to `out`; returns the exit code (0, 1 or 130).
pub(crate) fn run<W: Write>(args: &DemoArgs, out: &mut Output<W>) -> Result<i32, CliError> {
    // Checked before anything is printed: a bad --fail is only a usage error.
    let (plan, fleet) = setup(args, SystemTime::now())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    runtime.block_on(demo(args, plan, fleet, out))
}

/// `mw1`, `mw2`, ...: the demo fleet's servers.
fn names(servers: usize) -> Vec<ServerId> {
    (1..=servers)
        .map(|n| ServerId::new(&format!("mw{n}")).expect("generated names are valid"))
        .collect()
}

/// The plan and the fleet the demo deploys to, with `--fail`'s server broken.
fn setup(args: &DemoArgs, now: SystemTime) -> Result<(Plan, SimFleet), CliError> {
    let ids = names(args.servers);
    let servers: Vec<Server> = ids.iter().cloned().map(Server::new).collect();
    let layout = Layout::from(args.layout);
    let mut model =
        FleetModel::new(SEED, layout, Faults::none(), &servers, Vec::new(), None).with_pace(PACE);
    if let Some(name) = &args.fail {
        let known = ids.iter().find(|id| id.as_str() == name.as_str());
        match known {
            Some(id) => {
                model.break_release(id);
            }
            None => {
                let valid: Vec<&str> = ids.iter().map(ServerId::as_str).collect();
                return Err(CliError::Usage(format!(
                    "--fail {}: the demo fleet has no such server; its servers are {}",
                    crate::render::Clean(name),
                    valid.join(", ")
                )));
            }
        }
    }
    let release = ReleaseId::at(now, "demo").expect("\"demo\" is a valid suffix");
    let mut plan = Plan::new(release.as_str().to_string(), release, layout, servers);
    // The defaults of a rollout: one server at a time, at most one out of the pool,
    // one stage, a failure beyond a budget of 0 asks the operator.
    plan.policy.on_failure = mwdeploy_core::plan::OnFailure::Prompt;
    plan.policy.canary.retry_pause = CANARY_PAUSE;
    plan.meta.flags = flags(args);
    let fleet = SimFleet::new(model).with_progress(PROGRESS_EVERY);
    Ok((plan, fleet))
}

/// The command line, as `deploy_started` records it.
fn flags(args: &DemoArgs) -> Vec<String> {
    let mut f = vec![
        "demo".to_string(),
        "--servers".into(),
        args.servers.to_string(),
    ];
    if let Some(s) = &args.fail {
        f.extend(["--fail".to_string(), s.clone()]);
    }
    if args.no_tui {
        f.push("--no-tui".into());
    }
    f.extend([
        "--layout".to_string(),
        Layout::from(args.layout).to_string(),
    ]);
    if args.json {
        f.push("--json".into());
    }
    f
}

/// Shows records as they come: plain lines (time since the start) or JSON lines.
enum Lines {
    Plain(PlainLines, Instant),
    Json(JsonLines),
}

impl Lines {
    fn show<W: Write>(&mut self, out: &mut Output<W>, record: &Record) {
        match self {
            Lines::Plain(p, started) => p.event(out, &record.event, started.elapsed()),
            Lines::Json(j) => j.event(out, &record.event, record.ts),
        }
        out.flush();
    }
}

async fn demo<W: Write>(
    args: &DemoArgs,
    plan: Plan,
    fleet: SimFleet,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let header = header(args, &plan);
    if args.json {
        // Stdout is for JSON lines only.
        eprint!("{header}");
    } else {
        out.bytes(header.as_bytes());
        out.flush();
    }
    let mut lines = if args.json {
        Lines::Json(JsonLines::new(&plan.deploy_id))
    } else {
        Lines::Plain(PlainLines, Instant::now())
    };

    let (driver, handle) = Driver::new(Ports::all(Arc::new(fleet)));
    let (tx, rx) = mpsc::unbounded_channel();
    let driver = driver.subscribe(ChannelSubscriber(tx));
    let controls = mwdeploy::session::Controls::new();
    controls.attach(handle.clone());
    let signals = tokio::spawn(watch_signals(controls));
    let rollout = Rollout::new(plan, tokio::time::Instant::now().into_std())
        .map_err(|e| CliError::Usage(format!("invalid rollout plan: {e}")))?;
    let interactive =
        !args.json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let dashboard = !args.json
        && !args.no_tui
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();

    let run = driver.run(rollout);
    if dashboard {
        // The dashboard takes the records, answers prompts and stops through the handle.
        let control = EngineControl(handle.clone());
        let opts = crate::tui::TuiOptions::from_env(false);
        let (report, shown) = tokio::join!(run, crate::tui::run(rx, &control, opts));
        signals.abort();
        if let Err(e) = shown {
            eprintln!("mwdeploy: the dashboard failed ({e}); the demo went on without it");
        }
        return Ok(finish(out, &report));
    }
    let reply = mwdeploy::session::Reply::new(handle.clone());
    let report = crate::session::lines(run, rx, &reply, interactive, |r| lines.show(out, r)).await;
    signals.abort();
    if args.json {
        return Ok(crate::exit::of(report.verdict));
    }
    Ok(finish(out, &report))
}

/// The summary line and the servers left out, as a deploy prints them; the exit code.
fn finish<W: Write>(out: &mut Output<W>, report: &Report) -> i32 {
    summary_line(out, &report.summary);
    for (server, why) in &report.left_out {
        out.fmt(format_args!("left out of the pool: {server}: {why}\n"));
    }
    out.flush();
    crate::exit::of(report.verdict)
}

/// The dashboard's keys, sent to the running engine.
struct EngineControl(DriverHandle);

impl crate::tui::Control for EngineControl {
    fn decide(&self, d: Decision) {
        self.0.decide(d);
    }

    fn pool(
        &self,
        _server: &str,
        _depool: bool,
        _: &tokio::sync::mpsc::UnboundedSender<mwdeploy_core::event::Record>,
    ) {
        // As in a deploy: manual pool changes wait for the engine's own pool action.
    }

    fn interrupt(&self) {
        self.0.interrupt();
    }
}

/// What the demo is, before its first line.
fn header(args: &DemoArgs, plan: &Plan) -> String {
    let ids: Vec<ServerId> = plan.servers.iter().map(|s| s.id.clone()).collect();
    let span = match ids.as_slice() {
        [one] => one.to_string(),
        [first, .., last] => format!("{first} .. {last}"),
        [] => String::new(),
    };
    let mut h = format!(
        "mwdeploy demo: a simulated fleet of {} ({span}), {} layout; nothing real is touched.\n\
         Each server is depooled (one at a time), updated, checked by its canary and put back.\n",
        count(ids.len(), "server"),
        plan.layout,
    );
    if let Some(name) = &args.fail {
        let what = match plan.layout {
            Layout::Releases => "rolled back",
            Layout::Inplace => "kept out of the pool",
        };
        h += &format!(
            "{name}'s new release is broken (--fail): its canary fails and it is {what}.\n"
        );
    }
    h.push('\n');
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, Invocation};
    use clap::Parser;

    fn args(extra: &[&str]) -> DemoArgs {
        let mut argv = vec!["mwdeploy", "demo"];
        argv.extend_from_slice(extra);
        match Invocation::try_parse_from(argv).unwrap().command {
            Some(Command::Demo(a)) => a,
            other => panic!("not a demo command: {other:?}"),
        }
    }

    #[test]
    fn the_fleet_is_named_mw1_onwards_and_rolls_out_one_at_a_time() {
        let (plan, _) = setup(&args(&["--servers", "3"]), SystemTime::UNIX_EPOCH).unwrap();
        let names: Vec<&str> = plan.servers.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(names, ["mw1", "mw2", "mw3"]);
        assert!(plan.servers.iter().all(|s| s.pooled));
        assert_eq!(plan.layout, Layout::Releases);
        assert_eq!(plan.policy.parallel, 1);
        assert_eq!(plan.policy.max_unavailable, 1);
        assert_eq!(
            plan.policy.on_failure,
            mwdeploy_core::plan::OnFailure::Prompt
        );
        assert_eq!(plan.deploy_id, "19700101T000000Z-demo");
    }

    #[test]
    fn an_unknown_fail_server_is_a_usage_error_naming_the_servers() {
        let err = setup(
            &args(&["--servers", "2", "--fail", "mw3"]),
            SystemTime::now(),
        )
        .expect_err("mw3 is not in a fleet of 2");
        assert_eq!(err.exit_code(), crate::exit::USAGE);
        assert_eq!(
            err.to_string(),
            "--fail mw3: the demo fleet has no such server; its servers are mw1, mw2"
        );
    }

    #[test]
    fn the_failing_server_s_canary_fails_and_only_its() {
        let (plan, fleet) = setup(
            &args(&["--servers", "2", "--fail", "mw2"]),
            SystemTime::now(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let report = rt.block_on(async {
            let (driver, handle) = Driver::new(Ports::all(Arc::new(fleet)));
            let (tx, mut rx) = mpsc::unbounded_channel();
            let driver = driver.subscribe(ChannelSubscriber(tx));
            let answer = tokio::spawn(async move {
                while let Some(r) = rx.recv().await {
                    if let mwdeploy_core::Event::Prompt { answer: None, .. } = r.event {
                        handle.decide(mwdeploy_core::Decision::Answer(false));
                    }
                }
            });
            let rollout = Rollout::new(plan, tokio::time::Instant::now().into_std()).unwrap();
            let report = driver.run(rollout).await;
            answer.await.unwrap();
            report
        });
        assert_eq!(report.summary.succeeded, 1);
        assert_eq!(report.summary.rolled_back, 1);
        assert_eq!(crate::exit::of(report.verdict), crate::exit::FAILED);
        assert!(report.left_out.is_empty(), "{:?}", report.left_out);
    }

    #[test]
    fn the_header_says_nothing_real_is_touched() {
        let a = args(&["--servers", "3", "--fail", "mw2"]);
        let (plan, _) = setup(&a, SystemTime::now()).unwrap();
        let h = header(&a, &plan);
        assert!(
            h.starts_with(
                "mwdeploy demo: a simulated fleet of 3 servers (mw1 .. mw3), releases layout; \
                 nothing real is touched.\n"
            ),
            "{h}"
        );
        assert!(h.contains("mw2's new release is broken (--fail)"), "{h}");
    }
}
