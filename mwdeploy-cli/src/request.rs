//! A deploy as asked for: the flags checked, then joined with the config into one
//! validated [`DeployRequest`], before anything runs.
//!
//! ```text
//!  DeployArgs ──> DeployFlags::check (names, combinations; no config needed)
//!                      │
//!  Config::load ───────┴──> DeployRequest::new (servers in config order, policy with the
//!                             flags' overrides, stages computed) ──> runner | --dry-run
//! ```
//!
//! Every refusal here is a usage or config error (exit 2) and nothing has been touched.

use std::path::Path;

use mwdeploy_core::model::validate_name;

use crate::cli::DeployArgs;
use crate::config::{config_path, Config};
use crate::error::CliError;

pub(crate) use mwdeploy_mediawiki::{SyncScope, Versions, Work};

/// The longest name accepted.
const NAME_MAX: usize = 253;

/// How the deploy is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputMode {
    /// The dashboard (plain lines when there is no terminal).
    Dashboard,
    /// `--no-tui`: plain lines.
    Plain,
    /// `--json`: one JSON event per line; prompts answer abort.
    Json,
}

/// The deploy flags, checked without the config.
#[derive(Debug, Clone)]
pub(crate) struct DeployFlags {
    work: Work,
    versions: Versions,
    /// `None`: all servers.
    servers: Option<Vec<String>>,
    args: DeployArgs,
    message: Option<String>,
}

impl DeployFlags {
    /// Checks every name and combination the flags carry (exit 2 on a bad one).
    pub(crate) fn check(a: &DeployArgs) -> Result<DeployFlags, CliError> {
        let usage = |m: String| CliError::Usage(m);
        let names =
            |flag: &str, what: &'static str, list: &[String]| -> Result<Vec<String>, CliError> {
                let mut out: Vec<String> = Vec::with_capacity(list.len());
                for n in list {
                    validate_name(what, n, NAME_MAX).map_err(|e| usage(format!("{flag}: {e}")))?;
                    if !out.contains(n) {
                        out.push(n.clone());
                    }
                }
                Ok(out)
            };
        let extensions = names("--extension", "extension", &a.extension)?;
        let skins = names("--skin", "skin", &a.skin)?;
        let patches = names("--patch", "patch file", &a.patch)?;
        let patch_target = match &a.patch_target {
            Some(t) => Some(patch_target(t)?),
            None => None,
        };
        let versions = match &a.versions {
            None => Versions::All,
            Some(v) if v.len() == 1 && v[0] == "all" => Versions::All,
            Some(v) if v.iter().any(|x| x == "all") => {
                return Err(usage(
                    "--versions: \"all\" cannot be combined with version names".to_string(),
                ))
            }
            Some(v) => Versions::Only(names("--versions", "version", v)?),
        };
        let servers = server_names(a.servers.as_deref())?;
        let message =
            match &a.message {
                None => None,
                Some(m) if m.trim().is_empty() => {
                    return Err(usage("--message: the message is empty".to_string()))
                }
                Some(m) if m.chars().any(char::is_control) => return Err(usage(
                    "--message: the message may not hold control characters (newlines, escapes); \
                     write it on one line"
                        .to_string(),
                )),
                Some(m) => Some(m.trim().to_string()),
            };
        if a.json && a.on_failure == Some(crate::cli::OnFailureArg::Prompt) {
            return Err(usage(
                "--on-failure prompt cannot be combined with --json: under --json every prompt \
                 answers abort"
                    .to_string(),
            ));
        }
        Ok(DeployFlags {
            work: Work {
                core: a.core,
                mediawiki: a.mediawiki,
                extensions,
                skins,
                config: a.config,
                patches,
                patch_target,
                rsync: a.rsync,
                provision: a.provision,
                l10n: a.l10n,
            },
            versions,
            servers,
            args: a.clone(),
            message,
        })
    }
}

/// A patch target: names separated by `/`, relative to `versions/<v>/`.
fn patch_target(t: &str) -> Result<String, CliError> {
    if t.is_empty() || t.starts_with('/') || t.ends_with('/') || t.contains("//") {
        return Err(CliError::Usage(format!(
            "--patch-target: {t:?}: expected names separated by '/', relative to versions/<v>/ \
             (e.g. extensions/Echo)"
        )));
    }
    for part in t.split('/') {
        validate_name("patch target", part, NAME_MAX)
            .map_err(|e| CliError::Usage(format!("--patch-target: {e}")))?;
    }
    Ok(t.to_string())
}

/// A deploy as the command runs it: the library's checked request, and how it is shown.
#[derive(Debug, Clone)]
pub(crate) struct DeployRequest {
    /// The checked request.
    pub(crate) req: mwdeploy::DeployRequest,
    /// `--dry-run`.
    pub(crate) dry_run: bool,
    /// How the deploy is shown.
    pub(crate) output: OutputMode,
    /// `--exit-when-done`.
    pub(crate) exit_when_done: bool,
    /// Where the deploy's metrics go: `--metrics-file`, else the config's `metrics_file`.
    pub(crate) metrics_file: Option<std::path::PathBuf>,
}

impl std::ops::Deref for DeployRequest {
    type Target = mwdeploy::DeployRequest;

    fn deref(&self) -> &mwdeploy::DeployRequest {
        &self.req
    }
}

impl DeployRequest {
    /// Joins checked flags with the config: servers named and known, numbers in range,
    /// stages computable. `argv` is the command line as given, program name excluded.
    pub(crate) fn new(
        flags: DeployFlags,
        config: Config,
        argv: Vec<String>,
    ) -> Result<DeployRequest, CliError> {
        let a = &flags.args;
        let spec = mwdeploy::DeploySpec {
            work: flags.work,
            versions: flags.versions,
            servers: flags.servers,
            parallel: a.parallel,
            max_unavailable: a.max_unavailable,
            stages: a.stages.as_ref().map(|s| s.0.clone()),
            failure_budget: a.failure_budget,
            on_failure: a.on_failure.map(Into::into),
            unattended: a.json,
            rollout: a.rollout,
            force: a.force,
            no_log: a.no_log,
            message: flags.message,
            argv,
        };
        let metrics_file = a
            .metrics_file
            .clone()
            .or_else(|| config.metrics_file.clone());
        let req = mwdeploy::DeployRequest::new(config, spec).map_err(|e| CliError::Usage(e.0))?;
        let output = if a.json {
            OutputMode::Json
        } else if a.no_tui {
            OutputMode::Plain
        } else {
            OutputMode::Dashboard
        };
        Ok(DeployRequest {
            req,
            dry_run: a.dry_run,
            output,
            exit_when_done: a.exit_when_done,
            metrics_file,
        })
    }
}

/// `--servers`: indices into `config.servers`, in config order (`None`: every server).
pub(crate) fn select_servers(
    config: &Config,
    names: Option<&[String]>,
) -> Result<Vec<usize>, CliError> {
    mwdeploy::request::select_servers(config, names).map_err(|e| CliError::Usage(e.0))
}

/// `--servers LIST|all` checked as names: `None` for all.
pub(crate) fn server_names(list: Option<&[String]>) -> Result<Option<Vec<String>>, CliError> {
    mwdeploy::request::server_names(list).map_err(|e| CliError::Usage(e.0))
}

/// Reads and checks the config (`-C`, else `$MWDEPLOY_CONFIG`, else the default path):
/// its errors are printed on stderr and make a usage error (exit 2), its warnings are
/// printed and it goes on.
pub(crate) fn load_config(config_file: Option<&Path>) -> Result<Config, CliError> {
    let file = config_path(config_file);
    let config = match Config::load(&file) {
        Ok(c) => c,
        Err(e) => {
            for d in &e.diagnostics {
                eprintln!("{d}");
            }
            return Err(CliError::Usage(format!("{e}: nothing was run")));
        }
    };
    for w in config.warnings() {
        eprintln!("mwdeploy: warning: {w}");
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn work() -> Work {
        Work::default()
    }

    #[test]
    fn the_whole_tree_is_synced_for_core_rsync_and_provision() {
        let v = vec!["1.45".to_string()];
        for w in [
            Work {
                core: true,
                extensions: vec!["Echo".into()],
                ..work()
            },
            Work {
                rsync: true,
                ..work()
            },
            Work {
                provision: true,
                ..work()
            },
        ] {
            assert_eq!(w.sync_scope(&v), SyncScope::Whole, "{w:?}");
        }
        assert_eq!(work().sync_scope(&v), SyncScope::Whole);
    }

    #[test]
    fn targeted_pulls_sync_only_what_they_pulled() {
        let v = vec!["1.44".to_string(), "1.45".to_string()];
        let w = Work {
            config: true,
            extensions: vec!["Echo".into()],
            skins: vec!["Vector".into()],
            ..work()
        };
        assert_eq!(
            w.sync_scope(&v),
            SyncScope::Paths(
                [
                    "config",
                    "versions/1.44/extensions/Echo",
                    "versions/1.44/skins/Vector",
                    "versions/1.45/extensions/Echo",
                    "versions/1.45/skins/Vector",
                ]
                .iter()
                .map(PathBuf::from)
                .collect()
            )
        );
        let mw = Work {
            mediawiki: true,
            extensions: vec!["Echo".into()],
            ..work()
        };
        assert_eq!(
            mw.sync_scope(&v[1..]),
            SyncScope::Paths(vec![PathBuf::from("versions/1.45")])
        );
    }

    #[test]
    fn a_patch_syncs_its_target_unless_a_pulled_folder_holds_it() {
        let v = vec!["1.45".to_string()];
        let p = Work {
            patches: vec!["T1.patch".into()],
            patch_target: Some("extensions/Echo".into()),
            ..work()
        };
        assert_eq!(
            p.sync_scope(&v),
            SyncScope::Paths(vec![PathBuf::from("versions/1.45/extensions/Echo")])
        );
        let held = Work {
            extensions: vec!["Echo".into()],
            ..p.clone()
        };
        assert_eq!(
            held.sync_scope(&v),
            SyncScope::Paths(vec![PathBuf::from("versions/1.45/extensions/Echo")])
        );
        assert!(p.uses_versions());
        assert!(!Work { rsync: true, ..p }.uses_versions());
    }

    #[test]
    fn patch_targets_are_names_between_slashes() {
        assert_eq!(patch_target("extensions/Echo").unwrap(), "extensions/Echo");
        for bad in [
            "", "/etc", "a/", "a//b", "../x", "a/../b", "a/-rf", "a b", "a;b",
        ] {
            assert!(patch_target(bad).is_err(), "{bad:?} accepted");
        }
    }
}
