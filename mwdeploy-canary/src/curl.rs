//! The page check: curl run on the target itself, so it tests the server, not the
//! balancer in front of it.

use std::time::Duration;

use mwdeploy_core::Health;
use mwdeploy_exec::{Cmd, CommandRunner};

use crate::error::ConfigError;

/// Marks the status line curl appends after the body.
const STATUS_MARK: &str = "\n@@mwdeploy-http-status@@";

/// Checks that a URL answers the expected status with the expected text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurlCheck {
    urls: Vec<String>,
    host: Option<String>,
    expect_status: u16,
    expect_body: Option<String>,
    timeout: Duration,
    follow_redirects: bool,
}

/// Checks a URL: `http://` or `https://`, no whitespace or control characters, so
/// nothing reaches curl as an option or splits an argument.
pub fn validate_url(url: &str) -> Result<(), ConfigError> {
    let scheme = url.starts_with("http://") || url.starts_with("https://");
    if !scheme {
        return Err(ConfigError::Url {
            url: url.to_string(),
            why: "must start with http:// or https://",
        });
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::Url {
            url: url.to_string(),
            why: "contains whitespace or a control character",
        });
    }
    Ok(())
}

/// Checks a Host header value: a host name or address with an optional port.
pub fn validate_host(host: &str) -> Result<(), ConfigError> {
    let ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Host(host.to_string()))
    }
}

impl CurlCheck {
    /// A check of `urls` (all must pass), expecting HTTP 200, with the old tool's 15 s
    /// timeout, no Host header, no body text, redirects not followed.
    pub fn new<I, S>(urls: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let urls: Vec<String> = urls.into_iter().map(Into::into).collect();
        if urls.is_empty() {
            return Err(ConfigError::NoUrl);
        }
        for u in &urls {
            validate_url(u)?;
        }
        Ok(CurlCheck {
            urls,
            host: None,
            expect_status: 200,
            expect_body: None,
            timeout: Duration::from_secs(15),
            follow_redirects: false,
        })
    }

    /// Sends `Host: <host>` (`canary_vhost`).
    pub fn host(mut self, host: impl Into<String>) -> Result<Self, ConfigError> {
        let host = host.into();
        validate_host(&host)?;
        self.host = Some(host);
        Ok(self)
    }

    /// Expects this status (default 200).
    pub fn expect_status(mut self, status: u16) -> Self {
        self.expect_status = status;
        self
    }

    /// Expects the body to contain `text`, ignoring case.
    pub fn expect_body(mut self, text: impl Into<String>) -> Self {
        self.expect_body = Some(text.into());
        self
    }

    /// Gives up on one URL after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Follows redirects (off by default: curl drops the Host header on a redirect to
    /// another host, so the check could pass for the wrong site).
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
    }

    /// The deadline of one URL.
    pub fn timeout_value(&self) -> Duration {
        self.timeout
    }

    /// The same check with other URLs (a server's own `canary_url`).
    pub fn with_urls(&self, urls: &[String]) -> Result<Self, ConfigError> {
        let mut c = CurlCheck::new(urls.iter().cloned())?;
        c.host.clone_from(&self.host);
        c.expect_status = self.expect_status;
        c.expect_body.clone_from(&self.expect_body);
        c.timeout = self.timeout;
        c.follow_redirects = self.follow_redirects;
        Ok(c)
    }

    /// The curl argv for one URL.
    pub fn argv(&self, url: &str) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "curl".into(),
            "--silent".into(),
            "--show-error".into(),
            "--max-time".into(),
            format!("{:.3}", self.timeout.as_secs_f64()),
            "--write-out".into(),
            format!("{STATUS_MARK}%{{http_code}}"),
        ];
        if self.follow_redirects {
            v.push("--location".into());
        }
        if let Some(h) = &self.host {
            v.push("--header".into());
            v.push(format!("Host: {h}"));
        }
        v.push("--".into());
        v.push(url.to_string());
        v
    }

    /// One attempt: every URL, in order; the first failure is the answer.
    pub async fn check(&self, runner: &dyn CommandRunner) -> Health {
        for url in &self.urls {
            let h = self.check_url(runner, url).await;
            if h != Health::Healthy {
                return h;
            }
        }
        Health::Healthy
    }

    async fn check_url(&self, runner: &dyn CommandRunner, url: &str) -> Health {
        let cmd = Cmd::new(self.argv(url));
        // curl's own --max-time governs; this only catches a runner (ssh) that hangs.
        let grace = self.timeout + Duration::from_secs(10);
        let out = match tokio::time::timeout(grace, runner.run(&cmd, &mut |_, _| {})).await {
            Err(_) => {
                return Health::unhealthy(format!("{url}: no answer within {}s", grace.as_secs()))
            }
            Ok(Err(e)) => return Health::unhealthy(format!("{url}: {e}")),
            Ok(Ok(out)) => out,
        };
        if !out.success() {
            // curl: (7) Failed to connect ... / (28) Operation timed out ... / (6) Could not resolve host
            return Health::unhealthy(format!("{url}: {}", out.last_words()));
        }
        let Some((body, status)) = out.stdout.rsplit_once(STATUS_MARK) else {
            return Health::unhealthy(format!("{url}: curl printed no status"));
        };
        let status: u16 = status.trim().parse().unwrap_or(0);
        if status != self.expect_status {
            return Health::Unhealthy {
                reason: format!("{url}: HTTP {status}, expected {}", self.expect_status),
                status: Some(status),
            };
        }
        if let Some(text) = &self.expect_body {
            if !body.to_lowercase().contains(&text.to_lowercase()) {
                return Health::Unhealthy {
                    reason: format!("{url}: HTTP {status}, but the body lacks {text:?}"),
                    status: Some(status),
                };
            }
        }
        Health::Healthy
    }
}
