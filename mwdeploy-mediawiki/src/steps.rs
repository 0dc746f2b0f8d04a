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
//! any production server is touched.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mwdeploy_core::event::PrepStatus;
use mwdeploy_core::model::validate_name;
use mwdeploy_core::ports::{Hook, Progress, Transfer};
use mwdeploy_core::text::count;
use mwdeploy_core::{Event, HookPoint, Layout, ReleaseId, Server};

use crate::git::{Git, PullSpec};
use crate::patch::{self, Patched};
use crate::work::{Versions, Work};

/// Where `--patch` files are read from, under staging's live tree.
pub const PATCH_DIR: &str = "scripts/extensions/patches";

/// Records the steps of the preparation (the journal, the log file, the output: the
/// runner decides), and says whether to stop between steps.
pub trait Steps {
    /// Records `event` (a `prep_step`).
    fn record(&mut self, event: Event);

    /// Whether SIGINT or SIGTERM came: no new step starts.
    fn interrupted(&self) -> bool;

    /// Records one state of a step.
    fn step(
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
        if self.interrupted() {
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
    fn fail_step(&mut self, step: &str, detail: String) -> Stopped {
        self.step(step, PrepStatus::Failed, Some(detail.clone()), Vec::new());
        Stopped::failed(step, detail)
    }
}

/// Why the preparation stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    /// A step failed.
    #[error("{step}: {detail}")]
    Failed {
        /// The step (`pull config`, `staging_sync`, `l10n`).
        step: String,
        /// Why.
        detail: String,
    },
    /// SIGINT or SIGTERM between steps.
    #[error("interrupted")]
    Interrupted,
}

impl Stopped {
    /// Step `step` failed for `detail`.
    pub fn failed(step: &str, detail: impl Into<String>) -> Self {
        Stopped::Failed {
            step: step.to_string(),
            detail: detail.into(),
        }
    }
}

/// Where the staging checkout is and how its pulls and patches run.
#[derive(Debug, Clone, Copy)]
pub struct Checkout<'a> {
    /// `staging_path`.
    pub staging_path: &'a Path,
    /// `git_user`: pulls and patches run as this user (`sudo -n -u`).
    pub git_user: Option<&'a str>,
    /// Where `--patch` files are read from ([`PATCH_DIR`] under staging's live tree).
    pub patch_dir: &'a Path,
    /// What to pull and patch.
    pub work: &'a Work,
}

/// A pull to do: a label for the output and where.
#[derive(Debug, Clone)]
pub struct PullTarget {
    /// `pull config`, `pull versions/1.45/extensions/Echo`.
    pub step: String,
    /// The repository the path is in.
    pub root: PathBuf,
    /// The path under `root` (empty: the root itself).
    pub rel: PathBuf,
}

/// The version directories under `staging_path/versions/`: those named, or every one.
pub fn versions(staging_path: &Path, versions: &Versions) -> Result<Vec<String>, String> {
    let dir = staging_path.join("versions");
    match versions {
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
pub fn pull_targets(staging: &Path, w: &Work, versions: &[String]) -> Vec<PullTarget> {
    let staging = staging.to_path_buf();
    let mut out = Vec::new();
    let mut add = |root: PathBuf, rel: PathBuf| {
        let shown = root
            .join(&rel)
            .strip_prefix(&staging)
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
pub struct Pulled {
    /// Repository path in staging (`.`, `versions/1.45`) to its commit.
    pub commits: Vec<(String, String)>,
}

/// The pulls and patches on the staging checkout.
pub async fn checkout(
    prep: &mut dyn Steps,
    at: Checkout<'_>,
    versions: &[String],
) -> Result<Pulled, Stopped> {
    let git = Git::new(at.git_user.map(str::to_string));
    let mut pulled = Pulled::default();
    let mut done: BTreeSet<(PathBuf, Option<PathBuf>)> = BTreeSet::new();
    for t in pull_targets(at.staging_path, at.work, versions) {
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
                        count(p.commits.len(), "incoming commit"),
                        p.upstream,
                        short(&p.before),
                        short(&p.after)
                    )
                };
                let repo = p
                    .checkout
                    .strip_prefix(at.staging_path)
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

    if let Some(target) = &at.work.patch_target {
        let dir = at.patch_dir;
        for p in &at.work.patches {
            for v in versions {
                let step = format!("patch {p} ({v})");
                prep.start(&step)?;
                let into = at.staging_path.join("versions").join(v).join(target);
                match patch::apply(&dir.join(p), &into, at.git_user).await {
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
pub async fn sync_staging(
    prep: &mut dyn Steps,
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
    prep: &mut dyn Steps,
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
pub fn l10n_point(layout: Layout) -> HookPoint {
    match layout {
        Layout::Releases => HookPoint::PostCopy,
        Layout::Inplace => HookPoint::PostActivate,
    }
}

/// `l10n_command` for `layout`: in the release layout `{prod_path}` is the new release's
/// folder (the live tree is still the old release while it runs).
pub fn l10n_argv(command: &[String], layout: Layout) -> Vec<String> {
    match layout {
        Layout::Releases => command
            .iter()
            .map(|a| a.replace("{prod_path}", "{release_path}"))
            .collect(),
        Layout::Inplace => command.to_vec(),
    }
}
