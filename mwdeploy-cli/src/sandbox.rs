//! `mwdeploy sandbox`: a small real fleet on 127.0.0.1 to deploy to, the first run on real
//! parts. testfleet starts the same programs as production (two HAProxies with their
//! admin sockets, nginx and php-fpm per server, one sshd per server, a git staging
//! checkout); the config for it is written, the commands to try are printed, and the
//! fleet runs until Ctrl-C (or SIGTERM), when every process stops and its folder goes.
//!
//! ```text
//!  testfleet::Fleet::start ──> <root>/sandbox.yaml (0600) ──> "run: mwdeploy -C ... --rsync --rollout"
//!  Ctrl-C / SIGTERM ──> the fleet torn down (processes stopped, folder removed)
//! ```

use std::io::Write;

use testfleet::{Fleet, Layout};

use crate::cli::SandboxArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;

/// What the sandbox needs on this machine, for the error when it cannot start.
const NEEDS: &str = "haproxy nginx php-fpm openssh-server openssh-client rsync curl git";

/// Starts the sandbox, prints how to use it, and waits for Ctrl-C; returns the exit code.
pub(crate) fn run<W: Write>(args: &SandboxArgs, out: &mut Output<W>) -> Result<i32, CliError> {
    let layout = Layout::from(args.layout);
    out.fmt(format_args!(
        "starting a sandbox fleet of {} servers and 2 proxies on 127.0.0.1...\n",
        args.servers
    ));
    out.flush();
    let fleet = Fleet::builder()
        .servers(args.servers)
        .proxies(2)
        .tree(200, 4)
        .layout(layout)
        .start();
    let fleet = match fleet {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mwdeploy: the sandbox could not start: {e} (it needs these Debian packages: {NEEDS})");
            return Ok(exit::FAILED);
        }
    };
    let config = fleet.root().join("sandbox.yaml");
    if let Err(e) = fleet.write_config(&config, layout) {
        eprintln!("mwdeploy: {}: {e}", config.display());
        return Ok(exit::FAILED);
    }
    let c = config.display();
    let staging = fleet.staging().path().display();
    out.fmt(format_args!(
        "sandbox ready in {} ({} layout)\n\
         \n\
         config: {c}\n\
         proxies: {}\n\
         \n\
         try, in another terminal:\n\
         \x20 mwdeploy -C {c} check-config\n\
         \x20 mwdeploy -C {c} --rsync --rollout --dry-run\n\
         \x20 echo hello > {staging}/hello.txt && mwdeploy -C {c} --rsync --rollout -m \"my first deploy\"\n\
         \x20 mwdeploy -C {c} status\n\
         \x20 mwdeploy -C {c} log --latest\n\
         \n\
         stop it with Ctrl-C here (or SIGTERM to pid {}): every process stops and {} is removed\n",
        fleet.root().display(),
        layout,
        fleet
            .proxies()
            .iter()
            .map(|p| format!("{} {}", p.name(), p.frontend_url()))
            .collect::<Vec<_>>()
            .join(", "),
        std::process::id(),
        fleet.root().display(),
    ));
    out.flush();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Output)?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(CliError::Output)?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map_err(CliError::Output)?,
            _ = term.recv() => {}
        }
        Ok::<(), CliError>(())
    })?;
    let root = fleet.root().to_path_buf();
    if let Err(e) = fleet.shutdown() {
        eprintln!("mwdeploy: stopping the sandbox: {e}");
        return Ok(exit::FAILED);
    }
    out.fmt(format_args!(
        "sandbox stopped, {} removed\n",
        root.display()
    ));
    Ok(exit::OK)
}
