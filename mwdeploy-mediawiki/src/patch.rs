//! `--patch P --patch-target T`: applying a patch file to the staging tree with
//! `patch -p1 --forward --batch`, after a dry run; a patch that is already applied is
//! reported, never reversed.

use std::path::{Path, PathBuf};

use mwdeploy_exec::Cmd;

use crate::error::{run_local, sudo_prefix, utf8, StagingError};

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patched {
    /// The patch was applied.
    Applied,
    /// The patch was already applied; nothing was changed.
    AlreadyApplied,
}

/// `[sudo -n -u <user> --] patch -p1 <flags...> -d <target> -i <file>`.
fn cmd(file: &Path, target: &Path, user: Option<&str>, flags: &[&str]) -> Cmd {
    let mut argv = sudo_prefix(user);
    argv.extend(["patch", "-p1"].map(String::from));
    argv.extend(flags.iter().map(|f| f.to_string()));
    argv.extend([
        "-d".into(),
        target.to_string_lossy().into_owned(),
        "-i".into(),
        file.to_string_lossy().into_owned(),
    ]);
    Cmd::new(argv)
}

/// The forward dry run: does it apply cleanly?
const CHECK: [&str; 4] = [
    "--forward",
    "--batch",
    "--no-backup-if-mismatch",
    "--dry-run",
];
/// The real thing.
const APPLY: [&str; 3] = ["--forward", "--batch", "--no-backup-if-mismatch"];
/// The reverse dry run: is it already applied? `--forward` here makes a file that would
/// still apply forward fail the check (without it `--batch` would "ignore -R" for that file
/// and call a half-applied patch applied).
const APPLIED: [&str; 4] = ["-R", "--forward", "--batch", "--dry-run"];

/// An absolute path for `p` (patch's `-d` changes directory before it reads `-i`).
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// The commands [`apply`] may run, in order (for `--dry-run`): the forward dry run, the
/// patch itself, and the reverse dry run that tells an already applied patch (run only
/// when the forward dry run fails).
pub fn apply_commands(file: &Path, target: &Path, user: Option<&str>) -> Vec<Cmd> {
    let (file, target) = (absolute(file), absolute(target));
    [&CHECK[..], &APPLY[..], &APPLIED[..]]
        .into_iter()
        .map(|flags| cmd(&file, &target, user, flags))
        .collect()
}

/// Applies the patch `file` in the directory `target` (`-p1`), as `user` when given.
///
/// A patch that applies cleanly is applied; one that is already applied is reported and
/// left alone; anything else is an error and nothing is changed.
pub async fn apply(
    file: &Path,
    target: &Path,
    user: Option<&str>,
) -> Result<Patched, StagingError> {
    utf8(file)?;
    utf8(target)?;
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(path_error(file, "the patch is not a regular file")),
        Err(e) => return Err(path_error(file, &format!("no such patch file ({e})"))),
    }
    match std::fs::metadata(target) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(path_error(target, "the patch target is not a directory")),
        Err(e) => {
            return Err(path_error(
                target,
                &format!("no such patch target directory ({e})"),
            ))
        }
    }
    let (file, target) = (absolute(file), absolute(target));

    let check = cmd(&file, &target, user, &CHECK);
    let out = run_local(&file, &check).await?;
    if out.success() {
        let real = cmd(&file, &target, user, &APPLY);
        let done = run_local(&file, &real).await?;
        return if done.success() {
            Ok(Patched::Applied)
        } else {
            Err(StagingError::failed(&file, "patch", &real, &done))
        };
    }
    let reverse = cmd(&file, &target, user, &APPLIED);
    if run_local(&file, &reverse).await?.success() {
        return Ok(Patched::AlreadyApplied);
    }
    Err(StagingError::PatchDoesNotApply {
        file,
        target,
        cmd: check.to_string(),
        detail: out.last_words().to_string(),
    })
}

/// A [`StagingError::Path`].
fn path_error(path: &Path, problem: &str) -> StagingError {
    StagingError::Path {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::testutil::{need, TempDir};

    const PATCH: &str = "\
--- a/includes/Foo.php
+++ b/includes/Foo.php
@@ -1,3 +1,3 @@
 <?php
-$insecure = true;
+$insecure = false;
 // end
";

    /// A target tree with `includes/Foo.php` and the patch file beside it.
    fn tree(t: &TempDir) -> (PathBuf, PathBuf) {
        need("patch");
        let target = t.path().join("w");
        std::fs::create_dir_all(target.join("includes")).unwrap();
        std::fs::write(
            target.join("includes/Foo.php"),
            "<?php\n$insecure = true;\n// end\n",
        )
        .unwrap();
        let file = t.path().join("T1234.patch");
        std::fs::write(&file, PATCH).unwrap();
        (file, target)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_patch_applies_then_is_already_applied() {
        let t = TempDir::new("patch");
        let (file, target) = tree(&t);
        let foo = target.join("includes/Foo.php");
        assert_eq!(apply(&file, &target, None).await.unwrap(), Patched::Applied);
        let patched = "<?php\n$insecure = false;\n// end\n";
        assert_eq!(std::fs::read_to_string(&foo).unwrap(), patched);
        assert_eq!(
            apply(&file, &target, None).await.unwrap(),
            Patched::AlreadyApplied
        );
        assert_eq!(std::fs::read_to_string(&foo).unwrap(), patched);
        let names: Vec<_> = std::fs::read_dir(target.join("includes"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["Foo.php"], "no .orig or .rej left behind");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_patch_that_does_not_apply_is_an_error_naming_it() {
        let t = TempDir::new("patch-bad");
        let (file, target) = tree(&t);
        let foo = target.join("includes/Foo.php");
        std::fs::write(&foo, "<?php\n$insecure = 'maybe';\n// end\n").unwrap();
        let e = apply(&file, &target, None).await.unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StagingError::PatchDoesNotApply { .. }), "{msg}");
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("does not apply"), "{msg}");
        assert!(msg.contains("patch -p1 --forward --batch"), "{msg}");
        assert!(msg.contains("FAILED"), "{msg}");
        assert_eq!(
            std::fs::read_to_string(&foo).unwrap(),
            "<?php\n$insecure = 'maybe';\n// end\n"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_half_applied_patch_is_an_error_not_already_applied() {
        let t = TempDir::new("patch-half");
        let (file, target) = tree(&t);
        std::fs::write(target.join("includes/Bar.php"), "a\nb\nc\n").unwrap();
        let two = format!(
            "{PATCH}--- a/includes/Bar.php\n+++ b/includes/Bar.php\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n"
        );
        std::fs::write(&file, two).unwrap();
        // Foo.php already patched, Bar.php not.
        std::fs::write(
            target.join("includes/Foo.php"),
            "<?php\n$insecure = false;\n// end\n",
        )
        .unwrap();
        let e = apply(&file, &target, None).await.unwrap_err();
        assert!(matches!(e, StagingError::PatchDoesNotApply { .. }), "{e}");
        assert_eq!(
            std::fs::read_to_string(target.join("includes/Bar.php")).unwrap(),
            "a\nb\nc\n"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staging_patch_missing_file_or_target_is_named() {
        let t = TempDir::new("patch-missing");
        let (file, target) = tree(&t);
        let e = apply(&t.path().join("nope.patch"), &target, None)
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("nope.patch: no such patch file"),
            "{e}"
        );
        let e = apply(&file, &t.path().join("nodir"), None)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("nodir: no such patch target directory"),
            "{e}"
        );
        let e = apply(&target, &target, None).await.unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }

    #[test]
    fn staging_patch_argv_runs_as_the_user() {
        let cmds = apply_commands(
            Path::new("/p/T1.patch"),
            Path::new("/srv/w"),
            Some("www-data"),
        );
        let shown: Vec<String> = cmds.iter().map(|c| c.argv.join(" ")).collect();
        assert_eq!(
            shown,
            [
                "sudo -n -u www-data -- patch -p1 --forward --batch --no-backup-if-mismatch \
                 --dry-run -d /srv/w -i /p/T1.patch",
                "sudo -n -u www-data -- patch -p1 --forward --batch --no-backup-if-mismatch \
                 -d /srv/w -i /p/T1.patch",
                "sudo -n -u www-data -- patch -p1 -R --forward --batch --dry-run \
                 -d /srv/w -i /p/T1.patch",
            ]
        );
    }
}
