//! Staging, before any production server: the old tool's pulls and patches on the
//! staging checkout, then the sync to the deploy host's own live tree, its hooks and the
//! localisation cache. Each step is a `prep_step` record (journal, log file, output).
//!
//! ```text
//!  pulls (--core, --config, --mediawiki, --extension, --skin; per selected version)
//!    git fetch, HEAD..@{u} (the incoming commits, recorded), merge --ff-only,
//!    submodule update --init --recursive
//!  patches (--patch P --patch-target T; per selected version)
//!    patch -p1 --forward --batch (already applied: reported, never reversed)
//!  staging_sync: staging_path -> staging's live tree (the servers' transfer), post_copy
//!  l10n (--l10n): l10n_command on staging (on the new release, or after the copy in place)
//!  staging_hooks: post_activate
//! ```
//!
//! The staging canary follows, run by the engine. A failing step stops the deploy before
//! any production server (exit 3).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use mwdeploy_core::event::{PrepStatus, Record};
use mwdeploy_core::model::validate_name;
use mwdeploy_core::ports::{Hook, Progress, Transfer};
use mwdeploy_core::{Event, HookPoint, Layout, ReleaseId, Server};
use mwdeploy_runtime::driver::Subscriber;
use mwdeploy_runtime::journal::Journal;

use crate::request::{DeployRequest, Versions};
use crate::session::Log;
use crate::staging::git::{Git, PullSpec};
use crate::staging::patch::{self, Patched};

/// Where `--patch` files are read from, under staging's live tree.
pub(crate) const PATCH_DIR: &str = "scripts/extensions/patches";

/// Shows a record on stdout (plain or JSON lines).
pub(crate) trait Show {
    /// Shows `record`.
    fn show(&mut self, record: &Record);
}

/// Records the steps of the preparation: journal, log file and output.
pub(crate) struct Prep<'a> {
    pub(crate) deploy: &'a str,
    pub(crate) journal: &'a mut Journal,
    pub(crate) log: &'a mut Option<Log>,
    pub(crate) show: &'a mut dyn Show,
    /// Set by SIGINT or SIGTERM: no new step starts.
    pub(crate) interrupted: &'a AtomicBool,
}

/// Why the preparation stopped.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// A step failed: the message says which and why.
    Failed(String),
    /// SIGINT or SIGTERM between steps.
    Interrupted,
}

impl Prep<'_> {
    /// Records `event`.
    pub(crate) fn record(&mut self, event: Event) {
        let record = Record {
            ts: SystemTime::now(),
            deploy: self.deploy.to_string(),
            event,
        };
        if let Err(e) = self.journal.append(&record) {
            eprintln!("mwdeploy: journal: {e}");
        }
        if let Some(log) = self.log.as_mut() {
            // Not critical; the log file warns once itself.
            let _ = log.record(&record);
        }
        self.show.show(&record);
    }

    /// Records one state of a step.
    pub(crate) fn step(
        &mut self,
        step: &str,
        status: PrepStatus,
        detail: Option<String>,
        commits: Vec<String>,
    ) {
        self.record(Event::PrepStep {
            step: step.to_string(),
            status,
            detail,
            commits,
        });
    }

    /// Starts step `step`, unless an interrupt came.
    fn start(&mut self, step: &str) -> Result<(), Stopped> {
        if self.interrupted.load(Ordering::SeqCst) {
            self.step(
                step,
                PrepStatus::Failed,
                Some("interrupted before it started".to_string()),
                Vec::new(),
            );
            return Err(Stopped::Interrupted);
        }
        self.step(step, PrepStatus::Running, None, Vec::new());
        Ok(())
    }

    /// Records `step` as failed with `detail`.
    pub(crate) fn fail_step(&mut self, step: &str, detail: String) -> Stopped {
        self.step(step, PrepStatus::Failed, Some(detail.clone()), Vec::new());
        Stopped::Failed(format!("{step}: {detail}"))
    }
}

/// A pull to do: a label for the output and where.
#[derive(Debug, Clone)]
pub(crate) struct PullTarget {
    /// `pull config`, `pull versions/1.45/extensions/Echo`.
    pub(crate) step: String,
    /// The repository the path is in.
    pub(crate) root: PathBuf,
    /// The path under `root` (empty: the root itself).
    pub(crate) rel: PathBuf,
}

/// The version directories under `staging_path/versions/`: those named, or every one.
pub(crate) fn versions(req: &DeployRequest) -> Result<Vec<String>, String> {
    let dir = req.config.staging_path.join("versions");
    match &req.versions {
        Versions::Only(list) => {
            for v in list {
                if !dir.join(v).is_dir() {
                    return Err(format!(
                        "--versions: {} is not a folder",
                        dir.join(v).display()
                    ));
                }
            }
            Ok(list.clone())
        }
        Versions::All => {
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| format!("cannot list the versions in {}: {e}", dir.display()))?;
            let mut found = Vec::new();
            for e in entries {
                let e = e.map_err(|e| format!("{}: {e}", dir.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() && validate_name("version", &name, 253).is_ok() {
                    found.push(name);
                }
            }
            found.sort();
            if found.is_empty() {
                return Err(format!("no version folder in {}", dir.display()));
            }
            Ok(found)
        }
    }
}

/// Every pull the flags ask for, in order: core, config, versions, extensions, skins.
pub(crate) fn pull_targets(req: &DeployRequest, versions: &[String]) -> Vec<PullTarget> {
    let w = &req.work;
    let staging = &req.config.staging_path;
    let mut out = Vec::new();
    let mut add = |root: PathBuf, rel: PathBuf| {
        let shown = root
            .join(&rel)
            .strip_prefix(staging)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let step = if shown.is_empty() {
            "pull core".to_string()
        } else {
            format!("pull {shown}")
        };
        out.push(PullTarget { step, root, rel });
    };
    if w.core {
        add(staging.clone(), PathBuf::new());
    }
    if w.config {
        add(staging.clone(), PathBuf::from("config"));
    }
    for v in versions {
        let vdir = staging.join("versions").join(v);
        if w.mediawiki {
            add(staging.clone(), Path::new("versions").join(v));
        }
        for e in &w.extensions {
            add(vdir.clone(), Path::new("extensions").join(e));
        }
        for s in &w.skins {
            add(vdir.clone(), Path::new("skins").join(s));
        }
    }
    out
}

/// What the pulls left: the commits now checked out, per repository path in staging
/// (for the release manifests).
#[derive(Debug, Default)]
pub(crate) struct Pulled {
    /// Repository path in staging (`.`, `versions/1.45`) to its commit.
    pub(crate) commits: Vec<(String, String)>,
}

/// The pulls and patches on the staging checkout.
pub(crate) async fn checkout(
    prep: &mut Prep<'_>,
    req: &DeployRequest,
    versions: &[String],
) -> Result<Pulled, Stopped> {
    let git = Git::new(req.config.git_user.clone());
    let mut pulled = Pulled::default();
    let mut done: BTreeSet<(PathBuf, Option<PathBuf>)> = BTreeSet::new();
    for t in pull_targets(req, versions) {
        prep.start(&t.step)?;
        let spec: PullSpec = match git.resolve(&t.root, &t.rel).await {
            Ok(s) => s,
            Err(e) => return Err(prep.fail_step(&t.step, e.to_string())),
        };
        // `--extension A,B` in a version whose extensions are submodules pulls the
        // version once.
        if !done.insert((spec.checkout.clone(), spec.submodule.clone())) {
            prep.step(
                &t.step,
                PrepStatus::Ok,
                Some(format!("pulled above ({})", spec.checkout.display())),
                Vec::new(),
            );
            continue;
        }
        match git.pull(&spec).await {
            Ok(p) => {
                let detail = if p.commits.is_empty() {
                    format!("up to date with {} at {}", p.upstream, short(&p.after))
                } else {
                    format!(
                        "{} from {}: {}..{}",
                        crate::render::count(p.commits.len(), "incoming commit"),
                        p.upstream,
                        short(&p.before),
                        short(&p.after)
                    )
                };
                let repo = p
                    .checkout
                    .strip_prefix(&req.config.staging_path)
                    .map(|r| {
                        if r.as_os_str().is_empty() {
                            ".".to_string()
                        } else {
                            r.display().to_string()
                        }
                    })
                    .unwrap_or_else(|_| p.checkout.display().to_string());
                pulled.commits.push((repo, p.after.clone()));
                prep.step(&t.step, PrepStatus::Ok, Some(detail), p.commits);
            }
            Err(e) => return Err(prep.fail_step(&t.step, e.to_string())),
        }
    }

    if let Some(target) = &req.work.patch_target {
        let dir = req.config.staging.prod_path.join(PATCH_DIR);
        for p in &req.work.patches {
            for v in versions {
                let step = format!("patch {p} ({v})");
                prep.start(&step)?;
                let into = req
                    .config
                    .staging_path
                    .join("versions")
                    .join(v)
                    .join(target);
                match patch::apply(&dir.join(p), &into, req.config.git_user.as_deref()).await {
                    Ok(Patched::Applied) => prep.step(
                        &step,
                        PrepStatus::Ok,
                        Some(format!("applied to {}", into.display())),
                        Vec::new(),
                    ),
                    Ok(Patched::AlreadyApplied) => prep.step(
                        &step,
                        PrepStatus::Warned,
                        Some(format!(
                            "already applied to {}: left as it is (never reversed)",
                            into.display()
                        )),
                        Vec::new(),
                    ),
                    Err(e) => return Err(prep.fail_step(&step, e.to_string())),
                }
            }
        }
    }
    Ok(pulled)
}

/// The first 10 characters of a commit id.
fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// Syncs `staging_path` into staging's live tree with `transfer`, runs staging's
/// `post_copy` hooks and (with `--l10n`) `l10n` at its point, and `post_activate`. The
/// engine then runs staging's canary.
pub(crate) async fn sync_staging(
    prep: &mut Prep<'_>,
    transfer: &dyn Transfer,
    hooks: &dyn Hook,
    l10n: Option<&dyn Hook>,
    staging: &Server,
    release: &ReleaseId,
    layout: Layout,
) -> Result<(), Stopped> {
    let progress = Progress::new(staging.id.clone(), "staging_sync", |_, _, _| {});
    let l10n_point = l10n_point(layout);
    prep.start("staging_sync")?;
    if let Err(e) = transfer.copy(staging, release, &progress).await {
        return Err(prep.fail_step("staging_sync", format!("copy failed: {e}")));
    }
    if staging.hooks.contains(HookPoint::PostCopy) {
        if let Err(e) = hooks
            .run(staging, HookPoint::PostCopy, release, &progress)
            .await
        {
            return Err(prep.fail_step("staging_sync", format!("post_copy failed: {e}")));
        }
    }
    if let (Some(l10n), HookPoint::PostCopy) = (l10n, l10n_point) {
        step_l10n(prep, l10n, l10n_point, staging, release, &progress).await?;
    }
    if let Err(e) = transfer.activate(staging, release, &progress).await {
        return Err(prep.fail_step("staging_sync", format!("activate failed: {e}")));
    }
    prep.step("staging_sync", PrepStatus::Ok, None, Vec::new());
    if let (Some(l10n), HookPoint::PostActivate) = (l10n, l10n_point) {
        step_l10n(prep, l10n, l10n_point, staging, release, &progress).await?;
    }
    if staging.hooks.contains(HookPoint::PostActivate) {
        prep.start("staging_hooks")?;
        if let Err(e) = hooks
            .run(staging, HookPoint::PostActivate, release, &progress)
            .await
        {
            return Err(prep.fail_step("staging_hooks", format!("post_activate failed: {e}")));
        }
        prep.step("staging_hooks", PrepStatus::Ok, None, Vec::new());
    }
    Ok(())
}

/// `l10n_command` on staging, as its own step; `l10n` holds it at `point`.
async fn step_l10n(
    prep: &mut Prep<'_>,
    l10n: &dyn Hook,
    point: HookPoint,
    staging: &Server,
    release: &ReleaseId,
    progress: &Progress,
) -> Result<(), Stopped> {
    prep.start("l10n")?;
    match l10n.run(staging, point, release, progress).await {
        Ok(()) => {
            prep.step("l10n", PrepStatus::Ok, None, Vec::new());
            Ok(())
        }
        Err(e) => Err(prep.fail_step("l10n", e.to_string())),
    }
}

/// Where `--l10n` runs in `layout`: on the new release before it goes live (release
/// layout), or after the copy into the live tree (in place, as the old tool).
pub(crate) fn l10n_point(layout: Layout) -> HookPoint {
    match layout {
        Layout::Releases => HookPoint::PostCopy,
        Layout::Inplace => HookPoint::PostActivate,
    }
}

/// `l10n_command` for `layout`: in the release layout `{prod_path}` is the new release's
/// folder (the live tree is still the old release while it runs).
pub(crate) fn l10n_argv(command: &[String], layout: Layout) -> Vec<String> {
    match layout {
        Layout::Releases => command
            .iter()
            .map(|a| a.replace("{prod_path}", "{release_path}"))
            .collect(),
        Layout::Inplace => command.to_vec(),
    }
}
