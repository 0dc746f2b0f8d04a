//! `mwdeploy pool depool SERVER` / `pool repool SERVER`: manual pool control on every
//! proxy and backend, confirmed, under the deploy lock, journaled like a deploy (so
//! `mwdeploy log` shows it and `mwdeploy recover` never undoes it).
//!
//! ```text
//!  lock ──> journal: deploy_started, [canary attempts], pool intent, pool result,
//!           deploy_finished
//!  depool: drain, sessions end, maintenance, on every proxy (HAProxy adapter)
//!  repool: the server's canary first (--force skips it), then ready, confirmed serving
//! ```

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use mwdeploy_core::event::{PoolAction, PoolPhase, Record};
use mwdeploy_core::exec::Hosts;
use mwdeploy_core::journal::Journal;
use mwdeploy_core::model::validate_name;
use mwdeploy_core::ports::{HealthCheck, PoolControl, Progress};
use mwdeploy_core::{Event, Health, Plan, ServerStatus, Summary};

use crate::adapters::{canary, reachable_haproxy};
use crate::cli::{PoolArgs, PoolCommand};
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::request::{load_config, operator};
use crate::session::{new_id, take_lock};

/// Runs `mwdeploy pool ...`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &PoolArgs,
    argv: Vec<String>,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    let (name, depool, force) = match &args.command {
        PoolCommand::Depool { server } => (server, true, false),
        PoolCommand::Repool { server, force } => (server, false, *force),
    };
    validate_name("server", name, 253).map_err(|e| CliError::Usage(e.to_string()))?;
    let config = load_config(config_file)?;
    let Some(sc) = config.server(name) else {
        return Err(CliError::Usage(format!(
            "{name:?} is not a server of {} (mw_servers)",
            config.file.display()
        )));
    };
    if !sc.pooled {
        return Err(CliError::Usage(format!(
            "server {name} is not behind the proxies (pooled: false in {})",
            config.file.display()
        )));
    }
    if config.proxies.is_empty() {
        return Err(CliError::Usage(format!(
            "{} lists no proxy_servers",
            config.file.display()
        )));
    }
    let what = if depool { "depool" } else { "repool" };
    let _lock = match take_lock(&config.state_dir, &format!("pool {what} {name}")) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let server = sc.to_server();
    let id = new_id("pool");
    crate::ops::runtime()?.block_on(async {
        let hosts = match Hosts::new(config.ssh_defaults()) {
            Ok(h) => Arc::new(h),
            Err(e) => {
                eprintln!("mwdeploy: refused: cannot prepare ssh: {e}");
                return Ok(exit::REFUSED);
            }
        };
        let pool = match reachable_haproxy(&config, &hosts).await {
            Ok(p) => p,
            Err(_) => {
                hosts.close().await;
                eprintln!("mwdeploy: refused: a proxy is unreachable; nothing was changed");
                return Ok(exit::REFUSED);
            }
        };
        let mut journal = Journal::create(&config.state_dir, id.as_str())
            .map_err(|e| CliError::Usage(format!("cannot open the journal: {e}")))?;
        let started = SystemTime::now();
        let mut record = |event: Event| {
            let r = Record {
                ts: SystemTime::now(),
                deploy: id.as_str().to_string(),
                event,
            };
            if let Err(e) = journal.append(&r) {
                eprintln!("mwdeploy: journal: {e}");
            }
        };
        let mut plan = Plan::new(id.as_str(), id.clone(), config.layout, vec![server.clone()]);
        plan.meta.flags = argv;
        plan.meta.user = operator();
        record(Event::started(&plan));
        let progress = Progress::discard(server.id.clone());

        let mut ok = true;
        if !depool && !force {
            let canary = canary(&config, hosts.clone()).map_err(CliError::Usage)?;
            ok = false;
            for attempt in 1..=config.canary.attempts.max(1) {
                let health = canary.check(&server, &progress).await;
                let (passed, status, detail) = match &health {
                    Health::Healthy => (true, None, "ok".to_string()),
                    Health::Unhealthy { reason, status } => (false, *status, reason.clone()),
                    Health::Unknown { reason } => (false, None, reason.clone()),
                    other => (false, None, format!("{other:?}")),
                };
                record(Event::Canary {
                    server: server.id.clone(),
                    attempt,
                    ok: passed,
                    status,
                    detail: detail.clone(),
                });
                out.fmt(format_args!(
                    "{name}: canary attempt {attempt}: {}\n",
                    if passed {
                        "ok".to_string()
                    } else {
                        crate::render::Clean(&detail).to_string()
                    }
                ));
                out.flush();
                if passed {
                    ok = true;
                    break;
                }
                if attempt < config.canary.attempts {
                    tokio::time::sleep(config.canary.retry_pause).await;
                }
            }
            if !ok {
                eprintln!(
                    "mwdeploy: {name} failed its canary: not repooled, it stays out of the pool \
                     (--force repools it without the canary)"
                );
            }
        }
        let action = if depool {
            PoolAction::Depool
        } else {
            PoolAction::Repool
        };
        let mut error = None;
        if ok {
            record(Event::Pool {
                server: server.id.clone(),
                proxy: None,
                backend: None,
                action,
                phase: PoolPhase::Intent,
                ok: None,
                detail: None,
            });
            let result = if depool {
                pool.depool(&server, &progress).await
            } else {
                pool.repool(&server, &progress).await
            };
            error = result.err().map(|e| e.to_string());
            record(Event::Pool {
                server: server.id.clone(),
                proxy: None,
                backend: None,
                action,
                phase: PoolPhase::Result,
                ok: Some(error.is_none()),
                detail: error.clone(),
            });
        }
        let done = ok && error.is_none();
        let mut summary = Summary::default();
        summary.count(if done {
            ServerStatus::Done
        } else {
            ServerStatus::Failed
        });
        let code = if done { exit::OK } else { exit::FAILED };
        record(Event::DeployFinished {
            summary,
            duration_s: started.elapsed().map_or(0.0, |d| d.as_secs_f64()),
            exit_code: code,
        });
        hosts.close().await;
        let proxies: Vec<&str> = config.proxies.iter().map(|p| p.name.as_str()).collect();
        match (done, error) {
            (true, _) => out.fmt(format_args!(
                "{name}: {} on {} (backend {}), confirmed\n",
                if depool { "depooled" } else { "repooled" },
                proxies.join(", "),
                config.haproxy_backends.join(", ")
            )),
            (false, Some(e)) => eprintln!("mwdeploy: {name}: {what} failed: {e}"),
            (false, None) => {}
        }
        Ok(code)
    })
}
