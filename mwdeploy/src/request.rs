//! A deploy as asked for, checked against the config into one [`DeployRequest`] before
//! anything runs: servers named and known, numbers in range, stages computable.
//!
//! ```text
//!  DeploySpec (what to deploy, where, how: the command's flags, or a bot's request)
//!        │
//!  Config ┴──> DeployRequest::new (servers in config order, policy with the overrides,
//!                stages computed) ──> deploy::prepare / --dry-run
//! ```

use std::time::SystemTime;

use mwdeploy_core::model::validate_name;
use mwdeploy_core::plan::{DeployMeta, FailureBudget, OnFailure, Policy, StageSize};
use mwdeploy_core::{Plan, PlanError, ReleaseId, Server};
use mwdeploy_mediawiki::{Versions, Work};

use crate::config::{Config, ServerConfig};

/// The longest name accepted.
const NAME_MAX: usize = 253;

/// Why a deploy request was refused; the message names the option (`--servers: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

/// What a caller asks: what to deploy, to which servers, with which overrides of the
/// config's `rollout:` policy. The names in it are checked by [`DeployRequest::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploySpec {
    /// What staging gets (pulls, patches, l10n) and what is synced.
    pub work: Work,
    /// The version directories pulls, patches and targeted syncs apply to.
    pub versions: Versions,
    /// The servers (`None`: every server of the config).
    pub servers: Option<Vec<String>>,
    /// `--parallel`.
    pub parallel: Option<u32>,
    /// `--max-unavailable`.
    pub max_unavailable: Option<u32>,
    /// `--stages`.
    pub stages: Option<Vec<StageSize>>,
    /// `--failure-budget`.
    pub failure_budget: Option<FailureBudget>,
    /// `--on-failure`.
    pub on_failure: Option<OnFailure>,
    /// Nobody answers prompts (`--json`, a bot): `on_failure: prompt` becomes `abort`.
    pub unattended: bool,
    /// `--rollout`: depool and repool each pooled server. Without it no server leaves the
    /// pool.
    pub rollout: bool,
    /// `--force`.
    pub force: bool,
    /// `--no-log`: no webhooks, no log file (the journal is still written).
    pub no_log: bool,
    /// `-m`: why (one line).
    pub message: Option<String>,
    /// The request as given (the command's arguments), for the journal's `deploy_started`.
    pub argv: Vec<String>,
}

/// A deploy, checked against the config: everything the runner needs, nothing run yet.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The config it was checked against.
    pub config: Config,
    /// What staging gets (pulls, patches, l10n) and what is synced.
    pub work: Work,
    /// The version directories pulls, patches and targeted syncs apply to.
    pub versions: Versions,
    /// The selected servers: indices into `config.servers`, in config order.
    pub selected: Vec<usize>,
    /// The config's rollout policy with the flags' overrides (`--parallel`,
    /// `--max-unavailable`, `--stages`, `--failure-budget`, `--on-failure`, `--force`;
    /// `--json` turns `prompt` into `abort`). Group stages that name no selected server
    /// are left out.
    pub policy: Policy,
    /// `--rollout`: depool and repool each pooled server. Without it no server leaves the
    /// pool.
    pub rollout: bool,
    /// `--force`.
    pub force: bool,
    /// `--no-log`: no webhooks, no log file (the journal is still written).
    pub no_log: bool,
    /// `-m`: why.
    pub message: Option<String>,
    /// The arguments as given (for the journal's `deploy_started`).
    pub argv: Vec<String>,
}

impl DeployRequest {
    /// Joins checked flags with the config: servers named and known, numbers in range,
    /// stages computable. `argv` is the command line as given, program name excluded.
    pub fn new(config: Config, spec: DeploySpec) -> Result<DeployRequest, RequestError> {
        let usage = |m: String| Err(RequestError(m));
        let a = &spec;
        let file = config.file.display().to_string();

        let selected = select_servers(&config, spec.servers.as_deref())?;

        if spec.work.l10n && config.l10n_command.is_none() {
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
            for st in s {
                if let StageSize::Group(g) = st {
                    if !config.servers.iter().any(|s| s.group.as_deref() == Some(g)) {
                        return usage(format!(
                            "--stages: group:{g}: no server of {file} is in group {g:?}"
                        ));
                    }
                }
            }
            policy.stages = s.clone();
        }
        if let Some(b) = a.failure_budget {
            policy.failure_budget = b;
        }
        match a.on_failure {
            Some(o) => policy.on_failure = o,
            // Unattended, nobody answers a prompt.
            None if a.unattended && policy.on_failure == OnFailure::Prompt => {
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

        let request = DeployRequest {
            config,
            work: spec.work,
            versions: spec.versions,
            selected,
            policy,
            rollout: spec.rollout,
            force: spec.force,
            no_log: spec.no_log,
            message: spec.message,
            argv: spec.argv,
        };
        // The engine's own checks (parallel, stages, groups, budget): refused here, with
        // nothing run, rather than by the runner.
        request
            .stages()
            .map_err(|e| RequestError(format!("invalid rollout plan: {e}")))?;
        Ok(request)
    }

    /// The selected servers' config, in config order.
    pub fn selected_servers(&self) -> impl Iterator<Item = &ServerConfig> + Clone {
        self.selected.iter().map(|&i| &self.config.servers[i])
    }

    /// The selected servers as the engine sees them: without `--rollout` none is pooled
    /// (none is depooled, and none counts against `max_unavailable`).
    pub fn servers(&self) -> Vec<Server> {
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
    pub fn plan(&self, deploy_id: &str, release: ReleaseId) -> Plan {
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
    pub fn stages(&self) -> Result<Vec<Vec<u32>>, PlanError> {
        let release = ReleaseId::at(SystemTime::now(), "plan").expect("a valid suffix");
        self.plan("plan", release).stages()
    }
}

/// `--servers`: indices into `config.servers`, in config order (`None`: every server). A
/// name that is not a server of the config is a usage error that lists them. The names
/// are already checked by [`server_names`].
pub fn select_servers(
    config: &Config,
    names: Option<&[String]>,
) -> Result<Vec<usize>, RequestError> {
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
            return Err(RequestError(format!(
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
pub fn server_names(list: Option<&[String]>) -> Result<Option<Vec<String>>, RequestError> {
    let usage = RequestError;
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

/// Who runs the deploy: the user behind `sudo`, else the login name.
pub fn operator() -> Option<String> {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty() && validate_name("user", u, NAME_MAX).is_ok())
}
