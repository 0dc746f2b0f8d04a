//! mwdeploy-webhook: Discord and Slack webhooks as the engine's [`Notifier`], never
//! blocking a deploy.
//!
//! It sits beside the other adapters (`mwdeploy-haproxy`, `mwdeploy-rsync`,
//! `mwdeploy-canary`): `mwdeploy` builds one from `config.yaml`'s `webhooks:`; an
//! embedder builds its own.
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

//!
//! # Example
//!
//! ```no_run
//! use mwdeploy_webhook::{Curl, Hook, Service, Webhooks};
//! let hooks = vec![Hook::new(Service::Slack, "https://hooks.slack.com/services/T0/B0/XXXX")];
//! let notifier = Webhooks::new(hooks, Curl::default(), "20261207T101500Z-ab12", vec!["mw1".into()], None);
//! assert!(notifier.is_on());
//! // Give it to the driver as `Ports::notifier` (an `Arc<dyn Notifier>`).
//! ```
#![warn(missing_docs)]

mod body;
mod curl;
mod error;

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mwdeploy_core::ports::{Note, Notifier};
use mwdeploy_core::text::{count, Clean, SummaryText};
use mwdeploy_core::{PortError, ServerId};
use tokio::sync::watch;

pub use body::{payload, scrub, Hook, Service};
pub use curl::{Curl, Post};
pub use error::PostError;

use body::truncate;

/// How long server failures are collected into one post.
const BATCH_WINDOW: Duration = Duration::from_secs(2);
/// Discord takes 2000 characters; leave room.
const MAX_TEXT: usize = 1900;
/// Server names listed in a post before "and N more".
const MAX_NAMES: usize = 20;
/// Characters of one failure's detail.
const MAX_DETAIL: usize = 200;

/// The configured webhooks: one per URL given (empty or blank URLs are off).
pub fn hooks(discord: Option<&str>, slack: Option<&str>) -> Vec<Hook> {
    [(Service::Discord, discord), (Service::Slack, slack)]
        .into_iter()
        .filter_map(|(service, url)| {
            let url = url?.trim();
            (!url.is_empty()).then(|| Hook::new(service, url))
        })
        .collect()
}

/// Server failures waiting for their post.
#[derive(Debug, Default)]
struct Batch {
    pending: Vec<(ServerId, String)>,
    /// Every server that failed so far, for the final post.
    failed: Vec<ServerId>,
}

/// The webhooks of a deploy. See the [crate docs](crate).
pub struct Webhooks<P: Post = Curl> {
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

impl<P: Post> Webhooks<P> {
    /// The webhooks `hooks` of deploy `deploy` to `servers`, posting with `poster`.
    pub fn new(
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
    pub fn is_on(&self) -> bool {
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
                    scrub(&e.to_string(), &h.url)
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
            count(servers, "server"),
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
            count(failures.len(), "server"),
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
    use super::curl::{curl_config, judge, Attempt, MAX_RETRY_AFTER};
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
            Attempt::Retry(Duration::from_secs(2), PostError::RateLimited)
        );
        let long = "HTTP/1.1 429 X\r\nretry-after: 600\r\n\r\n\n429\n";
        assert!(matches!(judge(Some(0), long, ""), Attempt::Retry(d, _) if d == MAX_RETRY_AFTER));
        assert_eq!(
            judge(Some(0), "HTTP/1.1 204 No\r\n\r\n\n204\n", ""),
            Attempt::Sent
        );
        assert_eq!(
            judge(Some(0), "HTTP/1.1 404 No\r\n\r\n\n404\n", ""),
            Attempt::Failed(PostError::Http(404))
        );
        assert!(matches!(
            judge(Some(7), "", "curl: (7) Failed to connect\n"),
            Attempt::Retry(_, PostError::Curl { status: 7, .. })
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
        async fn post(&self, url: &str, body: &str) -> Result<(), PostError> {
            self.posts
                .lock()
                .unwrap()
                .push((url.to_string(), body.to_string()));
            if self.fail {
                Err(PostError::Run(format!(
                    "curl: (7) Failed to connect to {url}"
                )))
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
