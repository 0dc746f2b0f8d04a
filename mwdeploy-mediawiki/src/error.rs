//! Why a staging operation failed.

use std::fmt;
use std::path::{Path, PathBuf};

use mwdeploy_exec::{Cmd, ExecError, Output};

/// Why a staging operation failed. Each names the path, and the command and its last
/// words when one ran.
#[derive(Debug)]
pub enum StagingError {
    /// A path that cannot be used as asked (missing, of the wrong kind, not UTF-8).
    Path {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A command could not be run at all.
    Run {
        /// The checkout or file it was for.
        path: PathBuf,
        /// The command, quoted.
        cmd: String,
        /// Why it could not run (boxed: it is large, and rare).
        source: Box<ExecError>,
    },
    /// A command ran and failed.
    Failed {
        /// The checkout or file it was for.
        path: PathBuf,
        /// What it was doing (`git fetch`, `submodule update`, ...).
        what: &'static str,
        /// The command, quoted.
        cmd: String,
        /// Its exit code (`None`: a signal).
        code: Option<i32>,
        /// Its last words.
        detail: String,
    },
    /// `rel` is neither its own git checkout nor a submodule of `root`.
    NotACheckout {
        /// The directory asked for.
        path: PathBuf,
        /// The staging root it was looked up in (the same as `path` for the root itself).
        root: PathBuf,
        /// The command that said so, quoted.
        cmd: String,
        /// Its last words.
        detail: String,
    },
    /// The checkout's HEAD does not track an upstream branch (e.g. a detached HEAD).
    NoUpstream {
        /// The checkout.
        checkout: PathBuf,
        /// The command, quoted.
        cmd: String,
        /// Its last words.
        detail: String,
    },
    /// `merge --ff-only` refused; nothing was changed.
    NotFastForward {
        /// The checkout.
        checkout: PathBuf,
        /// Its upstream branch (`origin/master`).
        upstream: String,
        /// Why: local commits diverge, or uncommitted changes conflict.
        reason: String,
        /// The command, quoted.
        cmd: String,
        /// Its last words.
        detail: String,
    },
    /// A patch that neither applies nor is already applied.
    PatchDoesNotApply {
        /// The patch file.
        file: PathBuf,
        /// The directory it was applied in.
        target: PathBuf,
        /// The forward dry run, quoted.
        cmd: String,
        /// Its last words.
        detail: String,
    },
}

impl StagingError {
    /// A [`StagingError::Failed`] for `cmd` that ended with `out`.
    pub(crate) fn failed(path: &Path, what: &'static str, cmd: &Cmd, out: &Output) -> Self {
        StagingError::Failed {
            path: path.to_path_buf(),
            what,
            cmd: cmd.to_string(),
            code: out.code,
            detail: out.last_words().to_string(),
        }
    }
}

impl fmt::Display for StagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StagingError::Path { path, problem } => write!(f, "{}: {problem}", path.display()),
            StagingError::Run { path, cmd, source } => {
                write!(f, "{}: cannot run `{cmd}`: {source}", path.display())
            }
            StagingError::Failed {
                path,
                what,
                cmd,
                code,
                detail,
            } => {
                let how = code.map_or_else(|| "a signal".to_string(), |c| format!("status {c}"));
                write!(
                    f,
                    "{}: {what} failed: `{cmd}` exited with {how}: {detail}",
                    path.display()
                )
            }
            StagingError::NotACheckout {
                path,
                root,
                cmd,
                detail,
            } => {
                if path == root {
                    write!(f, "{} is not a git checkout", path.display())?;
                } else {
                    write!(
                        f,
                        "{} is not a git checkout nor a submodule of {}",
                        path.display(),
                        root.display()
                    )?;
                }
                write!(f, " (`{cmd}`: {detail})")
            }
            StagingError::NoUpstream {
                checkout,
                cmd,
                detail,
            } => write!(
                f,
                "{}: HEAD tracks no upstream branch (`{cmd}`: {detail}); check out a branch \
                 that tracks the remote, then deploy again",
                checkout.display()
            ),
            StagingError::NotFastForward {
                checkout,
                upstream,
                reason,
                cmd,
                detail,
            } => write!(
                f,
                "cannot fast-forward {} to {upstream}: {reason}; nothing was changed \
                 (mwdeploy never resets over local work) (`{cmd}`: {detail})",
                checkout.display()
            ),
            StagingError::PatchDoesNotApply {
                file,
                target,
                cmd,
                detail,
            } => write!(
                f,
                "patch {} does not apply to {} and is not already applied (partly applied, \
                 or the code changed); nothing was changed (`{cmd}`: {detail})",
                file.display(),
                target.display()
            ),
        }
    }
}

impl std::error::Error for StagingError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StagingError::Run { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

/// `path` as text, or an error: paths reach git and patch as UTF-8 arguments.
pub(crate) fn utf8(path: &Path) -> Result<&str, StagingError> {
    path.to_str().ok_or_else(|| StagingError::Path {
        path: path.to_path_buf(),
        problem: "the path is not UTF-8".into(),
    })
}

/// `sudo -n -u <user> --` when a user is given, else nothing: the front of an argv.
pub(crate) fn sudo_prefix(user: Option<&str>) -> Vec<String> {
    match user {
        Some(u) => ["sudo", "-n", "-u", u, "--"].map(String::from).to_vec(),
        None => Vec::new(),
    }
}

/// Runs `cmd` here; a command that cannot start is an error naming `path`.
pub(crate) async fn run_local(path: &Path, cmd: &Cmd) -> Result<Output, StagingError> {
    use mwdeploy_exec::{CommandRunner, LocalRunner};
    LocalRunner::new()
        .run(cmd, &mut |_, _| {})
        .await
        .map_err(|source| StagingError::Run {
            path: path.to_path_buf(),
            cmd: cmd.to_string(),
            source: Box::new(source),
        })
}

/// Shared helpers of the staging tests: temporary directories and the tools they need.
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system's temp dir, removed when dropped.
    #[derive(Debug)]
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        /// A new, empty directory named after the process and a counter.
        pub(crate) fn new(name: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let d = std::env::temp_dir().join(format!(
                "mwdeploy-staging-{}-{n}-{name}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }

        /// Its path.
        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Fails the test (never skips it) unless `tool` runs.
    pub(crate) fn need(tool: &str) {
        let ok = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "`{tool}` is not on PATH: the staging tests need it; run scripts/install-deps.sh"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_path_the_command_and_the_last_words() {
        let cmd = Cmd::new(["git", "-C", "/srv/a b", "fetch", "--quiet"]);
        let out = Output::new(Some(128), "", "fatal: could not read from remote\n");
        let e = StagingError::failed(Path::new("/srv/a b"), "git fetch", &cmd, &out);
        assert_eq!(
            e.to_string(),
            "/srv/a b: git fetch failed: `git -C '/srv/a b' fetch --quiet` exited with \
             status 128: fatal: could not read from remote"
        );
    }
}
