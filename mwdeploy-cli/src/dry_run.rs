//! `mwdeploy ... --dry-run`: the checked request, printed; nothing is locked, fetched or
//! changed.
//!
//! For now it shows what staging gets (pulls, patches, l10n, the sync and its canary),
//! the servers with how each is reached and checked, the policy, and the stages the
//! engine computes. The pool state and each step's exact commands come with the runner.

use std::io::Write;
use std::time::Duration;

use mwdeploy_core::model::{CanaryTarget, HookPoint};
use mwdeploy_core::plan::{FailureBudget, OnFailure, Policy};
use serde_json::{json, Value};

use crate::config::{Config, ServerConfig};
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::{count, Clean};
use crate::request::{DeployRequest, OutputMode, SyncScope, Versions};

/// Prints `req` (plain text, or one JSON object under `--json`); returns the exit code.
pub(crate) fn run<W: Write>(req: &DeployRequest, out: &mut Output<W>) -> Result<i32, CliError> {
    let stages = req
        .stages()
        .map_err(|e| CliError::Usage(format!("invalid rollout plan: {e}")))?;
    let servers: Vec<&ServerConfig> = req.selected_servers().collect();
    let stage_names: Vec<Vec<&str>> = stages
        .iter()
        .map(|st| {
            st.iter()
                .map(|&i| servers[i as usize].name.as_str())
                .collect()
        })
        .collect();
    if req.output == OutputMode::Json {
        json_plan(req, &servers, &stage_names, out);
    } else {
        text_plan(req, &servers, &stage_names, out);
    }
    Ok(exit::OK)
}

/// `versions/<v>` words for the selected versions.
fn versions_text(v: &Versions) -> String {
    match v {
        Versions::All => "every version under versions/".to_string(),
        Versions::Only(list) => format!("version {}", list.join(", ")),
    }
}

/// The version names the sync scope is shown with (`<v>` for all of them).
fn version_keys(v: &Versions) -> Vec<String> {
    match v {
        Versions::All => vec!["<v>".to_string()],
        Versions::Only(list) => list.clone(),
    }
}

/// What staging gets, one step a line.
fn prep_steps(req: &DeployRequest) -> Vec<String> {
    let c = &req.config;
    let w = &req.work;
    let staging = c.staging_path.display();
    let mut steps = Vec::new();
    if w.provision {
        steps.push(format!(
            "no staging steps: --provision pushes {} as it is",
            c.staging.prod_path.display()
        ));
        return steps;
    }
    let git_user = c
        .git_user
        .as_deref()
        .map_or(String::new(), |u| format!(" (as {u})"));
    if w.rsync {
        steps.push("no git pulls (--rsync)".to_string());
    }
    if w.core {
        steps.push(format!("git pull {staging}{git_user}"));
    }
    if w.config {
        steps.push(format!("git pull {staging}/config{git_user}"));
    }
    if w.mediawiki {
        steps.push(format!(
            "git pull {staging}/versions/<v>{git_user}, for {}",
            versions_text(&req.versions)
        ));
    }
    for e in &w.extensions {
        steps.push(format!(
            "git pull {staging}/versions/<v>/extensions/{e}{git_user}, for {}",
            versions_text(&req.versions)
        ));
    }
    for s in &w.skins {
        steps.push(format!(
            "git pull {staging}/versions/<v>/skins/{s}{git_user}, for {}",
            versions_text(&req.versions)
        ));
    }
    if let Some(t) = &w.patch_target {
        for p in &w.patches {
            steps.push(format!(
                "patch {}/scripts/extensions/patches/{p} into {staging}/versions/<v>/{t}, for {}",
                c.staging.prod_path.display(),
                versions_text(&req.versions)
            ));
        }
    }
    steps.push(format!(
        "sync {staging} -> {}: {}",
        c.staging.prod_path.display(),
        scope_text(req)
    ));
    if w.l10n {
        if let Some(cmd) = &c.l10n_command {
            steps.push(format!("l10n: {}", argv_text(cmd)));
        }
    }
    for argv in c.staging.hooks.at(HookPoint::PostActivate) {
        steps.push(format!("post_activate: {}", argv_text(argv)));
    }
    steps.push(format!("canary: {}", urls_text(c, &c.staging.canary_urls)));
    steps
}

fn scope_text(req: &DeployRequest) -> String {
    match req.work.sync_scope(&version_keys(&req.versions)) {
        SyncScope::Whole => "the whole tree".to_string(),
        SyncScope::Paths(p) => p
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn argv_text(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-{}=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("{a:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn urls_text(c: &Config, urls: &[String]) -> String {
    let host = c
        .canary_vhost
        .as_deref()
        .map_or(String::new(), |h| format!(" (Host: {h})"));
    let body = c
        .canary
        .expect_body
        .as_deref()
        .map_or(String::new(), |b| format!(" and a body with {b:?}"));
    format!(
        "{}{host}, expecting HTTP {}{body}; {} {} apart, {} each",
        urls.join(" "),
        c.canary.expect_status,
        count(c.canary.attempts as usize, "attempt"),
        humantime::format_duration(c.canary.retry_pause),
        humantime::format_duration(c.canary.timeout),
    )
}

/// How a server is reached: `local`, or `user@host:port`.
fn reach(c: &Config, s: &ServerConfig) -> String {
    if s.local {
        return "local".to_string();
    }
    let d = c.ssh_defaults();
    let host = s.ssh_host.as_deref().unwrap_or(s.name.as_str());
    match s.ssh_port.or(d.port) {
        Some(p) => format!("ssh {}@{host}:{p}", d.user),
        None => format!("ssh {}@{host}", d.user),
    }
}

fn canary_text(c: &Config, s: &ServerConfig) -> String {
    match &s.canary {
        CanaryTarget::Command(argv) => format!("command {}", argv_text(argv)),
        CanaryTarget::Urls(urls) => urls.join(" "),
        _ => c.canary.urls.join(" "),
    }
}

fn budget_text(b: FailureBudget) -> String {
    match b {
        FailureBudget::Count(n) => n.to_string(),
        FailureBudget::Percent(p) => format!("{p}%"),
    }
}

fn on_failure_text(o: OnFailure) -> &'static str {
    match o {
        OnFailure::Prompt => "prompt",
        OnFailure::Abort => "abort",
        OnFailure::Continue => "continue",
    }
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn policy_text(p: &Policy) -> String {
    let stages: Vec<String> = p.stages.iter().map(ToString::to_string).collect();
    format!(
        "parallel {}, max_unavailable {}, stages [{}], bake {}, approve_stages {}, failure_budget {}, on_failure {}, force {}",
        p.parallel,
        p.max_unavailable,
        stages.join(", "),
        dur(p.bake),
        p.approve_stages,
        budget_text(p.failure_budget),
        on_failure_text(p.on_failure),
        p.force
    )
}

fn text_plan<W: Write>(
    req: &DeployRequest,
    servers: &[&ServerConfig],
    stages: &[Vec<&str>],
    out: &mut Output<W>,
) {
    let c = &req.config;
    let mut s = String::new();
    s.push_str("dry run: nothing is locked, fetched or changed\n");
    s.push_str(&format!(
        "config: {} (release_layout: {})\n",
        c.file.display(),
        c.layout
    ));
    if let Some(m) = &req.message {
        s.push_str(&format!("message: {}\n", Clean(m)));
    }
    s.push_str(match (req.output, req.exit_when_done) {
        (OutputMode::Dashboard, true) => "output: the dashboard, closed when the deploy ends\n",
        (OutputMode::Dashboard, false) => "output: the dashboard\n",
        _ => "output: plain lines\n",
    });
    s.push_str("\nstaging (this host):\n");
    for step in prep_steps(req) {
        s.push_str(&format!("  {step}\n"));
    }

    s.push_str(&format!(
        "\nservers: {} of {}, in config order\n",
        servers.len(),
        count(c.servers.len(), "server")
    ));
    if req.rollout {
        let proxies: Vec<&str> = c.proxies.iter().map(|p| p.name.as_str()).collect();
        s.push_str(&format!(
            "rollout: each pooled server is depooled from backend {} on {} ({}), updated, canaried and repooled\n",
            c.haproxy_backends.join(", "),
            count(proxies.len(), "proxy").replace("proxys", "proxies"),
            proxies.join(", ")
        ));
    } else {
        s.push_str(
            "rollout: none (no --rollout): servers stay in the pool while they are updated\n",
        );
    }
    for srv in servers {
        let mut notes = Vec::new();
        if !srv.pooled {
            notes.push("not pooled".to_string());
        }
        if let Some(g) = &srv.group {
            notes.push(format!("group {g}"));
        }
        for point in HookPoint::ALL {
            let n = srv.hooks.at(point).len();
            if n > 0 {
                notes.push(format!("{point} {}", count(n, "hook")));
            }
        }
        let tree = match c.layout {
            mwdeploy_core::Layout::Releases => format!(
                "{} (releases in {})",
                srv.prod_path.display(),
                srv.releases_dir.display()
            ),
            mwdeploy_core::Layout::Inplace => srv.prod_path.display().to_string(),
        };
        s.push_str(&format!(
            "  {}: {} -> {tree}; canary {}{}\n",
            srv.name,
            reach(c, srv),
            canary_text(c, srv),
            if notes.is_empty() {
                String::new()
            } else {
                format!("; {}", notes.join(", "))
            }
        ));
    }
    s.push_str(&format!("sync to each server: {}\n", scope_text(req)));
    if req.work.uses_versions() {
        s.push_str(&format!("versions: {}\n", versions_text(&req.versions)));
    }
    if req.work.l10n {
        s.push_str("l10n on each server after its sync\n");
    }

    s.push_str(&format!("\npolicy: {}\n", policy_text(&req.policy)));
    if req.policy.parallel > req.policy.max_unavailable && req.rollout {
        s.push_str(&format!(
            "  --parallel {} does not raise max_unavailable: at most {} out of the pool at once\n",
            req.policy.parallel, req.policy.max_unavailable
        ));
    }
    for (i, st) in stages.iter().enumerate() {
        s.push_str(&format!(
            "stage {} ({}): {}\n",
            i + 1,
            count(st.len(), "server"),
            st.join(", ")
        ));
    }
    let hooks: Vec<&str> = [
        c.webhooks.discord.as_ref().map(|_| "discord"),
        c.webhooks.slack.as_ref().map(|_| "slack"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if req.no_log {
        s.push_str(
            "\n--no-log: no webhooks and no log file for this run (the journal is still written)\n",
        );
    } else {
        s.push_str(&format!(
            "\nlog: {}; webhooks: {}\n",
            c.log_file.display(),
            if hooks.is_empty() {
                "none".to_string()
            } else {
                hooks.join(", ")
            }
        ));
    }
    out.bytes(s.as_bytes());
}

fn json_plan<W: Write>(
    req: &DeployRequest,
    servers: &[&ServerConfig],
    stages: &[Vec<&str>],
    out: &mut Output<W>,
) {
    let c = &req.config;
    let p = &req.policy;
    let versions = match &req.versions {
        Versions::All => json!("all"),
        Versions::Only(v) => json!(v),
    };
    let sync = match req.work.sync_scope(&version_keys(&req.versions)) {
        SyncScope::Whole => json!("whole"),
        SyncScope::Paths(paths) => json!(paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()),
    };
    let server_list: Vec<Value> = servers
        .iter()
        .map(|s| {
            json!({
                "server": s.name.as_str(),
                "reach": reach(c, s),
                "prod_path": s.prod_path.display().to_string(),
                "pooled": s.pooled,
                "group": s.group,
                "canary": canary_text(c, s),
            })
        })
        .collect();
    let v = json!({
        "event": "dry_run",
        "ts": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "config": c.file.display().to_string(),
        "layout": c.layout.to_string(),
        "message": req.message,
        "staging": prep_steps(req),
        "versions": versions,
        "sync": sync,
        "servers": server_list,
        "rollout": req.rollout,
        "force": req.force,
        "no_log": req.no_log,
        "policy": {
            "parallel": p.parallel,
            "max_unavailable": p.max_unavailable,
            "stages": p.stages.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "bake_s": p.bake.as_secs_f64(),
            "approve_stages": p.approve_stages,
            "failure_budget": budget_text(p.failure_budget),
            "on_failure": on_failure_text(p.on_failure),
        },
        "stages": stages,
    });
    out.fmt(format_args!("{v}\n"));
}
