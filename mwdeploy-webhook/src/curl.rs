//! Posting with curl, run locally: the URL and body travel in curl's config on its
//! stdin, never in argv.

use std::time::Duration;

use async_trait::async_trait;
use mwdeploy_exec::{Cmd, CommandRunner, LocalRunner};

use crate::error::PostError;

/// The longest `Retry-After` honoured.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The pause before retrying after a network error or a 5xx.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Sends one body to one URL. The error's text may hold the URL: [`Webhooks`](crate::Webhooks)
/// scrubs it before anyone sees it. Implement it to post another way (or to test).
#[async_trait]
pub trait Post: Send + Sync {
    /// Posts `body` to `url`, retrying as it sees fit.
    async fn post(&self, url: &str, body: &str) -> Result<(), PostError>;
}

/// Posts with curl, run locally through the core's runner.
#[derive(Debug, Default)]
pub struct Curl {
    runner: LocalRunner,
}

/// How one attempt went.
#[derive(Debug, PartialEq)]
pub(crate) enum Attempt {
    Sent,
    /// Worth a second try after this pause.
    Retry(Duration, PostError),
    Failed(PostError),
}

/// A value for curl's config file, quoted: `\` and `"` escaped, so curl reads it back
/// as it is (curl turns `\t \n \r \v` into controls; a lone `\` is not left to it).
fn curl_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '\\' => q.push_str("\\\\"),
            '"' => q.push_str("\\\""),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The config curl reads on stdin for one post.
pub(crate) fn curl_config(url: &str, body: &str) -> String {
    format!(
        "url = {}\n\
         proto = \"=http,https\"\n\
         request = \"POST\"\n\
         header = \"Content-Type: application/json\"\n\
         data-raw = {}\n\
         max-time = 10\n\
         silent\n\
         show-error\n\
         output = \"/dev/null\"\n\
         dump-header = \"-\"\n\
         write-out = \"\\n%{{http_code}}\\n\"\n",
        curl_quote(url),
        curl_quote(body)
    )
}

/// Judges curl's output: the headers, then the status code on the last line.
pub(crate) fn judge(code: Option<i32>, stdout: &str, stderr: &str) -> Attempt {
    if code != Some(0) {
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error text")
            .trim()
            .to_string();
        let why = match code {
            Some(status) => PostError::Curl {
                status,
                detail: why,
            },
            None => PostError::Killed { detail: why },
        };
        return Attempt::Retry(RETRY_PAUSE, why);
    }
    let mut lines = stdout.lines().rev().filter(|l| !l.trim().is_empty());
    let status: u16 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    let retry_after = stdout.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().parse::<f64>().ok())
            .flatten()
    });
    match status {
        200..=299 => Attempt::Sent,
        429 => {
            let wait = retry_after
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map_or(RETRY_PAUSE, |s| {
                    Duration::from_secs_f64(s.min(MAX_RETRY_AFTER.as_secs_f64()))
                });
            Attempt::Retry(wait, PostError::RateLimited)
        }
        500..=599 => Attempt::Retry(RETRY_PAUSE, PostError::Http(status)),
        0 => Attempt::Failed(PostError::NoStatus),
        s => Attempt::Failed(PostError::Http(s)),
    }
}

impl Curl {
    async fn attempt(&self, url: &str, body: &str) -> Attempt {
        let cmd = Cmd::new(["curl", "-q", "--config", "-"]).stdin(curl_config(url, body));
        match self.runner.run(&cmd, &mut |_, _| {}).await {
            Ok(o) => judge(o.code, &o.stdout, &o.stderr),
            Err(e) => Attempt::Failed(PostError::Run(e.to_string())),
        }
    }
}

#[async_trait]
impl Post for Curl {
    async fn post(&self, url: &str, body: &str) -> Result<(), PostError> {
        match self.attempt(url, body).await {
            Attempt::Sent => Ok(()),
            Attempt::Failed(e) => Err(e),
            Attempt::Retry(wait, _) => {
                tokio::time::sleep(wait).await;
                match self.attempt(url, body).await {
                    Attempt::Sent => Ok(()),
                    Attempt::Failed(e) | Attempt::Retry(_, e) => {
                        Err(PostError::Retried(Box::new(e)))
                    }
                }
            }
        }
    }
}
