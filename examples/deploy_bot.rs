//! A deploy bot: what a chatops bot does with the `mwdeploy` crate. It takes a request
//! ("deploy mw1,mw2: reason"), runs a real deploy (journaled, locked, recoverable, with
//! the config's webhooks), answers the engine's prompts with a policy of its own, and
//! reports events in its own words, as a chat channel would get them.
//!
//! ```sh
//! cargo run -p mwdeploy-examples --example deploy_bot -- /etc/mwdeploy/config.yaml "deploy all: T123 hotfix"
//! ```
//!
//! It never prints from the library: everything shown here is the bot's choice.
//! `examples/tests/deploy_bot.rs` runs it against the loopback test fleet in CI.

use std::path::Path;
use std::process::ExitCode;

use mwdeploy::config::Config;
use mwdeploy::session::{Controls, Observer, Prompt, Prompter};
use mwdeploy::{DeployError, DeploySpec};
use mwdeploy_core::event::Record;
use mwdeploy_core::{Event, ServerStatus, Verdict};
use mwdeploy_mediawiki::Work;

/// A request as a chat message gives it: `deploy <servers|all>[: reason]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// `None`: every server.
    pub(crate) servers: Option<Vec<String>>,
    /// Why.
    pub(crate) reason: Option<String>,
}

impl Request {
    /// Reads `deploy mw1,mw2: reason`; `None` if the message is not a deploy request.
    pub(crate) fn parse(message: &str) -> Option<Request> {
        let rest = message.trim().strip_prefix("deploy ")?;
        let (who, reason) = match rest.split_once(':') {
            Some((w, r)) => (
                w.trim(),
                Some(r.trim().to_string()).filter(|r| !r.is_empty()),
            ),
            None => (rest.trim(), None),
        };
        let servers = match who {
            "all" | "" => None,
            list => Some(list.split(',').map(|s| s.trim().to_string()).collect()),
        };
        Some(Request { servers, reason })
    }
}

/// What the bot says in the channel.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// Every line posted, in order.
    pub(crate) lines: Vec<String>,
}

impl Channel {
    fn post(&mut self, line: String) {
        println!("[#deploys] {line}");
        self.lines.push(line);
    }
}

/// The bot's view of the event stream: the lines worth a chat message.
impl Observer for Channel {
    fn record(&mut self, record: &Record) {
        match &record.event {
            Event::DeployStarted { servers, .. } => self.post(format!(
                "{} started on {} servers",
                record.deploy,
                servers.len()
            )),
            Event::ServerState {
                server,
                state,
                detail,
            } => match state {
                ServerStatus::Done => self.post(format!("{server} ✓")),
                ServerStatus::Failed | ServerStatus::RolledBack => self.post(format!(
                    "{server} ✗ {}: {}",
                    state.as_str(),
                    detail.as_deref().unwrap_or("")
                )),
                _ => {}
            },
            Event::DeployFinished {
                summary, verdict, ..
            } => self.post(format!(
                "finished ({verdict:?}): {} succeeded, {} failed, {} rolled back",
                summary.succeeded, summary.failed, summary.rolled_back
            )),
            _ => {}
        }
    }
}

/// The bot's prompt policy: nobody is at a terminal, so "go on after a failure?" is
/// answered no, and the channel is told why.
#[derive(Debug, Default)]
pub(crate) struct SafeBot {
    /// The questions it was asked.
    pub(crate) asked: Vec<String>,
}

impl Prompter for SafeBot {
    fn ask(&mut self, prompt: Prompt) {
        self.asked.push(prompt.question.clone());
        prompt.reply.answer(false);
    }
}

/// Runs the deploy `message` asks for on the fleet of `config`: the report's verdict, or
/// why it was refused before production.
pub(crate) async fn handle(
    config: &Path,
    message: &str,
    channel: &mut Channel,
    prompter: &mut SafeBot,
) -> Result<Verdict, String> {
    let request = Request::parse(message).ok_or("not a deploy request")?;
    let config = Config::load(config).map_err(|e| {
        let lines: Vec<String> = e.diagnostics.iter().map(ToString::to_string).collect();
        format!("{e}:\n{}", lines.join("\n"))
    })?;
    let spec = DeploySpec {
        // The whole staging tree, copied as it is (the old tool's --rsync).
        work: Work {
            rsync: true,
            ..Work::default()
        },
        servers: request.servers,
        rollout: true,
        unattended: true,
        message: request.reason,
        argv: vec!["deploy-bot".into(), message.into()],
        ..DeploySpec::default()
    };
    let request = mwdeploy::DeployRequest::new(config, spec).map_err(|e| e.to_string())?;
    let controls = Controls::new();
    let warn = std::sync::Arc::new(|line: &str| eprintln!("deploy-bot: {line}"));
    match mwdeploy::deploy(&request, &controls, channel, prompter, warn).await {
        Ok(report) => {
            for (server, why) in &report.left_out {
                channel.post(format!("{server} is out of the pool: {why}"));
            }
            Ok(report.verdict)
        }
        Err(DeployError::Lock(e)) => Err(match e.holder() {
            Some(h) => format!("busy: {} is deploying ({})", h.user, h.message),
            None => e.to_string(),
        }),
        Err(e) => Err(format!("refused: {e}")),
    }
}

#[allow(dead_code)] // the test compiles this file as a module, without its main
fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(message)) = (args.next(), args.next()) else {
        eprintln!("usage: deploy_bot CONFIG 'deploy <servers|all>[: reason]'");
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let (mut channel, mut prompter) = (Channel::default(), SafeBot::default());
    match runtime.block_on(handle(
        Path::new(&config),
        &message,
        &mut channel,
        &mut prompter,
    )) {
        Ok(Verdict::Done) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            channel.post(e);
            ExitCode::from(3)
        }
    }
}
