//! What a post says and to whom: the service's JSON body, and error texts scrubbed of
//! the webhook's URL.

use std::fmt;

/// Which service a webhook posts to: decides the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// A Discord webhook: the body's `content`.
    Discord,
    /// A Slack incoming webhook: the body's `text`.
    Slack,
}

impl Service {
    /// `discord` or `slack`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Discord => "discord",
            Service::Slack => "slack",
        }
    }
}

/// One webhook: its service and URL (never shown).
#[derive(Clone)]
pub struct Hook {
    pub(crate) service: Service,
    pub(crate) url: String,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hook({}, <redacted>)", self.service.name())
    }
}

impl Hook {
    /// The webhook of `service` at `url`.
    pub fn new(service: Service, url: impl Into<String>) -> Self {
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
pub fn payload(service: Service, text: &str) -> String {
    let text = truncate(text, crate::MAX_TEXT);
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

pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `text` with every occurrence of `url`, its authority, host and path replaced by
/// `<webhook>`: for error texts that may quote them (curl names the host it cannot
/// resolve or reach).
pub fn scrub(text: &str, url: &str) -> String {
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
