//! `mwdeploy ... --dry-run`: the checked request, printed; nothing is locked, fetched or
//! changed.
//!
//! It shows what staging gets (pulls, patches, l10n, the sync and its canary), the
//! servers with how each is reached and checked, the policy, the stages the engine
//! computes, the commands each step runs on the first server, and then the pool state
//! as the proxies report it (read only). With `--rollout`, an unreachable proxy, or
//! (without `--force`) a selected server that is not UP, makes the exit code 3: the
//! deploy would be refused.

use std::io::Write;
use std::time::Duration;

use mwdeploy_core::model::{CanaryTarget, HookPoint};
use mwdeploy_core::plan::{FailureBudget, OnFailure, Policy};
use mwdeploy_core::{PoolState, ReleaseId};
use mwdeploy_exec::{shell_join, Hosts};
use mwdeploy_rsync::{DeployInfo, RsyncTransfer};
use serde_json::{json, Value};

use crate::config::{Config, ServerConfig};
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::{count, Clean};
use crate::request::{DeployRequest, OutputMode, SyncScope, Versions};
use mwdeploy::ports::{canary_curl, haproxy, rsync_config};
use mwdeploy_mediawiki::git::{Git, PullSpec};
use mwdeploy_mediawiki::patch;

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
    let steps = servers
        .first()
        .map(|s| step_commands(req, s))
        .transpose()
        .map_err(CliError::Usage)?
        .unwrap_or_default();
    let pool = read_pool(req);
    if req.output == OutputMode::Json {
        json_plan(req, &servers, &stage_names, &steps, pool.as_ref(), out);
    } else {
        text_plan(req, &servers, &stage_names, &steps, out);
        if let Some(pool) = &pool {
            text_pool(pool, out);
        }
    }
    Ok(match pool {
        Some(p)
            if req.rollout
                && (!p.unreachable.is_empty() || (!req.force && !p.not_up.is_empty())) =>
        {
            exit::REFUSED
        }
        _ => exit::OK,
    })
}

/// The pool as the proxies report it, for the selected pooled servers.
#[derive(Debug)]
struct PoolRead {
    /// `(proxy, backend, server, HAProxy's status, sessions)`.
    rows: Vec<(String, String, String, String, u64)>,
    /// `(proxy, why)`.
    unreachable: Vec<(String, String)>,
    /// Selected pooled servers not UP somewhere: `server on proxy/backend: status`.
    not_up: Vec<String>,
}

/// Reads every proxy's view of the selected pooled servers (nothing is changed). `None`
/// when the config lists no proxy or no selected server is pooled.
fn read_pool(req: &DeployRequest) -> Option<PoolRead> {
    let c = &req.config;
    let names: Vec<(String, &str)> = req
        .selected_servers()
        .filter(|s| s.pooled)
        .map(|s| {
            let in_backend = s.haproxy_server.as_ref().unwrap_or(&s.name).to_string();
            (in_backend, s.name.as_str())
        })
        .collect();
    if c.proxies.is_empty() || names.is_empty() {
        return None;
    }
    let mut read = PoolRead {
        rows: Vec::new(),
        unreachable: Vec::new(),
        not_up: Vec::new(),
    };
    let status = Hosts::new(c.ssh_defaults())
        .map_err(|e| e.to_string())
        .and_then(|hosts| {
            let pool = haproxy(c, &hosts).map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            Ok(rt.block_on(async {
                let status = pool.status().await;
                hosts.close().await;
                status
            }))
        });
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            read.unreachable.push(("(all)".to_string(), e));
            return Some(read);
        }
    };
    for proxy in &status.proxies {
        if let Some(e) = &proxy.error {
            read.unreachable.push((proxy.proxy.clone(), e.to_string()));
            continue;
        }
        for backend in &proxy.backends {
            for (in_backend, name) in &names {
                match backend.servers.iter().find(|s| &s.server == in_backend) {
                    Some(s) => {
                        read.rows.push((
                            proxy.proxy.clone(),
                            backend.backend.clone(),
                            name.to_string(),
                            s.status.clone(),
                            s.sessions,
                        ));
                        if s.state != PoolState::Up {
                            read.not_up.push(format!(
                                "{name} on {}/{}: {}",
                                proxy.proxy, backend.backend, s.status
                            ));
                        }
                    }
                    None => {
                        read.rows.push((
                            proxy.proxy.clone(),
                            backend.backend.clone(),
                            name.to_string(),
                            "not in the backend".to_string(),
                            0,
                        ));
                        read.not_up.push(format!(
                            "{name} on {}/{}: not in the backend",
                            proxy.proxy, backend.backend
                        ));
                    }
                }
            }
        }
    }
    Some(read)
}

fn text_pool<W: Write>(p: &PoolRead, out: &mut Output<W>) {
    let mut s = String::from(
        "
pool state (read now):
",
    );
    for (proxy, backend, server, status, sessions) in &p.rows {
        s.push_str(&format!(
            "  {proxy} {backend}/{server}: {} ({})\n",
            Clean(status),
            count(*sessions as usize, "session")
        ));
    }
    for (_, why) in &p.unreachable {
        s.push_str(&format!(
            "  unreachable: {}; the deploy would be refused (exit 3)\n",
            Clean(why)
        ));
    }
    if !p.not_up.is_empty() {
        s.push_str(&format!(
            "  not UP: {}; without --force the deploy would be refused (exit 3)\n",
            p.not_up.join("; ")
        ));
    }
    out.bytes(s.as_bytes());
}

/// The commands each step runs on `server`, in order: `(step, command)`.
fn step_commands(req: &DeployRequest, srv: &ServerConfig) -> Result<Vec<(String, String)>, String> {
    let c = &req.config;
    let mut steps = Vec::new();
    let server = srv.to_server();
    let in_backend = srv.haproxy_server.as_ref().unwrap_or(&srv.name).to_string();
    let on_proxies = |what: &str| -> Vec<(String, String)> {
        let mut v = Vec::new();
        for p in &c.proxies {
            let via = if p.local {
                format!("socket {}", p.socket.display())
            } else {
                format!(
                    "ssh {}: socat stdio {}",
                    p.ssh_host.as_deref().unwrap_or(p.name.as_str()),
                    p.socket.display()
                )
            };
            for b in &c.haproxy_backends {
                v.push((
                    format!("{what} on {}", p.name),
                    format!(
                        "set server {b}/{in_backend} state {what_state} ({via})",
                        what_state = if what == "depool" {
                            "drain, then maint"
                        } else {
                            "ready"
                        }
                    ),
                ));
            }
        }
        v
    };
    let rollout = req.rollout && srv.pooled;
    let hosts = Hosts::new(c.ssh_defaults()).map_err(|e| format!("ssh: {e}"))?;
    let rsync = rsync_config(c, req.work.provision).map_err(|e| e.to_string())?;
    let transfer = RsyncTransfer::new(rsync, std::sync::Arc::new(hosts), DeployInfo::new("plan"))
        .map_err(|e| format!("rsync: {e}"))?;
    let release = ReleaseId::at(std::time::SystemTime::now(), "plan").expect("a valid suffix");
    let copy = shell_join(
        &transfer
            .copy_argv(&server, &release)
            .map_err(|e| format!("rsync: {e}"))?,
    );
    let hooks = |point: HookPoint, steps: &mut Vec<(String, String)>| {
        let own = srv.hooks.at(point);
        let list = if own.is_empty() {
            c.hooks.at(point)
        } else {
            own
        };
        for argv in list {
            steps.push((point.to_string(), argv_text(argv)));
        }
    };
    match c.layout {
        mwdeploy_core::Layout::Releases => {
            steps.push(("copy (pooled, beside the live tree)".to_string(), copy));
            if req.work.l10n {
                if let Some(cmd) = &c.l10n_command {
                    steps.push((
                        "post_copy (l10n, on the new release)".to_string(),
                        argv_text(&crate::prepare::l10n_argv(cmd, c.layout)),
                    ));
                }
            }
            hooks(HookPoint::PostCopy, &mut steps);
            if rollout {
                hooks(HookPoint::PreDepool, &mut steps);
                steps.extend(on_proxies("depool"));
            }
            steps.push((
                "activate".to_string(),
                format!(
                    "switch {} to the new release in {} (one `mv -T` of a symlink)",
                    srv.prod_path.display(),
                    srv.releases_dir.display()
                ),
            ));
        }
        mwdeploy_core::Layout::Inplace => {
            if rollout {
                hooks(HookPoint::PreDepool, &mut steps);
                steps.extend(on_proxies("depool"));
            }
            steps.push(("copy into the live tree".to_string(), copy));
            if req.work.l10n {
                if let Some(cmd) = &c.l10n_command {
                    steps.push(("l10n".to_string(), argv_text(cmd)));
                }
            }
        }
    }
    hooks(HookPoint::PostActivate, &mut steps);
    match &srv.canary {
        CanaryTarget::Command(argv) => steps.push(("canary".to_string(), argv_text(argv))),
        other => {
            let urls = match other {
                CanaryTarget::Urls(u) => u.clone(),
                _ => c.canary.urls.clone(),
            };
            let curl = canary_curl(c).map_err(|e| format!("canary: {e}"))?;
            for u in &urls {
                // curl's --write-out holds a newline: one line per step.
                let argv = shell_join(&curl.argv(u)).replace('\n', "\\n");
                steps.push(("canary".to_string(), argv));
            }
        }
    }
    if rollout {
        steps.extend(on_proxies("repool"));
        hooks(HookPoint::PostRepool, &mut steps);
    }
    Ok(steps)
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
    if w.rsync {
        steps.push("no git pulls (--rsync)".to_string());
    }
    // Without reading the checkouts (a dry run reads nothing): an extension that is a
    // submodule of its version is pulled through the version instead.
    let git = Git::new(c.git_user.clone());
    let versions = version_keys(&req.versions);
    if !w.rsync {
        for t in crate::prepare::pull_targets(&req.config.staging_path, &req.work, &versions) {
            let checkout = if t.rel.as_os_str().is_empty() {
                t.root.clone()
            } else {
                t.root.join(&t.rel)
            };
            let spec = PullSpec {
                checkout: checkout.clone(),
                submodule: None,
            };
            // The commands that change or show something; the `rev-parse` reads between
            // them are left out.
            let cmds: Vec<String> = git
                .pull_commands(&spec)
                .iter()
                .filter_map(|cmd| {
                    let at = cmd.argv.iter().position(|a| a == "git")?;
                    let rest = &cmd.argv[at + 3..];
                    (rest.first().map(String::as_str) != Some("rev-parse"))
                        .then(|| format!("git {}", shell_join(rest)))
                })
                .collect();
            let user = c
                .git_user
                .as_deref()
                .map_or(String::new(), |u| format!(", as {u}"));
            steps.push(format!(
                "{} (in {}{user}): {}",
                t.step,
                checkout.display(),
                cmds.join("; ")
            ));
        }
    }
    if let Some(t) = &w.patch_target {
        let dir = c.staging.prod_path.join(crate::prepare::PATCH_DIR);
        for p in &w.patches {
            for v in &versions {
                let into = c.staging_path.join("versions").join(v).join(t);
                let cmds: Vec<String> =
                    patch::apply_commands(&dir.join(p), &into, c.git_user.as_deref())
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                steps.push(format!(
                    "patch {p} ({v}): {} (then, if it does not apply: {})",
                    cmds[1], cmds[2]
                ));
            }
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
    steps: &[(String, String)],
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

    if let Some(first) = servers.first() {
        s.push_str(&format!(
            "\ncommands on {}{}:\n",
            first.name,
            if servers.len() > 1 {
                " (each server the same, with its own host, paths and hooks)"
            } else {
                ""
            }
        ));
        for (step, cmd) in steps {
            s.push_str(&format!("  {step}: {cmd}\n"));
        }
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
    steps: &[(String, String)],
    pool: Option<&PoolRead>,
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
        "commands": {
            "server": servers.first().map(|s| s.name.as_str()),
            "steps": steps.iter().map(|(step, cmd)| json!({"step": step, "command": cmd})).collect::<Vec<_>>(),
        },
        "pool": pool.map(|p| json!({
            "servers": p.rows.iter().map(|(proxy, backend, server, status, sessions)| json!({
                "proxy": proxy, "backend": backend, "server": server, "status": status, "sessions": sessions,
            })).collect::<Vec<_>>(),
            "unreachable": p.unreachable.iter().map(|(proxy, why)| json!({"proxy": proxy, "error": why})).collect::<Vec<_>>(),
            "not_up": p.not_up,
        })),
    });
    out.fmt(format_args!("{v}\n"));
}
