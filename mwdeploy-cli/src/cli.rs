//! The command line: every subcommand and flag, parsed with clap's derive API.
//!
//! Values are checked here, at parse time, so a bad flag is a usage error (exit 2)
//! that names the flag before anything runs. A deploy is the top-level invocation with
//! deploy flags (`mwdeploy --core --mediawiki --servers all --rollout`), as in the old
//! tool; other commands are subcommands.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use mwdeploy_core::plan::{FailureBudget, OnFailure, StageSize};
use mwdeploy_core::Layout;

use crate::config::{check_budget, check_stage};

/// Rolling deploys of MediaWiki through HAProxy, one server or small batch at a time.
#[derive(Debug, Parser)]
#[command(
    name = "mwdeploy",
    version,
    // Not `args_conflicts_with_subcommands`: clap counts the global -C as such an argument,
    // so `mwdeploy -C x.yaml status` would be refused. lib.rs refuses deploy flags given
    // with a subcommand instead (`DeployArgs::given`).
    long_about = "Rolling deploys of MediaWiki through HAProxy, one server or small batch at a time.\n\n\
        A deploy prepares the staging checkout on this host (git pulls, patches, the \
        localisation cache, a sync to the host's own live tree and its canary), then updates \
        the servers stage by stage: with --rollout each server is depooled from every proxy, \
        updated, checked by its canary and put back. The flags and the config are the old \
        tool's, with the same meaning.\n\n\
        Exit status: 0 every selected server succeeded; 1 the deploy finished with failed, \
        rolled-back or skipped servers; 2 usage or config error (nothing was touched); 3 \
        refused before touching production; 130 interrupted.",
    after_help = "Examples:\n  \
        mwdeploy --core --mediawiki --l10n --servers all --rollout\n  \
        mwdeploy --versions 1.45 --extension Echo,CirrusSearch --servers all --rollout\n  \
        mwdeploy --config --servers all --rollout -m \"T123: raise the upload limit\"\n  \
        mwdeploy --rsync --servers all --rollout --parallel 2 --max-unavailable 2\n  \
        mwdeploy --rsync --servers mw-us-east-011 --rollout --force\n  \
        mwdeploy --patch T123.patch --patch-target extensions/Echo --versions 1.45 --servers all --rollout\n  \
        mwdeploy --provision --servers mw-us-east-031\n  \
        mwdeploy --mediawiki --rollout --stages 1,10%,100% --failure-budget 5% --on-failure abort\n  \
        mwdeploy --core --rollout --dry-run -C ./config.yaml\n  \
        mwdeploy simulate --servers 50 --seed 7\n  \
        mwdeploy status\n  \
        mwdeploy log --latest --follow\n\n\
        Config: -C/--config-file, else $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml \
        (refused when group or others can write it)."
)]
pub(crate) struct Invocation {
    /// The config file [default: $MWDEPLOY_CONFIG, else /etc/mwdeploy/config.yaml].
    #[arg(short = 'C', long = "config-file", value_name = "PATH", global = true)]
    pub(crate) config_file: Option<PathBuf>,

    /// The deploy flags (a deploy is the top-level invocation).
    #[command(flatten)]
    pub(crate) deploy: DeployArgs,

    /// What to do other than a deploy.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
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

    /// Pool state of every pooled server on every proxy and backend, and the release each
    /// one serves.
    #[command(
        long_about = "Pool state of every pooled server (pooled: true) on every proxy and \
            backend, in HAProxy's own words: status (UP, DOWN, MAINT, DRAIN), admin and \
            operational state, sessions, queue and health check. A server whose state differs \
            between proxies is shown as drift. In the release layout, the release each server \
            serves, and drift between servers' releases. Nothing is changed.\n\n\
            Exit status: 0 when every pooled server is UP on every proxy and backend; 1 when \
            one is not, or a proxy could not be read; 2 for a usage or config error.",
        after_help = "Examples:\n  \
            mwdeploy status\n  \
            mwdeploy status --json | jq '.servers[] | select(.up | not) | .server'\n  \
            mwdeploy -C ./config.yaml status || echo 'not every server is UP'"
    )]
    Status(StatusArgs),

    /// Show a deploy's journal: the latest, or the one named; --follow a running one.
    #[command(
        long_about = "Show a deploy's journal (<state_dir>/deploys/<ID>.jsonl): as the \
            deploy's plain lines, times counted from its first record, or with --json the \
            journal's lines as they are. Without an ID, the latest deploy.\n\n\
            --follow keeps reading as the deploy writes, until it finishes (or its lock is \
            free and nothing came for a few seconds: the deploy died).\n\n\
            Exit status: 0 shown; 1 no journal, or a line that is not a record; 2 for a \
            usage or config error (an unknown ID lists the latest ones); 130 --follow ended by \
            SIGINT or SIGTERM.",
        after_help = "Examples:\n  \
            mwdeploy log\n  \
            mwdeploy log --latest --follow\n  \
            mwdeploy log 20261122T040000Z-ab12 --json | jq -c 'select(.event == \"canary\")'"
    )]
    Log(LogArgs),

    /// The deploy lock of the state dir: who holds it; clear a dead holder's record.
    #[command(
        long_about = "The deploy lock of the state dir: one deploy, pool change or recovery \
            at a time. `lock status` says who holds it (user, host, pid, start time, message) or \
            that nobody does; `lock release` clears the record a holder that is gone left \
            behind, and refuses while the holder runs.\n\n\
            Exit status: 0 done; 1 the lock file could not be read or written; 2 usage or \
            config error; 3 refused: the holder is still running.",
        after_help = "Examples:\n  \
            mwdeploy lock status\n  \
            mwdeploy lock release"
    )]
    Lock(LockArgs),

    /// Release layout: the releases on each server with their manifests, and which is live.
    #[command(
        long_about = "Release layout: the releases on each server (newest first) with their \
            manifests (when made, by which deploy, what it copied, the staging commits), which \
            one is live and where a rollback would go. In the in-place layout there are no \
            release directories, and it says so.\n\n\
            Exit status: 0 every server read; 1 a server could not be read; 2 for a usage or \
            config error (a server not in the config).",
        after_help = "Examples:\n  \
            mwdeploy releases\n  \
            mwdeploy releases --servers mw-us-east-011,mw-us-east-012"
    )]
    Releases(ReleasesArgs),

    /// Print the shell completion script for SHELL.
    #[command(
        long_about = "Print the completion script for SHELL on stdout: every subcommand and \
            flag. No config is read.",
        after_help = "Examples:\n  \
            mwdeploy completions bash > /etc/bash_completion.d/mwdeploy\n  \
            mwdeploy completions zsh > \"${fpath[1]}/_mwdeploy\"\n  \
            mwdeploy completions fish > ~/.config/fish/completions/mwdeploy.fish"
    )]
    Completions(CompletionsArgs),

    /// Make the previous (or a named) release live again (release layout).
    #[command(
        long_about = "Make the previous (or a named) release live again on the servers \
            (release layout).\n\n\
            Each server is depooled from every proxy, switched back to the earlier release \
            (one atomic switch of a symlink), its post_activate hooks run, its canary \
            checked, and it is repooled; --parallel servers at once (default: \
            rollout.max_unavailable). A server whose earlier release fails its canary is \
            switched back to the release it served before. --fast switches without \
            depooling, for incidents: the switch is atomic.\n\n\
            In the in-place layout no earlier release is kept on the servers: the command \
            says how to redeploy an older staging commit instead.\n\n\
            Exit status: 0 every server rolled back; 1 a server failed; 2 usage or config \
            error; 3 refused (the lock is held, a proxy unreachable); 130 interrupted.",
        after_help = "Examples:\n  \
            mwdeploy rollback                                   # every server to its previous release\n  \
            mwdeploy rollback --servers mw1,mw2 -m \"T123: revert first, fix later\"\n  \
            mwdeploy rollback --to 20261122T031500Z-1a2b --parallel 2\n  \
            mwdeploy rollback --fast                            # incident: no depool, atomic switch"
    )]
    Rollback(RollbackArgs),

    /// Finish what a killed deploy left: every server it left out of the pool is made
    /// whole, canaried and repooled.
    #[command(
        long_about = "Finish what a killed deploy left. The journals of deploys that did not \
            finish tell which servers are out of the pool; each one is made whole (in place, \
            copied again from staging if its copy was cut; in the release layout its live \
            release is whole, since the switch is atomic), its post_activate hooks run, its \
            canary checked, and it is repooled on every proxy. A server whose canary fails \
            stays out and is reported (release layout: rolled back first). Then the old \
            journals are closed and the lock is released. Safe to run twice.\n\n\
            Exit status: 0 every server back (or nothing to do); 1 a server could not be put \
            back; 2 usage or config error; 3 refused (a deploy holds the lock, a proxy is \
            unreachable); 130 interrupted.",
        after_help = "Examples:\n  \
            mwdeploy recover\n  \
            mwdeploy recover --json | jq -c 'select(.event == \"pool\")'"
    )]
    Recover(RecoverArgs),

    /// Take a server out of the pool, or put it back, on every proxy and backend.
    #[command(
        long_about = "Manual pool control: depool takes SERVER out of the pool on every proxy \
            and backend (drain, wait for its sessions, maintenance), repool runs its canary \
            and then puts it back (ready, confirmed serving on every proxy). Both take the \
            deploy lock and are journaled; `mwdeploy recover` never undoes them.\n\n\
            Exit status: 0 done and confirmed; 1 the canary failed (not repooled) or a proxy \
            did not confirm; 2 usage or config error; 3 refused (the lock is held, a proxy \
            unreachable).",
        after_help = "Examples:\n  \
            mwdeploy pool depool mw-us-east-012\n  \
            mwdeploy pool repool mw-us-east-012\n  \
            mwdeploy pool repool mw-us-east-012 --force    # without the canary"
    )]
    Pool(PoolArgs),

    /// Check the config and reach every proxy and server.
    #[command(
        long_about = "Parse and check the config, then reach every proxy (its admin socket) \
            and every server (ssh, with host keys checked: a key missing from known_hosts is \
            printed for you to check and add, never accepted), and look at the staging \
            checkout (a checkout the web server user can write is a warning). Nothing is \
            changed.\n\n\
            Exit status: 0 everything reached; 1 something could not be reached; 2 config \
            error.",
        after_help = "Examples:\n  \
            mwdeploy check-config\n  \
            mwdeploy -C ./config.yaml check-config"
    )]
    CheckConfig,

    /// Watch a rolling deploy to a simulated fleet, in real time: nothing real is touched.
    #[command(
        long_about = "Watch a rolling deploy to a simulated fleet, in real time.\n\n\
            The real engine and dashboard (plain lines without a terminal) deploy to fake \
            servers named mw1, mw2, ...: each is depooled \
            (at most one out of the pool at once), updated, checked by its canary and put \
            back, taking a few seconds. Nothing real is touched: no config, no root, no \
            servers, no network. --fail breaks one server's new release so that its canary \
            fails: in the release layout it is rolled back, in place it is kept out of the \
            pool, and the deploy asks whether to go on (on a terminal; otherwise the answer \
            is no).\n\n\
            Exit status: 0 every server succeeded; 1 a server failed or was rolled back and \
            the deploy stopped; 2 usage error; 130 interrupted (Ctrl-C: servers in flight \
            finish their cycle first).",
        after_help = "Examples:\n  \
            mwdeploy demo\n  \
            mwdeploy demo --servers 8 --fail mw3\n  \
            mwdeploy demo --layout inplace --fail mw2\n  \
            mwdeploy demo --servers 2 --json"
    )]
    Demo(DemoArgs),

    /// Start a small real fleet on 127.0.0.1 to deploy to, until Ctrl-C.
    #[command(
        long_about = "Start a small real fleet on 127.0.0.1 to deploy to, until Ctrl-C.\n\n\
            The same programs as production, started as this user: two HAProxies with \
            their admin sockets, nginx and php-fpm per server, one sshd per server, and a \
            git staging checkout. The config for it is written (0600) and printed with \
            the commands to try in another terminal. Ctrl-C (or SIGTERM) stops every \
            process and removes the fleet's folder. Needs the Debian packages haproxy, \
            nginx, php-fpm, openssh-server, openssh-client, rsync, curl and git; no root.\n\n\
            Exit status: 0 stopped cleanly; 1 it could not start or stop.",
        after_help = "Examples:\n  \
            mwdeploy sandbox\n  \
            mwdeploy sandbox --servers 4 --layout inplace"
    )]
    Sandbox(SandboxArgs),
}

/// Flags of `mwdeploy sandbox`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SandboxArgs {
    /// Servers in the fleet, named mw1, mw2, ... (1 to 8).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = sandbox_servers)]
    pub(crate) servers: usize,

    /// The release_layout of the config written for it.
    #[arg(long, value_enum, default_value_t = LayoutArg::Releases)]
    pub(crate) layout: LayoutArg,
}

fn sandbox_servers(s: &str) -> Result<usize, String> {
    let n = at_least_one(s, "a sandbox needs a server")?;
    if n > 8 {
        return Err(
            "a sandbox has at most 8 servers (each is nginx, php-fpm and sshd)".to_string(),
        );
    }
    Ok(n as usize)
}

/// `mwdeploy pool ...`.
#[derive(Debug, Clone, Args)]
pub(crate) struct PoolArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: PoolCommand,
}

/// `pool depool` / `pool repool`.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum PoolCommand {
    /// Take SERVER out of the pool on every proxy and backend.
    Depool {
        /// The server (a name of mw_servers).
        server: String,
    },
    /// Put SERVER back into the pool after its canary passes.
    Repool {
        /// The server (a name of mw_servers).
        server: String,
        /// Repool without running the canary first.
        #[arg(long)]
        force: bool,
    },
}

impl Command {
    /// The subcommand's name, as typed.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::Simulate(_) => "simulate",
            Command::Status(_) => "status",
            Command::Log(_) => "log",
            Command::Lock(_) => "lock",
            Command::Releases(_) => "releases",
            Command::Completions(_) => "completions",
            Command::Rollback(_) => "rollback",
            Command::Recover(_) => "recover",
            Command::Pool(_) => "pool",
            Command::CheckConfig => "check-config",
            Command::Demo(_) => "demo",
            Command::Sandbox(_) => "sandbox",
        }
    }
}

/// Flags of `mwdeploy demo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    /// Servers in the simulated fleet, named mw1, mw2, ... (1 to 50).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = demo_servers)]
    pub(crate) servers: usize,

    /// Break this server's new release so its canary fails (e.g. mw2).
    #[arg(long, value_name = "SERVER")]
    pub(crate) fail: Option<String>,

    /// How the release reaches a server: release directories, or rsync into the live tree.
    #[arg(long, value_enum, default_value_t = LayoutArg::Releases)]
    pub(crate) layout: LayoutArg,

    /// One JSON event per line on stdout, as a deploy's --json (prompts answer no).
    #[arg(long)]
    pub(crate) json: bool,

    /// Plain lines instead of the dashboard (they are the default without a terminal).
    #[arg(long)]
    pub(crate) no_tui: bool,
}

/// Flags of `mwdeploy status`.
#[derive(Debug, Clone, Args)]
pub(crate) struct StatusArgs {
    /// One JSON object: every pooled server with its state on each proxy and backend,
    /// the proxies, drift, releases.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Flags of `mwdeploy log`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LogArgs {
    /// The deploy's id (its journal's name) [default: the latest].
    #[arg(value_name = "ID")]
    pub(crate) id: Option<String>,

    /// The latest deploy (the default when no ID is given).
    #[arg(long, conflicts_with = "id")]
    pub(crate) latest: bool,

    /// Keep showing new records as the deploy writes them, until it finishes.
    #[arg(short, long)]
    pub(crate) follow: bool,

    /// The journal's lines as they are: one JSON object per line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `mwdeploy lock ...`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LockArgs {
    /// What to do with the lock.
    #[command(subcommand)]
    pub(crate) command: LockCommand,
}

/// `lock status` / `lock release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub(crate) enum LockCommand {
    /// Who holds the deploy lock, or that nobody does.
    #[command(after_help = "Example:\n  mwdeploy lock status")]
    Status,
    /// Clear the record of a holder that is gone; refused (exit 3) while it runs.
    #[command(after_help = "Example:\n  mwdeploy lock release")]
    Release,
}

/// Flags of `mwdeploy releases`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ReleasesArgs {
    /// Servers to show: a comma list of mw_servers names, or all [default: all].
    #[arg(long, value_name = "LIST|all", value_delimiter = ',', action = ArgAction::Append)]
    pub(crate) servers: Option<Vec<String>>,
}

/// Flags of `mwdeploy completions`.
#[derive(Debug, Clone, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Flags of `mwdeploy recover`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RecoverArgs {
    /// One JSON event per line on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Flags of `mwdeploy rollback`.
#[derive(Debug, Clone, Args)]
pub(crate) struct RollbackArgs {
    /// Servers to roll back: a comma list of mw_servers names, or all [default: all].
    #[arg(long, value_name = "LIST|all", value_delimiter = ',', action = ArgAction::Append)]
    pub(crate) servers: Option<Vec<String>>,

    /// The release to make live (`mwdeploy releases` lists them) [default: each server's
    /// previous release].
    #[arg(long, value_name = "RELEASE")]
    pub(crate) to: Option<String>,

    /// Servers rolled back at once, out of the pool together [default:
    /// rollout.max_unavailable].
    #[arg(long, value_name = "N", value_parser = parallel)]
    pub(crate) parallel: Option<u32>,

    /// Switch without depooling (the switch is atomic): for incidents.
    #[arg(long)]
    pub(crate) fast: bool,

    /// Why: goes to the journal, the webhooks and the lock.
    #[arg(short = 'm', long, value_name = "TEXT")]
    pub(crate) message: Option<String>,

    /// One JSON event per line on stdout; prompts answer abort.
    #[arg(long)]
    pub(crate) json: bool,

    /// Plain lines instead of the dashboard (they are the default without a terminal).
    #[arg(long)]
    pub(crate) no_tui: bool,
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

const WHAT: &str = "What to deploy (a deploy starts with one of these)";
const WHERE: &str = "Where";
const HOW: &str = "How";
const OUTPUT: &str = "Output";

/// The deploy flags: the old tool's, with the same meaning, and the new ones.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct DeployArgs {
    /// git pull the root repository of staging_path; then the whole tree is synced.
    #[arg(long, help_heading = WHAT)]
    pub(crate) core: bool,

    /// git pull versions/<v> for each selected version (--versions); those folders are synced.
    #[arg(long, help_heading = WHAT)]
    pub(crate) mediawiki: bool,

    /// git pull versions/<v>/extensions/NAME and sync only it (repeatable, or a comma list).
    #[arg(long, value_name = "NAME", value_delimiter = ',', action = ArgAction::Append, help_heading = WHAT)]
    pub(crate) extension: Vec<String>,

    /// git pull versions/<v>/skins/NAME and sync only it (repeatable, or a comma list).
    #[arg(long, value_name = "NAME", value_delimiter = ',', action = ArgAction::Append, help_heading = WHAT)]
    pub(crate) skin: Vec<String>,

    /// git pull staging_path/config and sync only it.
    #[arg(long, help_heading = WHAT)]
    pub(crate) config: bool,

    /// Apply patch P (a file in <prod_path>/scripts/extensions/patches/ on this host) to
    /// --patch-target in each selected version (repeatable).
    #[arg(long, value_name = "P", action = ArgAction::Append, requires = "patch_target", help_heading = WHAT)]
    pub(crate) patch: Vec<String>,

    /// The folder --patch applies to, relative to versions/<v>/ (names separated by '/').
    #[arg(long, value_name = "T", requires = "patch", help_heading = WHAT)]
    pub(crate) patch_target: Option<String>,

    /// Sync staging as it is, without git pulls: the whole tree.
    #[arg(long, conflicts_with_all = ["core", "mediawiki", "extension", "skin", "config"], help_heading = WHAT)]
    pub(crate) rsync: bool,

    /// Push this host's live tree (prod_path) as it is to the servers, e.g. new ones: no
    /// pulls, no staging steps.
    #[arg(long, conflicts_with_all = ["core", "mediawiki", "extension", "skin", "config", "patch", "rsync"], help_heading = WHAT)]
    pub(crate) provision: bool,

    /// Rebuild the localisation cache (l10n_command) on staging and on each server.
    #[arg(long, help_heading = HOW)]
    pub(crate) l10n: bool,

    /// Versions under staging_path/versions/ that pulls, patches and targeted syncs apply
    /// to: a comma list, or all [default: all].
    #[arg(long, value_name = "V|all", value_delimiter = ',', help_heading = WHERE)]
    pub(crate) versions: Option<Vec<String>>,

    /// Servers to deploy to: a comma list of mw_servers names, or all [default: all];
    /// they are deployed in config order.
    #[arg(long, value_name = "LIST|all", value_delimiter = ',', action = ArgAction::Append, help_heading = WHERE)]
    pub(crate) servers: Option<Vec<String>>,

    /// Depool each server from every proxy before its update; repool it after its canary.
    #[arg(long, help_heading = HOW)]
    pub(crate) rollout: bool,

    /// No prompts; a failed canary is a warning (the server goes back in, counted as
    /// warned); no preflight UP check. Never bypasses the lock, name checks or proxies.
    #[arg(long, help_heading = HOW)]
    pub(crate) force: bool,

    /// Servers in flight at once (rollout.parallel); never raises --max-unavailable.
    #[arg(long, value_name = "N", value_parser = parallel, help_heading = HOW)]
    pub(crate) parallel: Option<u32>,

    /// Servers out of the pool at once (rollout.max_unavailable).
    #[arg(long, value_name = "N", help_heading = HOW)]
    pub(crate) max_unavailable: Option<u32>,

    /// Stage sizes, comma-separated: counts, percentages or group:NAME; the last one
    /// repeats (e.g. 1,10%,100%) (rollout.stages).
    #[arg(long, value_name = "LIST", value_parser = deploy_stages, help_heading = HOW)]
    pub(crate) stages: Option<Stages>,

    /// Failures tolerated before --on-failure decides: a count (2) or a percentage (5%)
    /// (rollout.failure_budget).
    #[arg(long, value_name = "N|P%", value_parser = deploy_failure_budget, help_heading = HOW)]
    pub(crate) failure_budget: Option<FailureBudget>,

    /// What a failure beyond the budget does (rollout.on_failure; --json: abort).
    #[arg(long, value_name = "WHAT", value_enum, help_heading = HOW)]
    pub(crate) on_failure: Option<OnFailureArg>,

    /// Why: goes to the journal, the webhooks and the lock.
    #[arg(short = 'm', long, value_name = "TEXT", help_heading = HOW)]
    pub(crate) message: Option<String>,

    /// Print the plan (what is pulled and synced, the servers, the stages) and stop:
    /// nothing is locked, fetched or changed.
    #[arg(long, help_heading = HOW)]
    pub(crate) dry_run: bool,

    /// No webhooks and no log file for this run (the journal is still written).
    #[arg(long, help_heading = OUTPUT)]
    pub(crate) no_log: bool,

    /// One JSON event per line on stdout; no dashboard; prompts answer abort.
    #[arg(long, help_heading = OUTPUT)]
    pub(crate) json: bool,

    /// Plain lines instead of the dashboard.
    #[arg(long, help_heading = OUTPUT)]
    pub(crate) no_tui: bool,

    /// Close the dashboard when the deploy ends.
    #[arg(long, help_heading = OUTPUT)]
    pub(crate) exit_when_done: bool,

    /// Write the deploy's metrics (Prometheus text format, for node_exporter's textfile
    /// collector) to this file; overrides the config's `metrics_file`.
    #[arg(long, value_name = "PATH", help_heading = OUTPUT)]
    pub(crate) metrics_file: Option<std::path::PathBuf>,
}

impl DeployArgs {
    /// Whether a flag that starts a deploy is given (the old tool's rule, plus `--patch`).
    pub(crate) fn starts_deploy(&self) -> bool {
        self.core
            || self.mediawiki
            || !self.extension.is_empty()
            || !self.skin.is_empty()
            || self.config
            || !self.patch.is_empty()
            || self.rsync
            || self.provision
    }

    /// Every deploy flag given (that a subcommand cannot be combined with).
    pub(crate) fn given(&self) -> Vec<&'static str> {
        let starting = [
            (self.core, "--core"),
            (self.mediawiki, "--mediawiki"),
            (!self.extension.is_empty(), "--extension"),
            (!self.skin.is_empty(), "--skin"),
            (self.config, "--config"),
            (!self.patch.is_empty(), "--patch"),
            (self.rsync, "--rsync"),
            (self.provision, "--provision"),
            (self.json, "--json"),
            (self.no_tui, "--no-tui"),
        ];
        let mut given: Vec<&'static str> = starting
            .iter()
            .filter(|(g, _)| *g)
            .map(|(_, f)| *f)
            .collect();
        given.extend(self.shaping_flags());
        given
    }

    /// The deploy flags given that only shape a deploy (they start none by themselves).
    pub(crate) fn shaping_flags(&self) -> Vec<&'static str> {
        let given = [
            (self.l10n, "--l10n"),
            (self.versions.is_some(), "--versions"),
            (self.servers.is_some(), "--servers"),
            (self.rollout, "--rollout"),
            (self.force, "--force"),
            (self.parallel.is_some(), "--parallel"),
            (self.max_unavailable.is_some(), "--max-unavailable"),
            (self.stages.is_some(), "--stages"),
            (self.failure_budget.is_some(), "--failure-budget"),
            (self.on_failure.is_some(), "--on-failure"),
            (self.message.is_some(), "--message"),
            (self.dry_run, "--dry-run"),
            (self.no_log, "--no-log"),
            (self.exit_when_done, "--exit-when-done"),
            (self.metrics_file.is_some(), "--metrics-file"),
            (self.patch_target.is_some(), "--patch-target"),
        ];
        given.iter().filter(|(g, _)| *g).map(|(_, f)| *f).collect()
    }
}

/// `--on-failure` of a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OnFailureArg {
    /// Ask the operator: yes goes on (and the budget grows by one); no, Esc or a timeout stops.
    Prompt,
    /// Stop: no new server starts, pending servers are skipped.
    Abort,
    /// Never stop for failures.
    Continue,
}

impl From<OnFailureArg> for OnFailure {
    fn from(o: OnFailureArg) -> Self {
        match o {
            OnFailureArg::Prompt => OnFailure::Prompt,
            OnFailureArg::Abort => OnFailure::Abort,
            OnFailureArg::Continue => OnFailure::Continue,
        }
    }
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

/// `mwdeploy demo --servers`: 1 to 50, a fleet that fits on a screen.
fn demo_servers(s: &str) -> Result<usize, String> {
    let n = at_least_one(s, "a demo needs a fleet")?;
    if n > 50 {
        return Err("a demo has at most 50 servers".to_string());
    }
    Ok(n as usize)
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

/// `--stages` of a deploy: as [`stages`], each entry in range.
fn deploy_stages(s: &str) -> Result<Stages, String> {
    s.split(',')
        .map(|x| x.parse::<StageSize>().and_then(check_stage))
        .collect::<Result<Vec<_>, _>>()
        .map(Stages)
}

/// `--failure-budget` of a deploy: a percentage within 0..=100.
fn deploy_failure_budget(s: &str) -> Result<FailureBudget, String> {
    s.parse().and_then(check_budget)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Invocation::command().debug_assert();
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
        assert!(demo_servers("0").unwrap_err().contains("at least 1"));
        assert!(demo_servers("51").unwrap_err().contains("at most 50"));
        assert_eq!(demo_servers("50"), Ok(50));
    }

    #[test]
    fn demo_flags_have_defaults() {
        let cli = Invocation::try_parse_from(["mwdeploy", "demo"]).unwrap();
        let Some(Command::Demo(a)) = cli.command else {
            panic!("not a demo command");
        };
        assert_eq!(a.servers, 4);
        assert_eq!(a.fail, None);
        assert_eq!(a.layout, LayoutArg::Releases);
        assert!(!a.json && !a.no_tui);
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
    fn operations_subcommands_parse() {
        let parse = |args: &[&str]| {
            Invocation::try_parse_from(std::iter::once("mwdeploy").chain(args.iter().copied()))
        };
        let Some(Command::Log(a)) = parse(&["log", "d-1", "-f", "--json"]).unwrap().command else {
            panic!("not log");
        };
        assert_eq!(a.id.as_deref(), Some("d-1"));
        assert!(a.follow && a.json && !a.latest);
        assert!(parse(&["log", "d-1", "--latest"]).is_err());
        let Some(Command::Lock(l)) = parse(&["lock", "release"]).unwrap().command else {
            panic!("not lock");
        };
        assert_eq!(l.command, LockCommand::Release);
        assert!(parse(&["lock"]).is_err());
        let Some(Command::Releases(r)) = parse(&["releases", "--servers", "a,b", "--servers", "c"])
            .unwrap()
            .command
        else {
            panic!("not releases");
        };
        assert_eq!(r.servers.unwrap(), ["a", "b", "c"]);
        assert!(matches!(
            parse(&["-C", "x.yaml", "status", "--json"])
                .unwrap()
                .command,
            Some(Command::Status(StatusArgs { json: true }))
        ));
        assert!(parse(&["completions", "tcsh"]).is_err());
        assert!(parse(&["status", "--rsync"]).is_err());
        let before = parse(&["--rsync", "-m", "x", "status"]).unwrap();
        assert_eq!(before.deploy.given(), ["--rsync", "--message"]);
        assert!(parse(&["status"]).unwrap().deploy.given().is_empty());
    }

    #[test]
    fn simulate_flags_parse() {
        let cli = Invocation::try_parse_from([
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
        let Some(Command::Simulate(a)) = cli.command else {
            panic!("not a simulate command");
        };
        assert_eq!(a.servers, 10);
        assert_eq!(a.seed, Some(3));
        assert_eq!(a.canary_fail_rate, 0.5);
        assert_eq!(a.failure_budget, Some(FailureBudget::Percent(5)));
        assert_eq!(a.on_failure, SimOnFailure::Continue);
        assert_eq!(a.layout, LayoutArg::Releases);
        assert!(a.quiet && !a.json);
    }
}
