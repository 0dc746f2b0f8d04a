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

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use mwdeploy_core::model::validate_name;
use mwdeploy_core::plan::{DeployMeta, OnFailure, Policy, StageSize};
use mwdeploy_core::{Plan, PlanError, ReleaseId, Server};

use crate::cli::DeployArgs;
use crate::config::{config_path, Config, ServerConfig};
use crate::dry_run;
use crate::error::CliError;
use crate::output::Output;

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

/// A deploy, checked against the config: everything the runner needs, nothing run yet.
#[derive(Debug, Clone)]
pub(crate) struct DeployRequest {
    /// The config it was checked against.
    pub(crate) config: Config,
    /// What staging gets (pulls, patches, l10n) and what is synced.
    pub(crate) work: Work,
    /// The version directories pulls, patches and targeted syncs apply to.
    pub(crate) versions: Versions,
    /// The selected servers: indices into `config.servers`, in config order.
    pub(crate) selected: Vec<usize>,
    /// The config's rollout policy with the flags' overrides (`--parallel`,
    /// `--max-unavailable`, `--stages`, `--failure-budget`, `--on-failure`, `--force`;
    /// `--json` turns `prompt` into `abort`). Group stages that name no selected server
    /// are left out.
    pub(crate) policy: Policy,
    /// `--rollout`: depool and repool each pooled server. Without it no server leaves the
    /// pool.
    pub(crate) rollout: bool,
    /// `--force`.
    pub(crate) force: bool,
    /// `--dry-run`.
    pub(crate) dry_run: bool,
    /// `--no-log`: no webhooks, no log file (the journal is still written).
    pub(crate) no_log: bool,
    /// `-m`: why.
    pub(crate) message: Option<String>,
    /// How the deploy is shown.
    pub(crate) output: OutputMode,
    /// `--exit-when-done`.
    pub(crate) exit_when_done: bool,
    /// The arguments as given (for the journal's `deploy_started`).
    pub(crate) argv: Vec<String>,
}

impl DeployRequest {
    /// Joins checked flags with the config: servers named and known, numbers in range,
    /// stages computable. `argv` is the command line as given, program name excluded.
    pub(crate) fn new(
        flags: DeployFlags,
        config: Config,
        argv: Vec<String>,
    ) -> Result<DeployRequest, CliError> {
        let usage = |m: String| Err(CliError::Usage(m));
        let a = &flags.args;
        let file = config.file.display().to_string();

        let selected = select_servers(&config, flags.servers.as_deref())?;

        if flags.work.l10n && config.l10n_command.is_none() {
            return usage(format!(
                "--l10n: {file} sets l10n_command: null, so there is no command to rebuild the \
                 localisation cache"
            ));
        }

        let mut policy = config.policy();
        if let Some(n) = a.parallel {
            policy.parallel = n;
        }
        if let Some(n) = a.max_unavailable {
            policy.max_unavailable = n;
        }
        if let Some(s) = &a.stages {
            for st in &s.0 {
                if let StageSize::Group(g) = st {
                    if !config.servers.iter().any(|s| s.group.as_deref() == Some(g)) {
                        return usage(format!(
                            "--stages: group:{g}: no server of {file} is in group {g:?}"
                        ));
                    }
                }
            }
            policy.stages = s.0.clone();
        }
        if let Some(b) = a.failure_budget {
            policy.failure_budget = b;
        }
        match a.on_failure {
            Some(o) => policy.on_failure = o.into(),
            // Under --json nobody answers a prompt.
            None if a.json && policy.on_failure == OnFailure::Prompt => {
                policy.on_failure = OnFailure::Abort
            }
            None => {}
        }
        policy.force = a.force;

        // With stages by group, a selection leaves out the groups it has no server of.
        if policy
            .stages
            .iter()
            .all(|s| matches!(s, StageSize::Group(_)))
        {
            policy.stages.retain(|s| {
                let StageSize::Group(g) = s else { return true };
                selected
                    .iter()
                    .any(|&i| config.servers[i].group.as_deref() == Some(g.as_str()))
            });
        }

        if a.rollout {
            let pooled: Vec<&ServerConfig> = selected
                .iter()
                .map(|&i| &config.servers[i])
                .filter(|s| s.pooled)
                .collect();
            if let Some(first) = pooled.first() {
                if policy.max_unavailable == 0 {
                    let from = match (a.max_unavailable, config.rollout.max_unavailable_at) {
                        (Some(_), _) => "--max-unavailable 0".to_string(),
                        (None, Some(at)) => format!(
                            "rollout.max_unavailable: 0 at {file}:{}:{}",
                            at.line, at.column
                        ),
                        (None, None) => "rollout.max_unavailable: 0".to_string(),
                    };
                    return usage(format!(
                        "{from}, but --rollout must depool server {}: no server could ever leave \
                         the pool; use 1 or more",
                        first.name
                    ));
                }
                if config.proxies.is_empty() {
                    return usage(format!(
                        "--rollout: {file} lists no proxy_servers, so nothing could depool server {}",
                        first.name
                    ));
                }
            }
        }

        let output = if a.json {
            OutputMode::Json
        } else if a.no_tui {
            OutputMode::Plain
        } else {
            OutputMode::Dashboard
        };

        let request = DeployRequest {
            config,
            work: flags.work,
            versions: flags.versions,
            selected,
            policy,
            rollout: a.rollout,
            force: a.force,
            dry_run: a.dry_run,
            no_log: a.no_log,
            message: flags.message,
            output,
            exit_when_done: a.exit_when_done,
            argv,
        };
        // The engine's own checks (parallel, stages, groups, budget): refused here, with
        // nothing run, rather than by the runner.
        request
            .stages()
            .map_err(|e| CliError::Usage(format!("invalid rollout plan: {e}")))?;
        Ok(request)
    }

    /// The selected servers' config, in config order.
    pub(crate) fn selected_servers(&self) -> impl Iterator<Item = &ServerConfig> + Clone {
        self.selected.iter().map(|&i| &self.config.servers[i])
    }

    /// The selected servers as the engine sees them: without `--rollout` none is pooled
    /// (none is depooled, and none counts against `max_unavailable`).
    pub(crate) fn servers(&self) -> Vec<Server> {
        self.selected_servers()
            .map(|s| {
                let mut server = s.to_server();
                server.pooled = s.pooled && self.rollout;
                server
            })
            .collect()
    }

    /// The plan for the engine: these servers and policy, staging's canary first (not with
    /// `--provision`, which has no staging steps), the preflight UP check unless `--force`.
    pub(crate) fn plan(&self, deploy_id: &str, release: ReleaseId) -> Plan {
        let mut plan = Plan::new(deploy_id, release, self.config.layout, self.servers());
        plan.policy = self.policy.clone();
        plan.staging = (!self.work.provision).then(|| self.config.staging_server());
        plan.preflight = !self.force;
        // Read the pool again before each depool, against what the preflight counted
        // (with --force there is no preflight: push as the old tool did).
        plan.policy.reread_pool = plan.preflight;
        let mut meta = DeployMeta::default();
        meta.flags = self.argv.clone();
        meta.message = self.message.clone();
        meta.user = operator();
        plan.meta = meta;
        plan
    }

    /// The stages: indices into [`servers`](Self::servers), as the engine will run them.
    pub(crate) fn stages(&self) -> Result<Vec<Vec<u32>>, PlanError> {
        let release = ReleaseId::at(SystemTime::now(), "plan").expect("a valid suffix");
        self.plan("plan", release).stages()
    }
}

/// The top-level invocation: a deploy when a deploy flag is given, else a hint.
///
/// Checks the flags (names first, before the config is read), reads and checks the
/// config, prints its warnings on stderr, and builds the [`DeployRequest`]. With
/// `--dry-run` the request is printed; a real deploy is refused (exit 2) until the
/// runner is built.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &DeployArgs,
    argv: Vec<String>,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    if !args.starts_deploy() {
        let shaping = args.shaping_flags();
        if shaping.is_empty() {
            return crate::viewer::run(config_file, out);
        }
        return Err(CliError::Usage(format!(
            "{} alone do{} not start a deploy: say what to deploy with one of --core, \
             --mediawiki, --extension NAME, --skin NAME, --config, --patch P, --rsync or \
             --provision",
            shaping.join(" "),
            if shaping.len() == 1 { "es" } else { "" }
        )));
    }
    let flags = DeployFlags::check(args)?;
    let config = load_config(config_file)?;
    let request = DeployRequest::new(flags, config, argv)?;
    if request.dry_run {
        return dry_run::run(&request, out);
    }
    crate::deploy::run(&request, out)
}

/// `--servers`: indices into `config.servers`, in config order (`None`: every server). A
/// name that is not a server of the config is a usage error that lists them. The names
/// are already checked by [`server_names`].
pub(crate) fn select_servers(
    config: &Config,
    names: Option<&[String]>,
) -> Result<Vec<usize>, CliError> {
    let Some(names) = names else {
        return Ok((0..config.servers.len()).collect());
    };
    for n in names {
        if config.server(n).is_none() {
            let known: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
            let shown = if known.len() > 12 {
                format!("{}, ... ({} in all)", known[..12].join(", "), known.len())
            } else {
                known.join(", ")
            };
            return Err(CliError::Usage(format!(
                "--servers: {n:?} is not a server of {} (mw_servers: {shown})",
                config.file.display()
            )));
        }
    }
    Ok((0..config.servers.len())
        .filter(|&i| names.iter().any(|n| n == config.servers[i].name.as_str()))
        .collect())
}

/// `--servers LIST|all` checked as names: `None` for all.
pub(crate) fn server_names(list: Option<&[String]>) -> Result<Option<Vec<String>>, CliError> {
    let usage = |m: String| CliError::Usage(m);
    match list {
        None => Ok(None),
        Some(v) if v.len() == 1 && v[0] == "all" => Ok(None),
        Some(v) if v.iter().any(|x| x == "all") => Err(usage(
            "--servers: \"all\" cannot be combined with server names".to_string(),
        )),
        Some(v) => {
            let mut out: Vec<String> = Vec::with_capacity(v.len());
            for n in v {
                validate_name("server", n, NAME_MAX)
                    .map_err(|e| usage(format!("--servers: {e}")))?;
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
            Ok(Some(out))
        }
    }
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

/// Who runs the deploy: the user behind `sudo`, else the login name.
pub(crate) fn operator() -> Option<String> {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty() && validate_name("user", u, NAME_MAX).is_ok())
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
