//! The end-to-end benchmark: mwdeploy against the old tool's procedure
//! (`benches/baseline/old-procedure.sh`) on real loopback fleets (`testfleet`), in the same
//! run, alternating, several rounds; prints a markdown table of medians and ratios and
//! whether design.md section 7's targets are met.
//!
//! ```text
//! cargo run --release -p mwdeploy-benches --bin e2e -- [--rounds N] [--servers 8]
//!     [--files 20000] [--megabytes 200] [--proxies 2] [--parallel 2] [--no-check-wait]
//!     [--opcache-reset] [--smoke]
//! ```
//!
//! Two fleets of the same size and tree run side by side: one in the in-place layout (the
//! old procedure, and mwdeploy's in-place small-change deploys: the same layout and the same
//! serial pool rule as the old tool) and one in the release layout (mwdeploy's first and
//! new-version deploys). Each round, in order (the tools alternate who goes first):
//!
//! 1. **first**: every server's live tree is reset (untimed) to a bare tree that serves the
//!    page (4 files), staging to the generated tree; then the whole tree ships.
//! 2. **new version**: a copy of `versions/<v>` appears in staging as `versions/<v>-next`
//!    (the weekly train: about 92% of the tree's files and bytes, all new); it ships.
//! 3. **small change**: one file under `config/` changes in `origin`. The old procedure and
//!    `mwdeploy --rsync` ship it after an untimed `git pull`; `mwdeploy --config` pulls and
//!    ships only `config/` (its pull is timed). Each run ships its own change.
//!
//! Every run is measured under steady load through every proxy (`start_load`) with a pool
//! monitor sampling the admin sockets every 10 ms: wall time, per server the time out of
//! the pool, the most servers out at once, ssh connections opened (the `Accepted publickey`
//! lines the fleet's sshds log), failed requests.
//!
//! The `mwdeploy` binary is the one next to this one (built first with the same profile when
//! run through cargo), or `$MWDEPLOY_BIN`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use testfleet::{Fleet, Layout, LoadOptions, PoolReport, PostActivate, VHOST};

type Error = Box<dyn std::error::Error>;

/// The command line.
#[derive(Debug, Clone)]
struct Args {
    rounds: usize,
    servers: usize,
    proxies: usize,
    files: usize,
    megabytes: u64,
    /// mwdeploy's `--parallel`: servers in flight, copies ahead included.
    parallel: usize,
    /// mwdeploy with `repool_after_check: false`: a repool does not wait for HAProxy's
    /// own check (the old procedure's `enable server`).
    no_check_wait: bool,
    /// The fleets' `post_activate` empties the opcache instead of reloading php-fpm.
    opcache_reset: bool,
    smoke: bool,
}

const USAGE: &str =
    "usage: e2e [--rounds N] [--servers N] [--proxies N] [--files N] [--megabytes N] [--parallel N] [--no-check-wait] [--opcache-reset] [--smoke]\n\
  defaults: 3 rounds, 8 servers, 2 proxies, 20000 files, 200 MB, mwdeploy --parallel 2\n\
  (the release layout copies the next server while one is out; --max-unavailable stays 1)\n\
  --no-check-wait: mwdeploy with rollout.repool_after_check: false (ready at once, as the old procedure)\n\
  --opcache-reset: every server's post_activate hook calls opcache_reset() instead of reloading php-fpm\n\
  --smoke: 2 servers, 1 proxy, 100 files, 1 MB, 1 round, a lighter load (for CI: no timing is judged)";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rounds: 3,
        servers: 8,
        proxies: 2,
        files: 20_000,
        megabytes: 200,
        parallel: 2,
        no_check_wait: false,
        opcache_reset: false,
        smoke: false,
    };
    let mut given: Vec<(String, String)> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--smoke" => a.smoke = true,
            "--no-check-wait" => a.no_check_wait = true,
            "--opcache-reset" => a.opcache_reset = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            "--rounds" | "--servers" | "--proxies" | "--files" | "--megabytes" | "--parallel" => {
                let v = it
                    .next()
                    .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
                given.push((arg, v));
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    if a.smoke {
        (a.rounds, a.servers, a.proxies, a.files, a.megabytes) = (1, 2, 1, 100, 1);
    }
    for (k, v) in given {
        let n: u64 = v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{k}: {v:?} is not a whole number above 0"))?;
        match k.as_str() {
            "--rounds" => a.rounds = n as usize,
            "--servers" => a.servers = n as usize,
            "--proxies" => a.proxies = n as usize,
            "--files" => a.files = n as usize,
            "--parallel" => a.parallel = n as usize,
            _ => a.megabytes = n,
        }
    }
    Ok(a)
}

/// What is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    First,
    NewVersion,
    Small,
}

/// Who deploys, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tool {
    /// `old-procedure.sh` on the in-place fleet.
    Baseline,
    /// `mwdeploy --rsync --rollout` on the release-layout fleet.
    Releases,
    /// `mwdeploy --rsync --rollout` on the in-place fleet.
    Inplace,
    /// `mwdeploy --config --rollout` on the in-place fleet.
    Targeted,
}

impl Tool {
    fn label(self) -> &'static str {
        match self {
            Tool::Baseline => "old procedure (in place)",
            Tool::Releases => "mwdeploy --rsync (releases)",
            Tool::Inplace => "mwdeploy --rsync (in place)",
            Tool::Targeted => "mwdeploy --config (in place)",
        }
    }
}

/// One of the two fleets.
#[derive(Debug, Clone, Copy)]
enum Which {
    Inplace,
    Releases,
}

/// One deploy's measurements.
#[derive(Debug, Clone)]
struct Run {
    wall: Duration,
    /// Per server, its time out of the pool.
    out: Vec<Duration>,
    /// Per server, the part of that time in maintenance (MAINT on some proxy).
    maint: Vec<Duration>,
    max_out: usize,
    ssh: u64,
    requests: u64,
    failed: u64,
    ok: bool,
}

/// Both fleets, their configs and what the runs measured.
struct Bench {
    args: Args,
    inplace: Fleet,
    releases: Fleet,
    cfg_inplace: PathBuf,
    cfg_releases: PathBuf,
    mwdeploy: PathBuf,
    script: PathBuf,
    /// The version directory the page is served from (`1.45`).
    version: String,
    runs: BTreeMap<(Scenario, Tool), Vec<Run>>,
    changes: u32,
    failures: Vec<String>,
    round: usize,
    trashed: u32,
    /// Every run's output (mwdeploy's JSON journal, the script's step lines).
    logs: PathBuf,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<bool, Error> {
    let began = Instant::now();
    let mwdeploy = mwdeploy_binary()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("baseline/old-procedure.sh");
    eprintln!(
        "e2e: {} servers, {} proxies, tree {} files / {} MB, {} round(s); mwdeploy: {}",
        args.servers,
        args.proxies,
        args.files,
        args.megabytes,
        args.rounds,
        mwdeploy.display()
    );
    let start = |layout: Layout| -> Result<Fleet, Error> {
        let t = Instant::now();
        let f = Fleet::builder()
            .servers(args.servers)
            .proxies(args.proxies)
            .tree(args.files, args.megabytes)
            .layout(layout)
            .post_activate(if args.opcache_reset {
                PostActivate::OpcacheReset
            } else {
                PostActivate::Reload
            })
            .start()
            .map_err(|e| format!("starting the {layout} fleet (scripts/install-deps.sh): {e}"))?;
        eprintln!(
            "e2e: {layout} fleet up in {:.1} s at {}",
            t.elapsed().as_secs_f64(),
            f.root().display()
        );
        Ok(f)
    };
    let inplace = start(Layout::Inplace)?;
    let releases = start(Layout::Releases)?;
    let cfg_inplace = inplace.root().join("bench-inplace.yaml");
    let cfg_releases = releases.root().join("bench-releases.yaml");
    inplace.write_config(&cfg_inplace, Layout::Inplace)?;
    releases.write_config(&cfg_releases, Layout::Releases)?;
    if args.no_check_wait {
        for cfg in [&cfg_inplace, &cfg_releases] {
            let y = fs::read_to_string(cfg)?;
            if !y.contains("\nrollout:\n") {
                return Err(format!(
                    "{}: no rollout block to set repool_after_check in",
                    cfg.display()
                )
                .into());
            }
            let y = y.replacen(
                "\nrollout:\n",
                "\nrollout:\n  repool_after_check: false\n",
                1,
            );
            fs::write(cfg, y)?;
        }
    }
    let version = active_version(inplace.staging().path())?;
    split_config_repo(&inplace)?;
    let logs = std::env::temp_dir().join(format!("mwdeploy-e2e-{}", std::process::id()));
    fs::create_dir_all(&logs)?;
    let mut b = Bench {
        args: args.clone(),
        inplace,
        releases,
        cfg_inplace,
        cfg_releases,
        mwdeploy,
        script,
        version,
        runs: BTreeMap::new(),
        changes: 0,
        failures: Vec::new(),
        round: 0,
        trashed: 0,
        logs,
    };
    for round in 1..=args.rounds {
        b.round(round)?;
        // The medians so far, in case a long run has to be stopped.
        fs::write(
            b.logs.join(format!("table-after-round-{round}.md")),
            b.table(),
        )?;
    }
    let table = b.table();
    println!("{table}");
    for f in &b.failures {
        eprintln!("e2e: FAILED: {f}");
    }
    eprintln!(
        "e2e: done in {:.0} s{}; each run's output is in {}",
        began.elapsed().as_secs_f64(),
        if b.failures.is_empty() {
            ""
        } else {
            " with failed runs"
        },
        b.logs.display()
    );
    if args.smoke && b.failures.is_empty() {
        // CI runs the smoke run on every submission: leave nothing behind when it passed.
        let _ = fs::remove_dir_all(&b.logs);
    }
    Ok(b.failures.is_empty())
}

/// The `mwdeploy` binary: `$MWDEPLOY_BIN`, or the one beside this binary, built first with
/// the same profile when cargo runs us (`$CARGO` is set).
fn mwdeploy_binary() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("MWDEPLOY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or("no directory for this binary")?;
    // target/<profile>/e2e, or target/<profile>/deps/e2e-<hash> for a test's copy.
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    if let (Some(cargo), Some(target)) = (std::env::var_os("CARGO"), dir.parent()) {
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "mwdeploy-cli",
            "--bin",
            "mwdeploy",
        ])
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status()?;
        if !status.success() {
            return Err(format!("building mwdeploy failed: {status}").into());
        }
    }
    let bin = dir.join("mwdeploy");
    if !bin.is_file() {
        return Err(format!(
            "{} not found: build it first (cargo build --release -p mwdeploy-cli) or set MWDEPLOY_BIN",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// The MediaWiki version the tree serves: the last directory under `versions/`.
fn active_version(staging: &Path) -> Result<String, Error> {
    let mut v: Vec<String> = fs::read_dir(staging.join("versions"))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v.pop().ok_or_else(|| "staging has no versions/".into())
}

/// Runs `cmd`, failing with its output when it fails.
fn sh(cmd: &mut Command) -> Result<(), Error> {
    let o = cmd.stdin(Stdio::null()).output()?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
        .into())
    }
}

/// `git -C dir args`, with an identity for commits.
fn git(dir: &Path, args: &[&str]) -> Result<(), Error> {
    sh(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=mwdeploy bench",
            "-c",
            "user.email=bench@example.invalid",
        ])
        .args(args))
}

/// Makes staging's `config/` its own git checkout, as in production (a targeted `--config`
/// deploy pulls that checkout): a bare `config-origin.git` in the fleet's directory with
/// `config/`'s files, `config/` dropped from the root repository (and its origin), and a
/// clone of the new repository in its place. `config-scratch/` is the developers' clone
/// the small changes are committed from.
fn split_config_repo(fleet: &Fleet) -> Result<(), Error> {
    let root = fleet.root();
    let staging = fleet.staging().path();
    let origin = root.join("config-origin.git");
    let scratch = root.join("config-scratch");
    sh(Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&origin))?;
    sh(Command::new("cp")
        .arg("-a")
        .arg(staging.join("config"))
        .arg(&scratch))?;
    git(&scratch, &["init", "-q", "-b", "main"])?;
    git(&scratch, &["add", "-A"])?;
    git(
        &scratch,
        &["commit", "-q", "-m", "The wiki farm's configuration"],
    )?;
    git(
        &scratch,
        &["remote", "add", "origin", &origin.to_string_lossy()],
    )?;
    git(&scratch, &["push", "-q", "-u", "origin", "main"])?;
    git(staging, &["rm", "-r", "-q", "--cached", "config"])?;
    git(
        staging,
        &["commit", "-q", "-m", "config/ is its own repository"],
    )?;
    git(staging, &["push", "-q", "origin", "HEAD:main"])?;
    fs::write(staging.join(".git/info/exclude"), "/config/\n")?;
    fs::remove_dir_all(staging.join("config"))?;
    sh(Command::new("git")
        .args(["clone", "-q", "-b", "main"])
        .arg(&origin)
        .arg(staging.join("config")))?;
    Ok(())
}

/// `Accepted publickey` lines in every server's sshd log: ssh connections opened so far.
fn ssh_connections(fleet: &Fleet) -> u64 {
    fleet
        .servers()
        .iter()
        .map(|s| {
            fs::read_to_string(s.dir().join("sshd.log"))
                .map(|t| {
                    t.lines()
                        .filter(|l| l.contains("Accepted publickey"))
                        .count() as u64
                })
                .unwrap_or(0)
        })
        .sum()
}

/// The median of `v` (the mean of the middle two for an even count); 0 for none.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Bench {
    fn round(&mut self, round: usize) -> Result<(), Error> {
        self.round = round;
        let baseline_first = round % 2 == 1;
        eprintln!("e2e: round {round}/{}", self.args.rounds);

        // 1. First deploy: bare servers, the generated tree in staging.
        self.reset_first()?;
        let order = if baseline_first {
            [Tool::Baseline, Tool::Releases]
        } else {
            [Tool::Releases, Tool::Baseline]
        };
        for tool in order {
            self.measure(Scenario::First, tool)?;
        }

        // 2. New version directory.
        for f in [&self.inplace, &self.releases] {
            let from = f.staging().path().join("versions").join(&self.version);
            sh(Command::new("cp")
                .arg("-a")
                .arg(&from)
                .arg(self.next_version_dir(f)))?;
        }
        for tool in order {
            self.measure(Scenario::NewVersion, tool)?;
        }

        // 3. Small change. Live trees are first made to hold everything either tool ships
        //    (untimed): the old procedure drops every nested cache/ and ships .git, mwdeploy
        //    ships nested cache/ and not .git; the small change must be all that is new.
        self.align_inplace()?;
        let order = if baseline_first {
            [Tool::Baseline, Tool::Inplace, Tool::Targeted]
        } else {
            [Tool::Targeted, Tool::Inplace, Tool::Baseline]
        };
        for tool in order {
            self.measure(Scenario::Small, tool)?;
        }
        Ok(())
    }

    fn next_version_dir(&self, f: &Fleet) -> PathBuf {
        f.staging()
            .path()
            .join("versions")
            .join(format!("{}-next", self.version))
    }

    fn fleet(&self, tool: Tool) -> &Fleet {
        match tool {
            Tool::Releases => &self.releases,
            _ => &self.inplace,
        }
    }

    /// Moves `path` into the fleet's `trash/` (removed with the fleet at the end): on a
    /// file system mounted with `discard`, removing a 20,000-file tree takes half a minute,
    /// sixteen of them per round.
    fn discard(&mut self, f: Which, path: &Path) -> Result<(), Error> {
        self.trashed += 1;
        let trash = self.fleet_of(f).root().join("trash");
        fs::create_dir_all(&trash)?;
        fs::rename(path, trash.join(self.trashed.to_string()))?;
        Ok(())
    }

    fn fleet_of(&self, f: Which) -> &Fleet {
        match f {
            Which::Inplace => &self.inplace,
            Which::Releases => &self.releases,
        }
    }

    /// Staging back to the generated tree; every live tree a bare one that serves the page
    /// (a plain folder, no releases): what a first deploy meets.
    fn reset_first(&mut self) -> Result<(), Error> {
        for which in [Which::Inplace, Which::Releases] {
            let next = self.next_version_dir(self.fleet_of(which));
            if next.exists() {
                self.discard(which, &next)?;
            }
            let bare: Vec<String> = vec![
                "index.php".into(),
                "config/LocalSettings.php".into(),
                format!("versions/{}/includes/Version.php", self.version),
                format!("versions/{}/includes/Stamp.php", self.version),
            ];
            let staging = self.fleet_of(which).staging().path().to_path_buf();
            for i in 0..self.fleet_of(which).servers().len() {
                let (live, releases) = {
                    let s = &self.fleet_of(which).servers()[i];
                    (s.live_path().to_path_buf(), s.releases_dir().to_path_buf())
                };
                let new = live.with_file_name(".bench-bare");
                for rel in &bare {
                    let to = new.join(rel);
                    fs::create_dir_all(to.parent().unwrap_or(&new))?;
                    fs::copy(staging.join(rel), &to)?;
                }
                if fs::symlink_metadata(&live)?.file_type().is_symlink() {
                    fs::remove_file(&live)?;
                } else {
                    self.discard(which, &live)?;
                }
                fs::rename(&new, &live)?;
                if releases.exists() {
                    self.discard(which, &releases)?;
                    fs::create_dir_all(&releases)?;
                }
                self.fleet_of(which).servers()[i].reload()?;
            }
            self.fleet_of(which).wait_all_up(Duration::from_secs(20))?;
        }
        Ok(())
    }

    /// Every in-place live tree made to hold staging as a whole (untimed, local rsync),
    /// the deploy host's own too: the new version directory reached the in-place fleet
    /// through the old procedure, which never updates the deploy host, while mwdeploy
    /// syncs staging there first on every deploy; without this, the first mwdeploy run
    /// after it would pay for copying the whole new version to the deploy host.
    fn align_inplace(&self) -> Result<(), Error> {
        let staging = self.inplace.staging();
        let lives = self
            .inplace
            .servers()
            .iter()
            .map(|s| s.live_path())
            .chain([staging.live_path()]);
        for live in lives {
            sh(Command::new("rsync")
                .args(["-a", "--delete", "--exclude", "/cache/"])
                .arg(format!("{}/", staging.path().display()))
                .arg(format!("{}/", live.display())))?;
        }
        Ok(())
    }

    /// Commits a new small change to the config repository's origin; pulls it into
    /// staging's `config/` unless the deploy pulls it itself.
    fn small_change(&mut self, tool: Tool) -> Result<(), Error> {
        self.changes += 1;
        let f = self.fleet(tool);
        let scratch = f.root().join("config-scratch");
        fs::write(
            scratch.join("BenchChange.php"),
            format!(
                "<?php\n// Benchmark change {} ({:?}).\n$wgBenchChange = {};\n",
                self.changes, tool, self.changes
            ),
        )?;
        git(&scratch, &["add", "-A"])?;
        git(
            &scratch,
            &[
                "commit",
                "-q",
                "-m",
                &format!("Benchmark change {}", self.changes),
            ],
        )?;
        git(&scratch, &["push", "-q", "origin", "main"])?;
        if tool != Tool::Targeted {
            git(
                &f.staging().path().join("config"),
                &["pull", "-q", "--ff-only"],
            )?;
        }
        Ok(())
    }

    fn measure(&mut self, scenario: Scenario, tool: Tool) -> Result<(), Error> {
        if scenario == Scenario::Small {
            self.small_change(tool)?;
        }
        let f = self.fleet(tool);
        f.wait_all_up(Duration::from_secs(20))?;
        let ssh_before = ssh_connections(f);
        let load = f.start_load(if self.args.smoke {
            // A lighter load: CI machines are small and the smoke run judges no timing.
            LoadOptions::default()
                .workers(1)
                .pause(Duration::from_millis(20))
        } else {
            LoadOptions::default()
        })?;
        let pool = f.start_pool_monitor(Duration::from_millis(10));
        let t = Instant::now();
        let result = match tool {
            Tool::Baseline => self.baseline(scenario),
            _ => self.mwdeploy(scenario, tool),
        };
        let wall = t.elapsed();
        // Let the last repooled server's health checks settle before the observers stop.
        let _ = f.wait_all_up(Duration::from_secs(10));
        let (load, pool): (_, PoolReport) = (load.stop(), pool.stop());
        let ssh = ssh_connections(f).saturating_sub(ssh_before);
        let ok = match result {
            Ok(()) => true,
            Err(e) => {
                self.failures
                    .push(format!("{scenario:?} / {}: {e}", tool.label()));
                false
            }
        };
        let run = Run {
            wall,
            out: pool.servers.values().map(|o| o.time_out).collect(),
            maint: pool.servers.values().map(|o| o.time_in_maint).collect(),
            max_out: pool.max_out,
            ssh,
            requests: load.requests,
            failed: load.failed,
            ok,
        };
        if load.failed > 0 {
            eprintln!(
                "e2e:   failed requests: {:?}",
                &load.failures[..load.failures.len().min(5)]
            );
        }
        eprintln!(
            "e2e:   {scenario:?} / {}: {:.2} s, out of service median {:.3} s max {:.3} s, max out {}, ssh {}, {} of {} requests failed{}",
            tool.label(),
            wall.as_secs_f64(),
            median(run.out.iter().map(Duration::as_secs_f64).collect()),
            run.out.iter().max().copied().unwrap_or_default().as_secs_f64(),
            run.max_out,
            run.ssh,
            run.failed,
            run.requests,
            if ok { "" } else { " (FAILED)" }
        );
        self.runs.entry((scenario, tool)).or_default().push(run);
        Ok(())
    }

    /// The old procedure over every server of the in-place fleet; its ssh masters closed
    /// afterwards (untimed).
    fn log_path(&self, scenario: Scenario, tool: Tool) -> PathBuf {
        self.logs
            .join(format!("round{}-{scenario:?}-{tool:?}.log", self.round))
    }

    fn baseline(&self, scenario: Scenario) -> Result<(), Error> {
        let f = &self.inplace;
        let control = f.root().join("old-ctl");
        let _ = fs::remove_dir_all(&control);
        fs::create_dir_all(&control)?;
        let log_path = self.log_path(scenario, Tool::Baseline);
        let log = fs::File::create(&log_path)?;
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script)
            .arg("--staging")
            .arg(f.staging().path())
            .args(["--vhost", VHOST])
            .arg("--identity")
            .arg(f.client_key())
            .arg("--control-dir")
            .arg(&control)
            .arg("--known-hosts")
            .arg(control.join("known_hosts"));
        // The proxies' sockets are local: reached over ssh through mw1's sshd, as lbK.
        let via = f.servers()[0].ssh_port();
        for p in f.proxies() {
            cmd.arg("--proxy").arg(format!(
                "{},127.0.0.1,{via},{}",
                p.name(),
                p.admin_socket().display()
            ));
        }
        for s in f.servers() {
            cmd.arg("--server").arg(format!(
                "{},127.0.0.1,{},{},{}",
                s.name(),
                s.ssh_port(),
                s.live_path().display(),
                s.canary_url()
            ));
        }
        let status = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        // ControlPersist=60s masters outlive the script: close them, untimed.
        for e in fs::read_dir(&control)?.flatten() {
            if e.file_name().to_string_lossy().contains('@') {
                let _ = Command::new("ssh")
                    .arg("-o")
                    .arg(format!("ControlPath={}", e.path().display()))
                    .args(["-O", "exit", "x"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if status.success() {
            Ok(())
        } else {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            Err(format!("old-procedure.sh: {status}\n{text}").into())
        }
    }

    fn mwdeploy(&self, scenario: Scenario, tool: Tool) -> Result<(), Error> {
        let cfg = match tool {
            Tool::Releases => &self.cfg_releases,
            _ => &self.cfg_inplace,
        };
        let what = if tool == Tool::Targeted {
            "--config"
        } else {
            "--rsync"
        };
        let o = Command::new(&self.mwdeploy)
            .arg("-C")
            .arg(cfg)
            .args([
                what,
                "--rollout",
                "--parallel",
                &self.args.parallel.to_string(),
                "--max-unavailable",
                "1",
                "--json",
                "-m",
            ])
            .arg(format!("benchmark: {scenario:?}"))
            .stdin(Stdio::null())
            .env_remove("MWDEPLOY_CONFIG")
            .output()?;
        let out = String::from_utf8_lossy(&o.stdout);
        fs::write(self.log_path(scenario, tool), o.stdout.as_slice())?;
        let finished = out
            .lines()
            .last()
            .is_some_and(|l| l.contains("\"deploy_finished\"") && l.contains("\"exit_code\":0"));
        if o.status.success() && finished {
            Ok(())
        } else {
            let tail: Vec<&str> = out.lines().rev().take(15).collect();
            Err(format!(
                "mwdeploy: {}\n{}\n{}",
                o.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                String::from_utf8_lossy(&o.stderr)
            )
            .into())
        }
    }

    /// The markdown report: per scenario, medians over the rounds and mwdeploy/baseline
    /// ratios; then the targets.
    fn table(&self) -> String {
        let a = &self.args;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "### {} servers, {} proxies, tree of {} files / {} MB, {} round(s), \
             mwdeploy --parallel {} --max-unavailable 1{}{}: medians\n",
            a.servers,
            a.proxies,
            a.files,
            a.megabytes,
            a.rounds,
            a.parallel,
            if a.no_check_wait {
                ", repool_after_check: false"
            } else {
                ""
            },
            if a.opcache_reset {
                ", post_activate: opcache reset"
            } else {
                ""
            }
        );
        let _ = writeln!(
            t,
            "Out of service: per server, from leaving the pool to serving in it again \
             (median over servers, then over rounds; max: the worst server)."
        );
        let rows: [(Scenario, Tool, &str); 4] = [
            (Scenario::First, Tool::Releases, "first deploy (whole tree)"),
            (
                Scenario::NewVersion,
                Tool::Releases,
                "new version directory",
            ),
            (Scenario::Small, Tool::Inplace, "small change, full --rsync"),
            (
                Scenario::Small,
                Tool::Targeted,
                "small change, targeted --config",
            ),
        ];
        for (scenario, tool, title) in rows {
            let _ = writeln!(
                t,
                "\n#### {title}: {} vs {}\n",
                tool.label(),
                Tool::Baseline.label()
            );
            let _ = writeln!(t, "| metric | old procedure | mwdeploy | mwdeploy / old |");
            let _ = writeln!(t, "| --- | ---: | ---: | ---: |");
            let base = self.stats(scenario, Tool::Baseline);
            let new = self.stats(scenario, tool);
            for (i, (name, unit)) in METRICS.iter().enumerate() {
                let (b, n) = (base[i], new[i]);
                let ratio = if b > 0.0 {
                    format!("{:.3}", n / b)
                } else {
                    "-".into()
                };
                let _ = writeln!(
                    t,
                    "| {name} | {} | {} | {ratio} |",
                    fmt(b, unit),
                    fmt(n, unit)
                );
            }
        }
        let _ = writeln!(t, "\n#### Targets (design.md section 7)\n");
        let _ = writeln!(t, "| target | measured | met |");
        let _ = writeln!(t, "| --- | --- | --- |");
        let nv_b = self.stats(Scenario::NewVersion, Tool::Baseline);
        let nv_r = self.stats(Scenario::NewVersion, Tool::Releases);
        let oos = if nv_b[1] > 0.0 {
            nv_r[1] / nv_b[1]
        } else {
            0.0
        };
        target(
            &mut t,
            "release layout: out of service under 5% of the old procedure's (new version)",
            format!("{:.1}% ({:.3} s vs {:.3} s)", oos * 100.0, nv_r[1], nv_b[1]),
            nv_b[1] > 0.0 && oos < 0.05,
        );
        let sm_b = self.stats(Scenario::Small, Tool::Baseline);
        let sm_i = self.stats(Scenario::Small, Tool::Inplace);
        let sm_t = self.stats(Scenario::Small, Tool::Targeted);
        target(
            &mut t,
            "small change, full --rsync (in place): no slower end to end",
            format!("{:.2}x the old procedure's wall time", sm_i[0] / sm_b[0]),
            sm_i[0] <= sm_b[0],
        );
        target(
            &mut t,
            "small change, targeted --config: at least 2x faster end to end",
            format!("{:.2}x faster", sm_b[0] / sm_t[0]),
            sm_t[0] * 2.0 <= sm_b[0],
        );
        let all: Vec<&Run> = self
            .runs
            .iter()
            .filter(|((_, tool), _)| *tool != Tool::Baseline)
            .flat_map(|(_, r)| r)
            .collect();
        let max_out = all.iter().map(|r| r.max_out).max().unwrap_or(0);
        target(
            &mut t,
            "never more out of the pool than max_unavailable (1), every mwdeploy run",
            format!("at most {max_out} out at once"),
            max_out <= 1,
        );
        let failed: u64 = all.iter().map(|r| r.failed).sum();
        let requests: u64 = all.iter().map(|r| r.requests).sum();
        target(
            &mut t,
            "zero failed requests under load, every mwdeploy run",
            format!("{failed} of {requests}"),
            failed == 0,
        );
        let ok = all.iter().all(|r| r.ok);
        target(
            &mut t,
            "every mwdeploy run succeeded (exit 0)",
            format!("{} runs", all.len()),
            ok,
        );
        // The old procedure's window is all maintenance; mwdeploy's adds the drain before
        // and, unless --no-check-wait, the wait for HAProxy's own check after
        // (BENCHMARKS.md says why).
        if nv_b[1] > 0.0 {
            let _ = writeln!(
                t,
                "\nFor reference: in maintenance only (without the drain before{}), the release \
                 layout's window on the new version is {:.1}% of the old procedure's out of \
                 service ({:.3} s vs {:.3} s).",
                if a.no_check_wait {
                    ""
                } else {
                    " and the wait for HAProxy's check after"
                },
                nv_r[3] / nv_b[1] * 100.0,
                nv_r[3],
                nv_b[1]
            );
        }
        t
    }

    /// Medians over the rounds of [`METRICS`], in that order.
    fn stats(&self, scenario: Scenario, tool: Tool) -> [f64; 8] {
        let runs = self
            .runs
            .get(&(scenario, tool))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
        [
            m(&|r| r.wall.as_secs_f64()),
            m(&|r| median(r.out.iter().map(Duration::as_secs_f64).collect())),
            m(&|r| {
                r.out
                    .iter()
                    .max()
                    .copied()
                    .unwrap_or_default()
                    .as_secs_f64()
            }),
            m(&|r| median(r.maint.iter().map(Duration::as_secs_f64).collect())),
            m(&|r| r.max_out as f64),
            m(&|r| r.ssh as f64),
            m(&|r| r.failed as f64),
            m(&|r| r.requests as f64),
        ]
    }
}

/// The metrics of each table, with how to print them.
const METRICS: [(&str, &str); 8] = [
    ("wall time", "s"),
    ("out of service per server (median)", "s"),
    ("out of service per server (max)", "s"),
    ("of which in maintenance (median)", "s"),
    ("servers out of the pool at once (max)", ""),
    ("ssh connections opened", ""),
    ("failed requests", ""),
    ("requests under load", ""),
];

fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "s" if v < 1.0 => format!("{:.0} ms", v * 1000.0),
        "s" => format!("{v:.2} s"),
        _ if v.fract() == 0.0 => format!("{v:.0}"),
        _ => format!("{v:.1}"),
    }
}

fn target(t: &mut String, what: &str, measured: String, met: bool) {
    let _ = writeln!(
        t,
        "| {what} | {measured} | {} |",
        if met { "yes" } else { "**no**" }
    );
}
