//! A tiny HTTP server on 127.0.0.1 that records what webhooks post.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, IoContext};
use crate::http::{dechunk, find};

/// One request the receiver got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebhookPost {
    /// The method (`POST` for webhooks).
    pub method: String,
    /// The path (`/discord`, `/slack`).
    pub path: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body (lossy UTF-8).
    pub body: String,
    /// The status it was answered with.
    pub answered: u16,
}

#[derive(Debug, Default)]
struct Shared {
    posts: Vec<WebhookPost>,
    /// Answers for the next requests: status and Retry-After seconds.
    replies: VecDeque<(u16, Option<u64>)>,
}

/// Records every request posted to it; answers `204 No Content` unless told otherwise.
///
/// It runs from [`Fleet::start`](crate::Fleet) until the fleet is dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    port: u16,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    pub(crate) fn start() -> Result<WebhookReceiver, Error> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context(|| "binding the webhook receiver".to_string())?;
        let port = listener
            .local_addr()
            .context(|| "reading the webhook receiver's port".to_string())?
            .port();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("testfleet-webhooks".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        if let Ok(conn) = conn {
                            let _ = serve(conn, &shared);
                        }
                    }
                })
                .context(|| "starting the webhook receiver".to_string())?
        };
        Ok(WebhookReceiver {
            port,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL `write_config` gives the Discord webhook.
    pub fn discord_url(&self) -> String {
        format!("{}/discord", self.url())
    }

    /// The URL `write_config` gives the Slack webhook.
    pub fn slack_url(&self) -> String {
        format!("{}/slack", self.url())
    }

    /// Every request received so far, oldest first.
    pub fn posts(&self) -> Vec<WebhookPost> {
        self.shared
            .lock()
            .map(|s| s.posts.clone())
            .unwrap_or_default()
    }

    /// Answers the next request with `status` (and a `Retry-After` header, in seconds), say
    /// 429 to test rate limiting. Calls queue up; requests after them get 204 again.
    pub fn reply_next(&self, status: u16, retry_after: Option<u64>) {
        if let Ok(mut s) = self.shared.lock() {
            s.replies.push_back((status, retry_after));
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `read`, made again when a signal interrupted it (EINTR is no end of the request).
fn read_some(conn: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match conn.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}

fn serve(mut conn: TcpStream, shared: &Mutex<Shared>) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let end = loop {
        let n = read_some(&mut conn, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            break end;
        }
        if raw.len() > 1 << 20 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    let mut chunked = false;
    let mut content_type = None;
    let mut expect_continue = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => length = v.parse().unwrap_or(0),
            "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
            "content-type" => content_type = Some(v.to_string()),
            "expect" => expect_continue = v.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if expect_continue {
        conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = read_some(&mut conn, &mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        body = dechunk(&body)?;
    } else {
        while body.len() < length {
            let n = read_some(&mut conn, &mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        body.truncate(length);
    }
    let (status, retry_after) = {
        let mut s = shared
            .lock()
            .map_err(|_| io::Error::other("webhook receiver state poisoned"))?;
        let reply = s.replies.pop_front().unwrap_or((204, None));
        s.posts.push(WebhookPost {
            method,
            path,
            content_type,
            body: String::from_utf8_lossy(&body).into_owned(),
            answered: reply.0,
        });
        reply
    };
    let mut answer = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n",
        reason(status)
    );
    if let Some(secs) = retry_after {
        answer.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    if status == 204 {
        answer.push_str("\r\n");
    } else {
        let text = format!("{{\"status\": {status}}}\n");
        answer.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        ));
    }
    conn.write_all(answer.as_bytes())?;
    conn.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
