//! The command line: every subcommand and flag, parsed with clap's derive API.
//!
//! Values are checked here, at parse time, so a bad flag is a usage error (exit 2)
//! that names the flag before anything runs.

use clap::{Args, Parser, Subcommand, ValueEnum};
use mwdeploy_core::plan::{FailureBudget, OnFailure, StageSize};
use mwdeploy_core::Layout;

/// Rolling deploys of MediaWiki through HAProxy, one server or small batch at a time.
#[derive(Debug, Parser)]
#[command(name = "mwdeploy", version, arg_required_else_help = true)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the rollout engine on a simulated fleet, in virtual time, and check its rules.
    #[command(
        long_about = "Run the rollout engine on a simulated fleet, in virtual time.\n\n\
            The same machine that deploys to real servers drives a fake fleet whose steps \
            fail at the given rates, drawn from one seed: the same seed and flags give the same \
            output. Every step is checked against the design's rules (never more than \
            max_unavailable out of the pool, never a failing server back in, every depooled \
            server put back or reported, ...).\n\n\
            Exit status: 0 when every rule held (whatever the deploy's own outcome, which the \
            report shows), 1 when a rule broke, 2 for a usage error.",
        after_help = "Examples:\n  \
            mwdeploy simulate --servers 50 --seed 7 --layout releases --canary-fail-rate 0.1 --on-failure continue\n  \
            mwdeploy simulate --servers 100000 --seed 1 --json | tail -n 1\n  \
            MWDEPLOY_SIM_SEED=7 mwdeploy simulate --servers 20 --stages 1,10%,100% --quiet"
    )]
    Simulate(SimulateArgs),
}

/// Flags of `mwdeploy simulate`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SimulateArgs {
    /// Servers in the simulated fleet (named mw00001, mw00002, ...).
    #[arg(long, value_name = "N", value_parser = servers)]
    pub(crate) servers: usize,

    /// Seed of every random choice [default: $MWDEPLOY_SIM_SEED, else derived from the clock;
    /// always printed, so the run can be repeated].
    #[arg(long, value_name = "S")]
    pub(crate) seed: Option<u64>,

    /// Probability that a server's new release is broken: its canary fails.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = rate, allow_negative_numbers = true)]
    pub(crate) canary_fail_rate: f64,

    /// Probability that a copy (or in-place transfer) fails.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = rate, allow_negative_numbers = true)]
    pub(crate) transfer_fail_rate: f64,

    /// Servers in flight at once, copies ahead included [default: 1].
    #[arg(long, value_name = "N", value_parser = parallel)]
    pub(crate) parallel: Option<u32>,

    /// Servers out of the pool at once; never raised by --parallel [default: 1].
    #[arg(long, value_name = "N", value_parser = max_unavailable)]
    pub(crate) max_unavailable: Option<u32>,

    /// Stage sizes, comma-separated: counts and percentages; the last one repeats
    /// (e.g. 1,10%,100%) [default: 100%].
    #[arg(long, value_name = "LIST", value_parser = stages)]
    pub(crate) stages: Option<Stages>,

    /// Failures tolerated before --on-failure decides: a count (2) or a percentage (5%)
    /// [default: 0].
    #[arg(long, value_name = "B", value_parser = failure_budget)]
    pub(crate) failure_budget: Option<FailureBudget>,

    /// What a failure beyond the budget does (a simulation has no one to prompt).
    #[arg(long, value_name = "WHAT", value_enum, default_value_t = SimOnFailure::Abort)]
    pub(crate) on_failure: SimOnFailure,

    /// How the release reaches a server: release directories, or rsync into the live tree.
    #[arg(long, value_enum, default_value_t = LayoutArg::Inplace)]
    pub(crate) layout: LayoutArg,

    /// One JSON object per line: every event, then the simulation_report.
    #[arg(long)]
    pub(crate) json: bool,

    /// Print only the final report (with --json: only the simulation_report line).
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

/// A parsed `--stages` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stages(pub(crate) Vec<StageSize>);

/// `--on-failure` for a simulation: `prompt` has no meaning there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SimOnFailure {
    /// Stop: no new server starts, pending servers are skipped.
    Abort,
    /// Never stop for failures.
    Continue,
}

impl From<SimOnFailure> for OnFailure {
    fn from(o: SimOnFailure) -> Self {
        match o {
            SimOnFailure::Abort => OnFailure::Abort,
            SimOnFailure::Continue => OnFailure::Continue,
        }
    }
}

/// `--layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LayoutArg {
    /// Release directories: copy ahead while pooled, switch atomically, roll back on failure.
    Releases,
    /// The old tool's way: depool, then rsync into the live tree; no rollback.
    Inplace,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Releases => Layout::Releases,
            LayoutArg::Inplace => Layout::Inplace,
        }
    }
}

/// A probability: 0.0 to 1.0.
fn rate(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| "expected a probability from 0.0 to 1.0".to_string())?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err("a probability must be within 0.0..=1.0".to_string())
    }
}

/// A whole number, at least 1; `zero` says what 0 would mean.
fn at_least_one(s: &str, zero: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| "expected a whole number, at least 1".to_string())?;
    if n == 0 {
        return Err(format!("must be at least 1: {zero}"));
    }
    Ok(n)
}

fn servers(s: &str) -> Result<usize, String> {
    at_least_one(s, "a simulation needs a fleet").map(|n| n as usize)
}

fn parallel(s: &str) -> Result<u32, String> {
    at_least_one(s, "with 0 in flight no server would ever start")
}

fn max_unavailable(s: &str) -> Result<u32, String> {
    at_least_one(
        s,
        "with 0 no server could leave the pool, so none could be deployed",
    )
}

/// `1,10%,100%`: each entry through [`StageSize::from_str`](std::str::FromStr).
fn stages(s: &str) -> Result<Stages, String> {
    s.split(',')
        .map(str::parse::<StageSize>)
        .collect::<Result<Vec<_>, _>>()
        .map(Stages)
}

fn failure_budget(s: &str) -> Result<FailureBudget, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rates_are_probabilities() {
        assert_eq!(rate("0"), Ok(0.0));
        assert_eq!(rate("1"), Ok(1.0));
        assert_eq!(rate("0.25"), Ok(0.25));
        for bad in ["-0.1", "1.01", "NaN", "inf", "x", ""] {
            assert!(rate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn zero_is_refused_where_it_means_nothing() {
        assert!(servers("0").unwrap_err().contains("at least 1"));
        assert!(parallel("0").unwrap_err().contains("at least 1"));
        assert!(max_unavailable("0").unwrap_err().contains("at least 1"));
        assert!(servers("-1").is_err());
        assert_eq!(servers("3"), Ok(3));
        assert_eq!(parallel("2"), Ok(2));
    }

    #[test]
    fn stages_parse_as_a_list() {
        assert_eq!(
            stages("1,10%,100%"),
            Ok(Stages(vec![
                StageSize::Count(1),
                StageSize::Percent(10),
                StageSize::Percent(100)
            ]))
        );
        assert!(stages("1,,100%").is_err());
        assert!(stages("ten").is_err());
    }

    #[test]
    fn simulate_flags_parse() {
        let cli = Cli::try_parse_from([
            "mwdeploy",
            "simulate",
            "--servers",
            "10",
            "--seed",
            "3",
            "--canary-fail-rate",
            "0.5",
            "--stages",
            "1,50%",
            "--failure-budget",
            "5%",
            "--on-failure",
            "continue",
            "--layout",
            "releases",
            "-q",
        ])
        .unwrap();
        let Command::Simulate(a) = cli.command;
        assert_eq!(a.servers, 10);
        assert_eq!(a.seed, Some(3));
        assert_eq!(a.canary_fail_rate, 0.5);
        assert_eq!(a.failure_budget, Some(FailureBudget::Percent(5)));
        assert_eq!(a.on_failure, SimOnFailure::Continue);
        assert_eq!(a.layout, LayoutArg::Releases);
        assert!(a.quiet && !a.json);
    }
}
