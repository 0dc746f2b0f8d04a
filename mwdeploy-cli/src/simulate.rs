//! `mwdeploy simulate`: the engine on a simulated fleet, in virtual time.
//!
//! Flags become a [`Simulation`]; its events are rendered as they happen (plain lines
//! or JSON lines); the final report says whether every rule of the design held, which
//! decides the exit code. The deploy's own outcome (failed or rolled-back servers) is
//! part of the report, not of the exit code.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mwdeploy_core::Layout;
use mwdeploy_sim::{seed_from_env, sim_epoch, Faults, SimReport, Simulation};

use crate::cli::SimulateArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::{count, Clean, JsonLines, PlainLines, SummaryText};

/// The environment variable that seeds a run when `--seed` is not given.
const SEED_ENV: &str = "MWDEPLOY_SIM_SEED";

/// Runs the simulation `args` describe, writing to `out`; returns the exit code.
pub(crate) fn run<W: Write>(args: &SimulateArgs, out: &mut Output<W>) -> Result<i32, CliError> {
    let seed = seed(args.seed)?;
    let layout = Layout::from(args.layout);

    let mut faults = Faults::none();
    faults.canary_fail = args.canary_fail_rate;
    faults.transfer_fail = args.transfer_fail_rate;

    let mut deploy_id = String::new();
    let mut max_unavailable = 0;
    let mut checked = Ok(());
    let sim = Simulation::new(args.servers, seed)
        .layout(layout)
        .faults(faults)
        .policy(|p| {
            if let Some(n) = args.parallel {
                p.parallel = n;
            }
            if let Some(n) = args.max_unavailable {
                p.max_unavailable = n;
            }
            if let Some(stages) = &args.stages {
                p.stages = stages.0.clone();
            }
            if let Some(b) = args.failure_budget {
                p.failure_budget = b;
            }
            p.on_failure = args.on_failure.into();
        })
        .plan(|p| {
            // Check the plan before printing anything, so a bad one is only an error.
            checked = p.stages().map(drop);
            deploy_id = p.deploy_id.clone();
            max_unavailable = p.policy.max_unavailable;
        });
    checked.map_err(|e| CliError::Usage(format!("invalid plan: {e}")))?;

    let rerun = rerun_command(args, seed);
    let report = if args.json {
        let mut lines = JsonLines::new(&deploy_id);
        let report = sim
            .run_with(|ev, at| {
                if !args.quiet && !out.is_dead() {
                    lines.event(out, ev, sim_epoch() + at);
                }
            })
            .map_err(|e| CliError::Usage(format!("invalid plan: {e}")))?;
        // The line gets `ts` and `deploy` like every event line.
        let serde_json::Value::Object(mut object) = report.to_json() else {
            unreachable!("SimReport::to_json is an object")
        };
        object.insert(
            "deploy_exit_code".into(),
            exit::of(report.report.verdict).into(),
        );
        lines.object(out, object, sim_epoch() + report.virtual_duration);
        report
    } else {
        if !args.quiet {
            out.fmt(format_args!(
                "simulating a deploy to {} (seed {seed}; rerun: {rerun})\n",
                count(args.servers, "server")
            ));
        }
        let mut lines = PlainLines;
        let report = sim
            .run_with(|ev, at| {
                if !args.quiet && !out.is_dead() {
                    lines.event(out, ev, at);
                }
            })
            .map_err(|e| CliError::Usage(format!("invalid plan: {e}")))?;
        if !args.quiet {
            out.bytes(b"\n");
        }
        write_report(out, &report, max_unavailable, &rerun);
        report
    };

    if report.violations.is_empty() {
        Ok(exit::OK)
    } else {
        if args.json {
            // The report line holds the details; say on stderr how to repeat the run.
            eprintln!(
                "mwdeploy: the simulation broke {} (rerun: {rerun})",
                count(report.violations.len(), "rule check")
            );
        }
        Ok(exit::FAILED)
    }
}

/// `--seed`, else `$MWDEPLOY_SIM_SEED`, else one drawn from the clock.
fn seed(flag: Option<u64>) -> Result<u64, CliError> {
    if let Some(s) = flag {
        return Ok(s);
    }
    if let Some(s) = seed_from_env() {
        return Ok(s);
    }
    if let Some(v) = std::env::var_os(SEED_ENV) {
        // Set but not a number: silently picking another seed would defeat a rerun.
        return Err(CliError::Usage(format!(
            "{SEED_ENV}={:?} is not a seed: expected a whole number from 0 to {}",
            v,
            u64::MAX
        )));
    }
    Ok(clock_seed())
}

/// A seed short enough to retype, from the wall clock.
fn clock_seed() -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Mix seconds into the nanoseconds: some clocks tick in microseconds only.
    (t.as_secs().wrapping_mul(1_000_003) ^ u64::from(t.subsec_nanos())) % 1_000_000_000
}

/// The command that repeats this run: every flag that changes it, with the seed.
fn rerun_command(a: &SimulateArgs, seed: u64) -> String {
    let mut cmd = format!("mwdeploy simulate --servers {} --seed {seed}", a.servers);
    if a.canary_fail_rate != 0.0 {
        cmd += &format!(" --canary-fail-rate {}", a.canary_fail_rate);
    }
    if a.transfer_fail_rate != 0.0 {
        cmd += &format!(" --transfer-fail-rate {}", a.transfer_fail_rate);
    }
    if let Some(n) = a.parallel {
        cmd += &format!(" --parallel {n}");
    }
    if let Some(n) = a.max_unavailable {
        cmd += &format!(" --max-unavailable {n}");
    }
    if let Some(s) = &a.stages {
        let list: Vec<String> = s.0.iter().map(ToString::to_string).collect();
        cmd += &format!(" --stages {}", list.join(","));
    }
    if let Some(b) = a.failure_budget {
        cmd += &match b {
            mwdeploy_core::plan::FailureBudget::Count(n) => format!(" --failure-budget {n}"),
            mwdeploy_core::plan::FailureBudget::Percent(p) => format!(" --failure-budget {p}%"),
        };
    }
    let on_failure = match a.on_failure {
        crate::cli::SimOnFailure::Abort => "abort",
        crate::cli::SimOnFailure::Continue => "continue",
    };
    let layout = Layout::from(a.layout);
    format!("{cmd} --on-failure {on_failure} --layout {layout}")
}

/// The plain report block.
fn write_report<W: Write>(out: &mut Output<W>, r: &SimReport, max_unavailable: u32, rerun: &str) {
    let virtual_ms = Duration::from_millis(r.virtual_duration.as_millis() as u64);
    out.fmt(format_args!(
        "simulation report\n\
         \x20 servers           {}\n\
         \x20 seed              {}   (rerun: {rerun})\n\
         \x20 virtual duration  {} ({:.1} s)\n\
         \x20 max out of pool   {} (max_unavailable {max_unavailable})\n\
         \x20 summary           {}\n",
        r.servers,
        r.seed,
        humantime::format_duration(virtual_ms),
        r.virtual_duration.as_secs_f64(),
        r.max_out_of_pool,
        SummaryText(&r.summary),
    ));
    let outcome = match (&r.report.refused, &r.report.stopped) {
        (Some(why), _) => format!("refused: {}", Clean(why)),
        (None, Some(reason)) => format!("stopped: {reason}"),
        (None, None) => "ran to the end".to_string(),
    };
    out.fmt(format_args!(
        "  deploy outcome    {outcome}; its exit code would be {}\n",
        exit::of(r.report.verdict)
    ));
    if !r.report.left_out.is_empty() {
        const SHOWN: usize = 10;
        out.fmt(format_args!(
            "  left out of pool  {} (reported, as rule 3 asks)\n",
            count(r.report.left_out.len(), "server")
        ));
        for (server, why) in r.report.left_out.iter().take(SHOWN) {
            out.fmt(format_args!("    {server}: {}\n", Clean(why)));
        }
        if r.report.left_out.len() > SHOWN {
            out.fmt(format_args!(
                "    ... and {} more\n",
                r.report.left_out.len() - SHOWN
            ));
        }
    }
    if r.violations.is_empty() {
        out.bytes(b"  violations        none: every rule held\n");
    } else {
        out.fmt(format_args!(
            "  violations        {}:\n",
            r.violations.len()
        ));
        for v in &r.violations {
            out.fmt(format_args!("    {}\n", Clean(v)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Command, Invocation};
    use clap::Parser;

    fn args(extra: &[&str]) -> SimulateArgs {
        let mut argv = vec!["mwdeploy", "simulate"];
        argv.extend_from_slice(extra);
        match Invocation::try_parse_from(argv).unwrap().command {
            Some(Command::Simulate(a)) => a,
            other => panic!("not a simulate command: {other:?}"),
        }
    }

    fn run_to_string(a: &SimulateArgs) -> (Result<i32, CliError>, String) {
        let mut out = Output::new(Vec::new());
        let code = run(a, &mut out);
        (code, String::from_utf8(out.into_inner().unwrap()).unwrap())
    }

    #[test]
    fn the_rerun_command_repeats_the_run() {
        let a = args(&[
            "--servers",
            "12",
            "--canary-fail-rate",
            "0.5",
            "--stages",
            "1,50%",
            "--failure-budget",
            "10%",
            "--layout",
            "releases",
            "--on-failure",
            "continue",
        ]);
        let cmd = rerun_command(&a, 99);
        assert_eq!(
            cmd,
            "mwdeploy simulate --servers 12 --seed 99 --canary-fail-rate 0.5 --stages 1,50% \
             --failure-budget 10% --on-failure continue --layout releases"
        );
        let again = args(&cmd.split(' ').skip(2).collect::<Vec<_>>());
        assert_eq!(
            format!("{again:?}"),
            format!(
                "{:?}",
                args(&[
                    "--servers",
                    "12",
                    "--seed",
                    "99",
                    "--canary-fail-rate",
                    "0.5",
                    "--stages",
                    "1,50%",
                    "--failure-budget",
                    "10%",
                    "--on-failure",
                    "continue",
                    "--layout",
                    "releases",
                ])
            )
        );
    }

    #[test]
    fn a_plan_the_engine_refuses_is_a_usage_error_before_any_output() {
        let (code, text) =
            run_to_string(&args(&["--servers", "5", "--seed", "1", "--stages", "0"]));
        let err = code.unwrap_err();
        assert_eq!(err.exit_code(), exit::USAGE);
        assert!(err.to_string().contains("stage 1 has 0 servers"), "{err}");
        assert_eq!(text, "");
    }

    #[test]
    fn the_plain_report_shows_seed_and_summary() {
        let (code, text) = run_to_string(&args(&["--servers", "3", "--seed", "5", "--quiet"]));
        assert_eq!(code.unwrap(), exit::OK);
        assert!(text.starts_with("simulation report\n"), "{text}");
        assert!(text.contains("  seed              5   (rerun: mwdeploy simulate --servers 3 --seed 5 --on-failure abort --layout inplace)"), "{text}");
        assert!(
            text.contains("3 succeeded, 0 warned, 0 failed, 0 rolled back, 0 skipped"),
            "{text}"
        );
        assert!(text.contains("none: every rule held"), "{text}");
    }

    #[test]
    fn clock_seeds_are_short() {
        assert!(clock_seed() < 1_000_000_000);
    }
}
