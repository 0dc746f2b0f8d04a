//! Pulling a git checkout of the staging tree: fetch, show what comes in, fast-forward
//! only, then the submodules.
//!
//! An extension or skin is either its own clone, or a submodule (a gitlink) of the
//! version repo; [`Git::resolve`] tells which, and for a submodule the pull is the
//! parent's followed by `submodule update` of that path.

use std::path::{Component, Path, PathBuf};

use mwdeploy_exec::{Cmd, Output};

use crate::error::{run_local, sudo_prefix, utf8, StagingError};

/// Incoming commits kept in [`Pulled::commits`]; beyond it, one "… and N more" entry.
const MAX_COMMITS: usize = 200;

/// The format of one incoming commit: `<short hash> <subject>`.
const LOG_FORMAT: &str = "--format=%h %s";

/// Runs git, as `user` through `sudo -n -u` when set, never waiting on a prompt.
#[derive(Debug, Clone)]
pub struct Git {
    /// Who runs git (`git_user`); none: the deploy's own user.
    user: Option<String>,
    /// `NAME=VALUE` pairs put in git's environment through `env`.
    env: Vec<String>,
}

/// What to pull: a checkout, and within it the one submodule to update (none: all of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// The git work tree that is fetched and fast-forwarded.
    pub checkout: PathBuf,
    /// The submodule (relative to `checkout`) to update after it; none: every submodule.
    pub submodule: Option<PathBuf>,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The checkout that was fast-forwarded.
    pub checkout: PathBuf,
    /// Its upstream branch (`origin/master`).
    pub upstream: String,
    /// HEAD before (full hash).
    pub before: String,
    /// HEAD after (full hash; the same as `before` when nothing came in).
    pub after: String,
    /// The incoming commits, `<short hash> <subject>`, oldest first; at most 200 and then
    /// one `… and N more`.
    pub commits: Vec<String>,
}

impl Git {
    /// Runs git as `user` (through `sudo -n -u <user> --`) when given, else as this process.
    pub fn new(user: Option<String>) -> Self {
        Git {
            user,
            env: vec!["GIT_TERMINAL_PROMPT=0".into()],
        }
    }

    /// The same, with `NAME=VALUE` in git's environment as well (tests: a file:// submodule).
    #[cfg(test)]
    fn with_env(mut self, pair: &str) -> Self {
        self.env.push(pair.into());
        self
    }

    /// `[sudo -n -u <user> --] env GIT_TERMINAL_PROMPT=0 git -C <dir> <args...>`.
    pub fn cmd(&self, dir: &Path, args: &[&str]) -> Cmd {
        let mut argv = sudo_prefix(self.user.as_deref());
        argv.push("env".into());
        argv.extend(self.env.iter().cloned());
        argv.extend([
            "git".into(),
            "-C".into(),
            dir.to_string_lossy().into_owned(),
        ]);
        argv.extend(args.iter().map(|a| a.to_string()));
        Cmd::new(argv)
    }

    /// The commands [`Git::pull`] runs for `spec`, in order (for `--dry-run`).
    pub fn pull_commands(&self, spec: &PullSpec) -> Vec<Cmd> {
        let dir = &spec.checkout;
        vec![
            self.cmd(dir, &UPSTREAM),
            self.cmd(dir, &FETCH),
            self.cmd(dir, &HEAD),
            self.cmd(dir, &["log", "--reverse", LOG_FORMAT, "HEAD..@{u}"]),
            self.cmd(dir, &MERGE),
            self.cmd(dir, &HEAD),
            self.submodule_update(spec),
        ]
    }

    /// `submodule update --init --recursive [-- <submodule>]` in the checkout.
    fn submodule_update(&self, spec: &PullSpec) -> Cmd {
        let sub = spec.submodule.as_ref().map(|s| s.to_string_lossy());
        let mut args = vec!["submodule", "update", "--init", "--recursive"];
        if let Some(s) = &sub {
            args.extend(["--", s.as_ref()]);
        }
        self.cmd(&spec.checkout, &args)
    }

    /// Runs `cmd`, which is about `path`.
    async fn run(&self, path: &Path, cmd: &Cmd) -> Result<Output, StagingError> {
        run_local(path, cmd).await
    }

    /// Runs `args` in `dir`; an error unless it succeeds.
    async fn run_ok(
        &self,
        dir: &Path,
        what: &'static str,
        args: &[&str],
    ) -> Result<Output, StagingError> {
        let cmd = self.cmd(dir, args);
        let out = self.run(dir, &cmd).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(StagingError::failed(dir, what, &cmd, &out))
        }
    }

    /// What to pull for `rel` (a directory relative to `root`; empty: `root` itself).
    ///
    /// A gitlink of `root` (a submodule) is `{root, Some(rel)}`; a directory that is its
    /// own git work tree is `{root/rel, None}`; anything else is an error.
    pub async fn resolve(&self, root: &Path, rel: &Path) -> Result<PullSpec, StagingError> {
        utf8(root)?;
        utf8(rel)?;
        is_dir(root)?;
        let mut parts = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
                Component::CurDir => {}
                _ => {
                    return Err(StagingError::Path {
                        path: rel.to_path_buf(),
                        problem: "must be a path inside the staging tree (no `..`, not absolute)"
                            .into(),
                    })
                }
            }
        }
        if parts.is_empty() {
            self.own_work_tree(root, root).await?;
            return Ok(PullSpec {
                checkout: root.to_path_buf(),
                submodule: None,
            });
        }
        let rel = parts.join("/");
        // A gitlink (mode 160000) in root's index: a submodule, pulled through its parent.
        // The directory need not exist yet: `submodule update --init` makes it.
        let ls = self.cmd(
            root,
            &["--literal-pathspecs", "ls-files", "-s", "-z", "--", &rel],
        );
        let out = self.run(root, &ls).await?;
        // A failure (root is not a repo) just means: not a submodule of root.
        if out.success() && out.stdout.split('\0').any(|e| is_gitlink(e, &rel)) {
            return Ok(PullSpec {
                checkout: root.to_path_buf(),
                submodule: Some(PathBuf::from(rel)),
            });
        }
        let dir = root.join(&rel);
        is_dir(&dir)?;
        // Its own clone; or, as `git -C <dir> pull` in the old tool, a plain folder of a
        // repository within `root` (a staging whose `config/` is a folder of the staging
        // repository): that repository is pulled. Never one above `root`.
        let top = self.work_tree_top(&dir, root).await?;
        let inside = match (std::fs::canonicalize(&top), std::fs::canonicalize(root)) {
            (Ok(t), Ok(r)) => t.starts_with(r),
            _ => false,
        };
        if !inside {
            return Err(self.not_own(&dir, root, format!("its work tree is {}", top.display())));
        }
        Ok(PullSpec {
            checkout: if same_dir(&top, &dir) { dir } else { top },
            submodule: None,
        })
    }

    /// The top of the git work tree `dir` is in, or an error naming `root`.
    async fn work_tree_top(&self, dir: &Path, root: &Path) -> Result<PathBuf, StagingError> {
        let cmd = self.cmd(dir, &["rev-parse", "--show-toplevel"]);
        let out = self.run(dir, &cmd).await?;
        if !out.success() {
            return Err(StagingError::NotACheckout {
                path: dir.to_path_buf(),
                root: root.to_path_buf(),
                cmd: cmd.to_string(),
                detail: out.last_words().to_string(),
            });
        }
        Ok(PathBuf::from(out.stdout.trim_end_matches(['\n', '\r'])))
    }

    /// `dir` is not a checkout of its own (nor a submodule of `root`), for `why`.
    fn not_own(&self, dir: &Path, root: &Path, why: String) -> StagingError {
        let cmd = self.cmd(dir, &["rev-parse", "--show-toplevel"]);
        StagingError::NotACheckout {
            path: dir.to_path_buf(),
            root: root.to_path_buf(),
            cmd: cmd.to_string(),
            detail: why,
        }
    }
}

/// Whether `a` and `b` are the same folder.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

impl Git {
    /// `Ok` if `dir` is the top of its own git work tree, else an error naming `root`.
    async fn own_work_tree(&self, dir: &Path, root: &Path) -> Result<(), StagingError> {
        let cmd = self.cmd(dir, &["rev-parse", "--show-toplevel"]);
        let out = self.run(dir, &cmd).await?;
        let not = |detail: String| StagingError::NotACheckout {
            path: dir.to_path_buf(),
            root: root.to_path_buf(),
            cmd: cmd.to_string(),
            detail,
        };
        if !out.success() {
            return Err(not(out.last_words().to_string()));
        }
        let top = out.stdout.trim_end_matches(['\n', '\r']);
        let same = match (std::fs::canonicalize(top), std::fs::canonicalize(dir)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            Ok(())
        } else {
            Err(not(format!("its work tree is {top}")))
        }
    }

    /// Pulls `spec`: fetch, the incoming commits, fast-forward only, then the submodules.
    ///
    /// A checkout that cannot fast-forward (local commits diverge, or uncommitted changes
    /// conflict with what comes in) is an error and is left exactly as it was. Uncommitted
    /// changes that do not conflict stay.
    pub async fn pull(&self, spec: &PullSpec) -> Result<Pulled, StagingError> {
        let dir = spec.checkout.as_path();
        utf8(dir)?;
        if let Some(s) = &spec.submodule {
            utf8(s)?;
        }
        is_dir(dir)?;

        let cmd = self.cmd(dir, &UPSTREAM);
        let out = self.run(dir, &cmd).await?;
        if !out.success() {
            return Err(StagingError::NoUpstream {
                checkout: dir.to_path_buf(),
                cmd: cmd.to_string(),
                detail: out.last_words().to_string(),
            });
        }
        let upstream = out.stdout.trim().to_string();

        // Without a remote argument git fetches the remote of the current branch's
        // upstream (branch.<name>.remote): the one @{u} comes from.
        self.run_ok(dir, "git fetch", &FETCH).await?;
        let before = self.head(dir).await?;
        let log = self
            .run_ok(
                dir,
                "git log",
                &["log", "--reverse", LOG_FORMAT, "HEAD..@{u}"],
            )
            .await?;
        let commits = cap(log.stdout.lines().map(str::to_string).collect());

        let merge = self.cmd(dir, &MERGE);
        let out = self.run(dir, &merge).await?;
        if !out.success() {
            let reason = self.why_not_ff(dir, &upstream).await;
            return Err(StagingError::NotFastForward {
                checkout: dir.to_path_buf(),
                upstream,
                reason,
                cmd: merge.to_string(),
                detail: out.last_words().to_string(),
            });
        }
        let after = self.head(dir).await?;

        let sub = self.submodule_update(spec);
        let out = self.run(dir, &sub).await?;
        if !out.success() {
            return Err(StagingError::failed(dir, "submodule update", &sub, &out));
        }
        Ok(Pulled {
            checkout: dir.to_path_buf(),
            upstream,
            before,
            after,
            commits,
        })
    }

    /// HEAD's full hash.
    async fn head(&self, dir: &Path) -> Result<String, StagingError> {
        let out = self.run_ok(dir, "git rev-parse HEAD", &HEAD).await?;
        Ok(out.stdout.trim().to_string())
    }

    /// Why `merge --ff-only` refused: diverged history, or conflicting local changes.
    async fn why_not_ff(&self, dir: &Path, upstream: &str) -> String {
        let cmd = self.cmd(dir, &["merge-base", "--is-ancestor", "HEAD", "@{u}"]);
        match self.run(dir, &cmd).await.map(|o| o.code) {
            Ok(Some(0)) => format!(
                "uncommitted local changes conflict with the incoming commits of {upstream}"
            ),
            _ => format!("local commits diverge from {upstream}"),
        }
    }
}

/// The upstream branch's name: `origin/master`.
const UPSTREAM: [&str; 4] = ["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"];
/// Fetches the upstream's remote.
const FETCH: [&str; 2] = ["fetch", "--quiet"];
/// HEAD's full hash.
const HEAD: [&str; 3] = ["rev-parse", "--verify", "HEAD"];
/// Fast-forward only: never a merge commit, never over conflicting local changes.
const MERGE: [&str; 3] = ["merge", "--ff-only", "@{u}"];

/// Whether an `ls-files -s -z` entry (`<mode> <hash> <stage>\t<path>`) is a gitlink at `rel`.
fn is_gitlink(entry: &str, rel: &str) -> bool {
    match entry.split_once('\t') {
        Some((meta, path)) => path == rel && meta.starts_with("160000 "),
        None => false,
    }
}

/// The first [`MAX_COMMITS`] commits, then `… and N more`.
fn cap(mut commits: Vec<String>) -> Vec<String> {
    if commits.len() > MAX_COMMITS {
        let more = commits.len() - MAX_COMMITS;
        commits.truncate(MAX_COMMITS);
        commits.push(format!("… and {more} more"));
    }
    commits
}

/// `Ok` if `dir` is an existing directory, else an error naming it.
fn is_dir(dir: &Path) -> Result<(), StagingError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(StagingError::Path {
            path: dir.to_path_buf(),
            problem: "not a directory".into(),
        }),
        Err(e) => Err(StagingError::Path {
            path: dir.to_path_buf(),
            problem: format!("no such directory ({e})"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testutil::{need, TempDir};

    /// Runs a test's own git (commits, clones) in `dir`; panics unless it succeeds.
    fn git(dir: &Path, args: &[&str]) -> String {
        need("git");
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "protocol.file.allow=always",
            ])
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes `text` to `dir/file` and commits it.
    fn commit(dir: &Path, file: &str, text: &str, msg: &str) {
        std::fs::write(dir.join(file), text).unwrap();
        git(dir, &["add", "--", file]);
        git(dir, &["commit", "-q", "-m", msg]);
    }

    /// The production git, isolated from the machine's git config, file:// allowed.
    fn prod_git() -> Git {
        need("git");
        Git::new(None)
            .with_env("GIT_CONFIG_NOSYSTEM=1")
            .with_env("GIT_CONFIG_GLOBAL=/dev/null")
            .with_env("GIT_CONFIG_COUNT=1")
            .with_env("GIT_CONFIG_KEY_0=protocol.file.allow")
            .with_env("GIT_CONFIG_VALUE_0=always")
    }

    /// `up` (a repo with one commit) and `st`, its clone tracking `origin/main`.
    fn upstream_and_clone(t: &TempDir) -> (PathBuf, PathBuf) {
        let up = t.path().join("up");
        let st = t.path().join("st");
        std::fs::create_dir(&up).unwrap();
        git(&up, &["init", "-q", "-b", "main"]);
        commit(&up, "a.txt", "one\n", "first");
        commit(&up, "b.txt", "b\n", "b file");
        git(t.path(), &["clone", "-q", "up", "st"]);
        (up, st)
    }

    fn head(dir: &Path) -> String {
        git(dir, &["rev-parse", "HEAD"])
    }

    fn spec(dir: &Path) -> PullSpec {
        PullSpec {
            checkout: dir.to_path_buf(),
            submodule: None,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_pull_fast_forwards_and_lists_incoming_commits_oldest_first() {
        let t = TempDir::new("pull");
        let (up, st) = upstream_and_clone(&t);
        let before = head(&st);
        commit(&up, "a.txt", "two\n", "second");
        commit(&up, "a.txt", "three\n", "third");
        let p = prod_git().pull(&spec(&st)).await.unwrap();
        assert_eq!(p.upstream, "origin/main");
        assert_eq!(p.before, before);
        assert_eq!(p.after, head(&up));
        assert_eq!(head(&st), head(&up));
        assert_eq!(p.checkout, st);
        let subjects: Vec<&str> = p
            .commits
            .iter()
            .map(|c| c.split_once(' ').unwrap().1)
            .collect();
        assert_eq!(subjects, ["second", "third"]);
        let short = git(&up, &["rev-parse", "--short", "HEAD"]);
        assert_eq!(p.commits[1], format!("{short} third"));
        assert_eq!(
            std::fs::read_to_string(st.join("a.txt")).unwrap(),
            "three\n"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_pull_with_nothing_incoming_is_ok_and_empty() {
        let t = TempDir::new("noop");
        let (_up, st) = upstream_and_clone(&t);
        let before = head(&st);
        let p = prod_git().pull(&spec(&st)).await.unwrap();
        assert!(p.commits.is_empty(), "{:?}", p.commits);
        assert_eq!(p.before, before);
        assert_eq!(p.after, before);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_diverged_checkout_is_refused_and_left_as_it_was() {
        let t = TempDir::new("diverged");
        let (up, st) = upstream_and_clone(&t);
        commit(&up, "a.txt", "upstream\n", "upstream change");
        commit(&st, "c.txt", "local\n", "local commit");
        std::fs::write(st.join("b.txt"), "uncommitted\n").unwrap();
        let before = head(&st);
        let status = git(&st, &["status", "--porcelain"]);
        let e = prod_git().pull(&spec(&st)).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StagingError::NotFastForward { .. }), "{msg}");
        assert!(msg.contains("cannot fast-forward"), "{msg}");
        assert!(
            msg.contains(
                "local commits diverge from origin/main; nothing was changed \
                 (mwdeploy never resets over local work)"
            ),
            "{msg}"
        );
        assert!(msg.contains(&st.display().to_string()), "{msg}");
        assert!(msg.contains("merge --ff-only"), "{msg}");
        assert_eq!(head(&st), before);
        assert_eq!(git(&st, &["status", "--porcelain"]), status);
        assert_eq!(
            std::fs::read_to_string(st.join("b.txt")).unwrap(),
            "uncommitted\n"
        );
        assert_eq!(std::fs::read_to_string(st.join("a.txt")).unwrap(), "one\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_uncommitted_change_survives_a_pull_unless_it_conflicts() {
        let t = TempDir::new("dirty");
        let (up, st) = upstream_and_clone(&t);
        commit(&up, "a.txt", "two\n", "second");
        std::fs::write(st.join("b.txt"), "security patch\n").unwrap();
        let p = prod_git().pull(&spec(&st)).await.unwrap();
        assert_eq!(p.commits.len(), 1);
        assert_eq!(head(&st), head(&up));
        assert_eq!(std::fs::read_to_string(st.join("a.txt")).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(st.join("b.txt")).unwrap(),
            "security patch\n"
        );

        // A local change to a file that comes in: refused, nothing touched.
        commit(&up, "b.txt", "upstream b\n", "b upstream");
        let before = head(&st);
        let e = prod_git().pull(&spec(&st)).await.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("uncommitted local changes conflict"), "{msg}");
        assert!(msg.contains("nothing was changed"), "{msg}");
        assert_eq!(head(&st), before);
        assert_eq!(
            std::fs::read_to_string(st.join("b.txt")).unwrap(),
            "security patch\n"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_detached_head_has_no_upstream() {
        let t = TempDir::new("detached");
        let (_up, st) = upstream_and_clone(&t);
        git(&st, &["checkout", "-q", "--detach"]);
        let e = prod_git().pull(&spec(&st)).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StagingError::NoUpstream { .. }), "{msg}");
        assert!(
            msg.contains("check out a branch that tracks the remote"),
            "{msg}"
        );
        assert!(msg.contains(&st.display().to_string()), "{msg}");
        assert!(msg.contains("@{u}"), "{msg}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_submodule_resolves_to_its_parent_and_pull_updates_it() {
        let t = TempDir::new("submodule");
        let ext = t.path().join("ext");
        std::fs::create_dir(&ext).unwrap();
        git(&ext, &["init", "-q", "-b", "main"]);
        commit(&ext, "Ext.php", "<?php // 1\n", "ext 1");
        let ver = t.path().join("ver");
        std::fs::create_dir(&ver).unwrap();
        git(&ver, &["init", "-q", "-b", "main"]);
        commit(&ver, "index.php", "<?php\n", "core");
        git(
            &ver,
            &[
                "submodule",
                "add",
                "-q",
                ext.to_str().unwrap(),
                "extensions/Foo",
            ],
        );
        git(&ver, &["commit", "-q", "-m", "add Foo"]);
        git(
            t.path(),
            &["clone", "-q", "--recurse-submodules", "ver", "st"],
        );
        let st = t.path().join("st");

        let g = prod_git();
        let spec = g.resolve(&st, Path::new("extensions/Foo")).await.unwrap();
        assert_eq!(
            spec,
            PullSpec {
                checkout: st.clone(),
                submodule: Some(PathBuf::from("extensions/Foo")),
            }
        );

        // Foo moves on, and the version repo's gitlink with it.
        commit(&ext, "Ext.php", "<?php // 2\n", "ext 2");
        let foo = ver.join("extensions/Foo");
        git(&foo, &["pull", "-q", "--ff-only"]);
        git(&ver, &["add", "extensions/Foo"]);
        git(&ver, &["commit", "-q", "-m", "bump Foo"]);

        let p = g.pull(&spec).await.unwrap();
        assert_eq!(p.commits.len(), 1, "{:?}", p.commits);
        assert!(p.commits[0].ends_with(" bump Foo"), "{:?}", p.commits);
        assert_eq!(head(&st.join("extensions/Foo")), head(&ext));
        assert_eq!(
            std::fs::read_to_string(st.join("extensions/Foo/Ext.php")).unwrap(),
            "<?php // 2\n"
        );
        let last = g.pull_commands(&spec).pop().unwrap().to_string();
        assert!(
            last.ends_with("submodule update --init --recursive -- extensions/Foo"),
            "{last}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_resolve_plain_clone_root_and_non_checkouts() {
        let t = TempDir::new("resolve");
        let (_up, st) = upstream_and_clone(&t);
        let g = prod_git();
        // The root itself.
        assert_eq!(g.resolve(&st, Path::new("")).await.unwrap(), spec(&st));
        // A clone inside the root's tree (untracked there): its own checkout.
        git(&st, &["clone", "-q", "../up", "versions/1.43"]);
        assert_eq!(
            g.resolve(&st, Path::new("versions/1.43")).await.unwrap(),
            spec(&st.join("versions/1.43"))
        );
        // A plain folder of the root's repository (a staging whose `config/` is a folder
        // of the staging repository): as the old tool's `git -C <folder> pull`, the
        // repository it is in is pulled.
        std::fs::create_dir_all(st.join("plain")).unwrap();
        assert_eq!(g.resolve(&st, Path::new("plain")).await.unwrap(), spec(&st));
        // One whose repository is above the root it was asked under: refused, never
        // pulled.
        std::fs::create_dir_all(st.join("plain/deeper")).unwrap();
        let e = g
            .resolve(&st.join("plain"), Path::new("deeper"))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "{} is not a git checkout nor a submodule of {}",
                st.join("plain/deeper").display(),
                st.join("plain").display()
            )),
            "{msg}"
        );
        assert!(msg.contains("rev-parse --show-toplevel"), "{msg}");
        assert!(msg.contains("its work tree is"), "{msg}");
        // A directory outside any repo.
        let bare = t.path().join("nogit");
        std::fs::create_dir_all(bare.join("x")).unwrap();
        let e = g.resolve(&bare, Path::new("x")).await.unwrap_err();
        assert!(matches!(e, StagingError::NotACheckout { .. }), "{e}");
        let e = g.resolve(&bare, Path::new("")).await.unwrap_err();
        assert!(e.to_string().contains("is not a git checkout"), "{e}");
        // Missing, and escaping the root.
        let e = g.resolve(&st, Path::new("missing")).await.unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("missing: no such directory"), "{msg}");
        let e = g.resolve(&st, Path::new("../up")).await.unwrap_err();
        assert!(matches!(e, StagingError::Path { .. }), "{e}");
    }

    #[test]
    fn staging_git_argv_runs_as_the_user_without_prompts() {
        let g = Git::new(Some("www-data".into()));
        let c = g.cmd(Path::new("/srv/mediawiki-staging"), &["fetch", "--quiet"]);
        assert_eq!(
            c.argv,
            [
                "sudo",
                "-n",
                "-u",
                "www-data",
                "--",
                "env",
                "GIT_TERMINAL_PROMPT=0",
                "git",
                "-C",
                "/srv/mediawiki-staging",
                "fetch",
                "--quiet"
            ]
        );
        assert!(!c.sudo);
        assert!(c
            .to_string()
            .starts_with("sudo -n -u www-data -- env GIT_TERMINAL_PROMPT=0 git -C"));
        let c = Git::new(None).cmd(Path::new("/s"), &["status"]);
        assert_eq!(
            c.argv,
            ["env", "GIT_TERMINAL_PROMPT=0", "git", "-C", "/s", "status"]
        );
        let cmds = Git::new(None).pull_commands(&spec(Path::new("/s")));
        let shown: Vec<String> = cmds.iter().map(|c| c.argv[5..].join(" ")).collect();
        assert_eq!(
            shown,
            [
                "rev-parse --abbrev-ref --symbolic-full-name @{u}",
                "fetch --quiet",
                "rev-parse --verify HEAD",
                "log --reverse --format=%h %s HEAD..@{u}",
                "merge --ff-only @{u}",
                "rev-parse --verify HEAD",
                "submodule update --init --recursive",
            ]
        );
    }

    #[test]
    fn staging_commits_are_capped_at_200() {
        let many: Vec<String> = (0..205).map(|i| format!("{i:07x} c{i}")).collect();
        let c = cap(many);
        assert_eq!(c.len(), 201);
        assert_eq!(c[199], "00000c7 c199");
        assert_eq!(c[200], "… and 5 more");
        assert_eq!(cap(vec!["a x".into()]), ["a x"]);
    }
}
