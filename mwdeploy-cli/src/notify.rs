//! Webhooks (Discord, Slack) as the engine's [`Notifier`].
//!
//! ```text
//!  Note::Started ──────────────> "deploy D started on N servers (names): message"
//!  Note::ServerFailed ──> batch (2 s, or until Finished) ──> one post naming them all
//!  Note::Finished ──> flush the batch, then "deploy D finished: counts; failed: names"
//! ```
//!
//! Posts go out with `curl -q --config -` run locally: the URL and the JSON body travel
//! in curl's config on its stdin, never in argv (so not in `ps`, nor in a logged
//! command line), and no temp file holds them. The body is put in a quoted config
//! value with `\` and `"` escaped; a JSON text from serde never holds a raw newline, so
//! it stays one config line. `data-raw` never reads a file, even for a leading `@`.
//!
//! Each post: `--max-time 10`, one retry (after a 429's `Retry-After`, capped at 30 s,
//! or 1 s after a network error or a 5xx). An error's text never holds the URL, its host
//! or its path: curl's own messages are scrubbed (`<webhook>`). The driver runs each
//! note as its own task with a deadline, so nothing here holds up the deploy.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mwdeploy_core::ports::{Note, Notifier};
use mwdeploy_core::{PortError, ServerId};
use mwdeploy_exec::{Cmd, CommandRunner, LocalRunner};
use tokio::sync::watch;

use crate::config::Webhooks as WebhookConfig;
use crate::render::{Clean, SummaryText};

/// How long server failures are collected into one post.
const BATCH_WINDOW: Duration = Duration::from_secs(2);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The pause before retrying after a network error or a 5xx.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Discord takes 2000 characters; leave room.
const MAX_TEXT: usize = 1900;
/// Server names listed in a post before "and N more".
const MAX_NAMES: usize = 20;
/// Characters of one failure's detail.
const MAX_DETAIL: usize = 200;

/// Which service a webhook posts to: decides the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Discord,
    Slack,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Discord => "discord",
            Service::Slack => "slack",
        }
    }
}

/// One webhook: its service and URL (never shown).
#[derive(Clone)]
pub(crate) struct Hook {
    service: Service,
    url: String,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hook({}, <redacted>)", self.service.name())
    }
}

impl Hook {
    pub(crate) fn new(service: Service, url: impl Into<String>) -> Self {
        Hook {
            service,
            url: url.into(),
        }
    }
}

/// The JSON body that posts `text` to `service`.
///
/// Discord: `content`, with `allowed_mentions.parse` empty so `@everyone` or a role
/// mention in a message pings nobody. Slack: `text`, with `&`, `<`, `>` escaped as Slack
/// asks, so `<!channel>` is shown, not acted on.
pub(crate) fn payload(service: Service, text: &str) -> String {
    let text = truncate(text, MAX_TEXT);
    let v = match service {
        Service::Discord => serde_json::json!({
            "content": text,
            "allowed_mentions": { "parse": [] },
        }),
        Service::Slack => {
            let escaped = text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            serde_json::json!({ "text": escaped })
        }
    };
    v.to_string()
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `text` with every occurrence of `url`, its authority, host and path replaced by
/// `<webhook>`: for error texts that may quote them (curl names the host it cannot
/// resolve or reach).
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut parts: Vec<String> = vec![url.to_string()];
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    parts.push(authority.to_string());
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    parts.push(hostport.to_string());
    let host = if let Some(end) = hostport.strip_prefix('[').and_then(|h| h.find(']')) {
        &hostport[..end + 2]
    } else {
        hostport.split(':').next().unwrap_or(hostport)
    };
    parts.push(host.to_string());
    parts.push(host.trim_matches(['[', ']']).to_string());
    // The path holds a Discord or Slack token: never shown either.
    if path.len() > 1 {
        parts.push(path.to_string());
        parts.push(path.trim_start_matches('/').to_string());
    }
    parts.retain(|p| !p.is_empty());
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    parts.dedup();
    let mut out = text.to_string();
    for p in &parts {
        out = replace_ignore_case(&out, p, "<webhook>");
    }
    out
}

/// Replaces `needle` in `hay`, ASCII case ignored.
fn replace_ignore_case(hay: &str, needle: &str, with: &str) -> String {
    let (lh, ln) = (hay.to_ascii_lowercase(), needle.to_ascii_lowercase());
    let mut out = String::with_capacity(hay.len());
    let mut last = 0;
    for (i, _) in lh.match_indices(&ln) {
        if i < last {
            continue;
        }
        out.push_str(&hay[last..i]);
        out.push_str(with);
        last = i + needle.len();
    }
    out.push_str(&hay[last..]);
    out
}

/// Sends one body to one URL; the error text may hold the URL (it is scrubbed after).
#[async_trait]
pub(crate) trait Post: Send + Sync {
    async fn post(&self, url: &str, body: &str) -> Result<(), String>;
}

/// Posts with curl, run locally through the core's runner.
#[derive(Debug, Default)]
pub(crate) struct Curl {
    runner: LocalRunner,
}

/// How one attempt went.
#[derive(Debug, PartialEq)]
enum Attempt {
    Sent,
    /// Worth a second try after this pause.
    Retry(Duration, String),
    Failed(String),
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
fn curl_config(url: &str, body: &str) -> String {
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
fn judge(code: Option<i32>, stdout: &str, stderr: &str) -> Attempt {
    if code != Some(0) {
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error text")
            .trim()
            .to_string();
        let why = match code {
            Some(c) => format!("curl exited with status {c}: {why}"),
            None => format!("curl was killed: {why}"),
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
            Attempt::Retry(wait, "HTTP 429 (rate limited)".to_string())
        }
        500..=599 => Attempt::Retry(RETRY_PAUSE, format!("HTTP {status}")),
        0 => Attempt::Failed("no HTTP status".to_string()),
        s => Attempt::Failed(format!("HTTP {s}")),
    }
}

impl Curl {
    async fn attempt(&self, url: &str, body: &str) -> Attempt {
        let cmd = Cmd::new(["curl", "-q", "--config", "-"]).stdin(curl_config(url, body));
        match self.runner.run(&cmd, &mut |_, _| {}).await {
            Ok(o) => judge(o.code, &o.stdout, &o.stderr),
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }
}

#[async_trait]
impl Post for Curl {
    async fn post(&self, url: &str, body: &str) -> Result<(), String> {
        match self.attempt(url, body).await {
            Attempt::Sent => Ok(()),
            Attempt::Failed(e) => Err(e),
            Attempt::Retry(wait, _) => {
                tokio::time::sleep(wait).await;
                match self.attempt(url, body).await {
                    Attempt::Sent => Ok(()),
                    Attempt::Failed(e) | Attempt::Retry(_, e) => Err(format!("{e} (retried)")),
                }
            }
        }
    }
}

/// Server failures waiting for their post.
#[derive(Debug, Default)]
struct Batch {
    pending: Vec<(ServerId, String)>,
    /// Every server that failed so far, for the final post.
    failed: Vec<ServerId>,
}

/// The webhooks of a deploy. See the [module docs](self).
pub(crate) struct Webhooks<P: Post = Curl> {
    hooks: Vec<Hook>,
    poster: P,
    deploy: String,
    servers: Vec<String>,
    message: Option<String>,
    window: Duration,
    batch: Mutex<Batch>,
    finished: watch::Sender<bool>,
    /// One post at a time, in the order notes asked: start before finish.
    sending: tokio::sync::Mutex<()>,
}

impl<P: Post> fmt::Debug for Webhooks<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("hooks", &self.hooks)
            .field("deploy", &self.deploy)
            .finish_non_exhaustive()
    }
}

/// The configured webhooks (empty or missing URLs are off).
pub(crate) fn hooks(config: &WebhookConfig) -> Vec<Hook> {
    let mut hooks = Vec::new();
    for (service, secret) in [
        (Service::Discord, &config.discord),
        (Service::Slack, &config.slack),
    ] {
        if let Some(s) = secret {
            if !s.expose().trim().is_empty() {
                hooks.push(Hook::new(service, s.expose().trim()));
            }
        }
    }
    hooks
}

impl<P: Post> Webhooks<P> {
    pub(crate) fn new(
        hooks: Vec<Hook>,
        poster: P,
        deploy: &str,
        servers: Vec<String>,
        message: Option<String>,
    ) -> Self {
        Webhooks {
            hooks,
            poster,
            deploy: deploy.to_string(),
            servers,
            message,
            window: BATCH_WINDOW,
            batch: Mutex::new(Batch::default()),
            finished: watch::channel(false).0,
            sending: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any webhook is on.
    pub(crate) fn is_on(&self) -> bool {
        !self.hooks.is_empty()
    }

    /// Posts `text` to every webhook; the errors, scrubbed, joined.
    async fn send(&self, text: &str) -> Result<(), PortError> {
        let _turn = self.sending.lock().await;
        let mut errors = Vec::new();
        for h in &self.hooks {
            if let Err(e) = self.poster.post(&h.url, &payload(h.service, text)).await {
                errors.push(format!(
                    "{} webhook: {}",
                    h.service.name(),
                    scrub(&e, &h.url)
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PortError::transient(errors.join("; ")))
        }
    }

    fn started_text(&self, servers: usize) -> String {
        let mut t = format!(
            "mwdeploy: deploy {} started on {}{}",
            self.deploy,
            crate::render::count(servers, "server"),
            names(self.servers.iter().map(String::as_str)),
        );
        if let Some(m) = &self.message {
            t.push_str(&format!(": {}", Clean(m)));
        }
        t
    }

    fn failures_text(&self, failures: &[(ServerId, String)]) -> String {
        let list: Vec<String> = failures
            .iter()
            .take(MAX_NAMES)
            .map(|(s, d)| match d.trim() {
                "" => s.to_string(),
                d => format!("{s} ({})", truncate(&Clean(d).to_string(), MAX_DETAIL)),
            })
            .collect();
        let mut t = format!(
            "mwdeploy: deploy {}: {} failed: {}",
            self.deploy,
            crate::render::count(failures.len(), "server"),
            list.join(", ")
        );
        if failures.len() > MAX_NAMES {
            t.push_str(&format!(" and {} more", failures.len() - MAX_NAMES));
        }
        t
    }

    /// Takes the failures not posted yet.
    fn take_pending(&self) -> Vec<(ServerId, String)> {
        self.batch
            .lock()
            .map(|mut b| std::mem::take(&mut b.pending))
            .unwrap_or_default()
    }

    async fn server_failed(&self, server: &ServerId, detail: &str) -> Result<(), PortError> {
        let leader = match self.batch.lock() {
            Ok(mut b) => {
                b.failed.push(server.clone());
                b.pending.push((server.clone(), detail.to_string()));
                b.pending.len() == 1
            }
            Err(_) => false,
        };
        if !leader {
            // Another note's task posts this one with its own.
            return Ok(());
        }
        let mut done = self.finished.subscribe();
        let _ = tokio::time::timeout(self.window, done.wait_for(|f| *f)).await;
        let failures = self.take_pending();
        if failures.is_empty() {
            // The final post took them.
            return Ok(());
        }
        self.send(&self.failures_text(&failures)).await
    }

    async fn finished(&self, summary: &mwdeploy_core::event::Summary) -> Result<(), PortError> {
        self.finished.send_replace(true);
        let failures = self.take_pending();
        let mut result = Ok(());
        if !failures.is_empty() {
            result = self.send(&self.failures_text(&failures)).await;
        }
        let failed: Vec<ServerId> = self
            .batch
            .lock()
            .map(|b| b.failed.clone())
            .unwrap_or_default();
        let mut t = format!(
            "mwdeploy: deploy {} finished: {}",
            self.deploy,
            SummaryText(summary)
        );
        if !failed.is_empty() {
            t.push_str(&format!(
                "; failed or rolled back{}",
                names(failed.iter().map(ServerId::as_str))
            ));
        }
        let last = self.send(&t).await;
        result.and(last)
    }
}

/// ` (mw1, mw2)`, at most [`MAX_NAMES`] of them, then `and N more`.
fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    if all.is_empty() {
        return String::new();
    }
    let mut t = format!(" ({}", all[..all.len().min(MAX_NAMES)].join(", "));
    if all.len() > MAX_NAMES {
        t.push_str(&format!(" and {} more", all.len() - MAX_NAMES));
    }
    t.push(')');
    t
}

#[async_trait]
impl<P: Post> Notifier for Webhooks<P> {
    async fn notify(&self, note: &Note) -> Result<(), PortError> {
        if self.hooks.is_empty() {
            return Ok(());
        }
        match note {
            Note::Started { servers, .. } => self.send(&self.started_text(*servers)).await,
            Note::ServerFailed { server, detail } => self.server_failed(server, detail).await,
            Note::Finished { summary, .. } => self.finished(summary).await,
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mwdeploy_core::event::Summary;
    use std::sync::Arc;

    #[test]
    fn discord_payload_pings_nobody_and_escapes_the_text() {
        let body = payload(Service::Discord, "deploy \"x\" @everyone \\ done\n");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["content"], "deploy \"x\" @everyone \\ done\n");
        assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
        assert!(body.contains(r#"\"x\""#), "{body}");
        assert!(!body.contains('\n'), "one line: {body}");
    }

    #[test]
    fn slack_payload_has_the_text_with_its_controls_escaped() {
        let body = payload(Service::Slack, "hotfix <!channel> & \"quotes\"");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["text"], "hotfix &lt;!channel&gt; &amp; \"quotes\"");
        assert!(v.get("content").is_none());
    }

    #[test]
    fn long_texts_are_cut_for_discord() {
        let body = payload(Service::Discord, &"é".repeat(5000));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["content"].as_str().unwrap().chars().count(), MAX_TEXT + 1);
    }

    #[test]
    fn scrub_removes_the_url_its_host_and_its_token() {
        let url = "https://Discord.example:8443/api/webhooks/123/s3cr3t-token";
        let err = "curl: (6) Could not resolve host: discord.example; \
                   tried https://Discord.example:8443/api/webhooks/123/s3cr3t-token \
                   and discord.example:8443 for /api/webhooks/123/s3cr3t-token";
        let s = scrub(err, url);
        assert!(!s.to_ascii_lowercase().contains("discord.example"), "{s}");
        assert!(!s.contains("s3cr3t"), "{s}");
        assert!(
            s.starts_with("curl: (6) Could not resolve host: <webhook>;"),
            "{s}"
        );
        assert_eq!(scrub("nothing here", url), "nothing here");
    }

    #[test]
    fn curl_config_quotes_the_body_and_url() {
        let body = payload(Service::Discord, "a \"b\" \\c");
        let c = curl_config("http://h/x\"y", &body);
        assert!(c.contains("url = \"http://h/x\\\"y\"\n"), "{c}");
        let line = c.lines().find(|l| l.starts_with("data-raw")).unwrap();
        // Undo curl's unquoting: the body comes back as it was.
        let quoted = line.trim_start_matches("data-raw = ");
        let inner = &quoted[1..quoted.len() - 1];
        let mut back = String::new();
        let mut chars = inner.chars();
        while let Some(ch) = chars.next() {
            if ch == '\\' {
                back.push(chars.next().unwrap());
            } else {
                back.push(ch);
            }
        }
        assert_eq!(back, body);
    }

    #[test]
    fn curl_output_is_judged_with_retry_after() {
        let h = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\n\r\n\n429\n";
        assert_eq!(
            judge(Some(0), h, ""),
            Attempt::Retry(Duration::from_secs(2), "HTTP 429 (rate limited)".into())
        );
        let long = "HTTP/1.1 429 X\r\nretry-after: 600\r\n\r\n\n429\n";
        assert!(matches!(judge(Some(0), long, ""), Attempt::Retry(d, _) if d == MAX_RETRY_AFTER));
        assert_eq!(
            judge(Some(0), "HTTP/1.1 204 No\r\n\r\n\n204\n", ""),
            Attempt::Sent
        );
        assert_eq!(
            judge(Some(0), "HTTP/1.1 404 No\r\n\r\n\n404\n", ""),
            Attempt::Failed("HTTP 404".into())
        );
        assert!(matches!(
            judge(Some(7), "", "curl: (7) Failed to connect\n"),
            Attempt::Retry(_, e) if e.contains("status 7")
        ));
    }

    type Posts = Arc<Mutex<Vec<(String, String)>>>;

    /// Records posts; fails every one with a text quoting the URL when told to.
    #[derive(Default)]
    struct Recorder {
        posts: Posts,
        fail: bool,
    }

    #[async_trait]
    impl Post for Recorder {
        async fn post(&self, url: &str, body: &str) -> Result<(), String> {
            self.posts
                .lock()
                .unwrap()
                .push((url.to_string(), body.to_string()));
            if self.fail {
                Err(format!("curl: (7) Failed to connect to {url}"))
            } else {
                Ok(())
            }
        }
    }

    fn hooks_with(rec: Recorder) -> (Arc<Webhooks<Recorder>>, Posts) {
        let posts = rec.posts.clone();
        let w = Webhooks::new(
            vec![Hook::new(Service::Discord, "http://hook.example/d/tok")],
            rec,
            "D1",
            vec!["mw1".into(), "mw2".into(), "mw3".into()],
            Some("hotfix T1".into()),
        );
        (Arc::new(w), posts)
    }

    fn texts(posts: &Mutex<Vec<(String, String)>>) -> Vec<String> {
        posts
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| {
                let v: serde_json::Value = serde_json::from_str(b).unwrap();
                v["content"].as_str().unwrap().to_string()
            })
            .collect()
    }

    fn failed(s: &str) -> Note {
        Note::ServerFailed {
            server: ServerId::new(s).unwrap(),
            detail: format!("canary failed on {s}"),
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn start_names_servers_and_message() {
        let (w, posts) = hooks_with(Recorder::default());
        w.notify(&Note::Started {
            deploy: "D1".into(),
            servers: 3,
        })
        .await
        .unwrap();
        assert_eq!(
            texts(&posts),
            ["mwdeploy: deploy D1 started on 3 servers (mw1, mw2, mw3): hotfix T1"]
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn failures_within_the_window_make_one_post() {
        let (w, posts) = hooks_with(Recorder::default());
        let start = tokio::time::Instant::now();
        let (a, b) = (w.clone(), w.clone());
        let first = tokio::spawn(async move { a.notify(&failed("mw1")).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let second = tokio::spawn(async move { b.notify(&failed("mw2")).await });
        second.await.unwrap().unwrap();
        assert!(texts(&posts).is_empty(), "nothing before the window ends");
        first.await.unwrap().unwrap();
        assert_eq!(start.elapsed(), BATCH_WINDOW);
        assert_eq!(
            texts(&posts),
            [
                "mwdeploy: deploy D1: 2 servers failed: mw1 (canary failed on mw1), \
              mw2 (canary failed on mw2)"
            ]
        );
        // A later failure starts a new batch.
        w.notify(&failed("mw3")).await.unwrap();
        assert_eq!(texts(&posts).len(), 2);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn finished_flushes_the_batch_before_its_own_post() {
        let (w, posts) = hooks_with(Recorder::default());
        let a = w.clone();
        let start = tokio::time::Instant::now();
        let first = tokio::spawn(async move { a.notify(&failed("mw2")).await });
        tokio::task::yield_now().await;
        let summary = Summary {
            succeeded: 2,
            rolled_back: 1,
            ..Summary::default()
        };
        w.notify(&Note::Finished {
            deploy: "D1".into(),
            summary,
        })
        .await
        .unwrap();
        first.await.unwrap().unwrap();
        assert!(start.elapsed() < BATCH_WINDOW, "no wait for the window");
        assert_eq!(
            texts(&posts),
            [
                "mwdeploy: deploy D1: 1 server failed: mw2 (canary failed on mw2)",
                "mwdeploy: deploy D1 finished: 2 succeeded, 0 warned, 0 failed, \
                 1 rolled back, 0 skipped; failed or rolled back (mw2)"
            ]
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_failed_post_is_an_error_without_the_url() {
        let (w, posts) = hooks_with(Recorder {
            fail: true,
            ..Recorder::default()
        });
        let e = w
            .notify(&Note::Started {
                deploy: "D1".into(),
                servers: 3,
            })
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(posts.lock().unwrap().len(), 1);
        assert!(
            e.contains("discord webhook: curl: (7) Failed to connect to <webhook>"),
            "{e}"
        );
        assert!(!e.contains("hook.example") && !e.contains("tok"), "{e}");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn no_webhook_posts_nothing() {
        let rec = Recorder::default();
        let posts = rec.posts.clone();
        let w = Webhooks::new(Vec::new(), rec, "D1", Vec::new(), None);
        assert!(!w.is_on());
        w.notify(&failed("mw1")).await.unwrap();
        assert!(posts.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn curl_s_own_error_text_is_scrubbed() {
        let url = "http://127.0.0.1:9/hook/S3CRET";
        let w = Webhooks::new(
            vec![Hook::new(Service::Slack, url)],
            Curl::default(),
            "D1",
            Vec::new(),
            None,
        );
        let e = w
            .notify(&Note::Started {
                deploy: "D1".into(),
                servers: 0,
            })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("slack webhook: curl exited with status 7"),
            "{e}"
        );
        assert!(e.contains("(retried)"), "{e}");
        assert!(!e.contains("127.0.0.1") && !e.contains("S3CRET"), "{e}");
    }
}
