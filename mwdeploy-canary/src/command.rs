//! The command check, for servers that serve no pages (job runners).

use std::time::Duration;

use mwdeploy_core::Health;
use mwdeploy_exec::{Cmd, CommandRunner};

use crate::error::ConfigError;

/// Runs an argv on the server: exit status 0 is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCheck {
    argv: Vec<String>,
    timeout: Duration,
    sudo: bool,
}

impl CommandCheck {
    /// A check running `argv`, given up after `timeout`.
    pub fn new(argv: Vec<String>, timeout: Duration) -> Result<Self, ConfigError> {
        if argv.is_empty() || argv[0].is_empty() {
            return Err(ConfigError::EmptyCommand);
        }
        Ok(CommandCheck {
            argv,
            timeout,
            sudo: false,
        })
    }

    /// Runs it through `sudo -n`.
    pub fn sudo(mut self, sudo: bool) -> Self {
        self.sudo = sudo;
        self
    }

    /// One attempt.
    pub async fn check(&self, runner: &dyn CommandRunner) -> Health {
        let cmd = Cmd::new(self.argv.clone()).sudo(self.sudo);
        match tokio::time::timeout(self.timeout, runner.run(&cmd, &mut |_, _| {})).await {
            Err(_) => Health::unhealthy(format!(
                "{cmd}: no answer within {}s",
                self.timeout.as_secs()
            )),
            Ok(Err(e)) => Health::unhealthy(e.to_string()),
            Ok(Ok(out)) if out.success() => Health::Healthy,
            Ok(Ok(out)) => Health::unhealthy(format!(
                "{cmd} exited with {}: {}",
                out.code
                    .map(|c| format!("status {c}"))
                    .unwrap_or_else(|| "a signal".into()),
                out.last_words()
            )),
        }
    }
}
