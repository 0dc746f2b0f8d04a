//! A small HTTP/1.1 client for the fleet's pages, and the page they return.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The Host header of every request, as production's canary sends it.
pub const VHOST: &str = "test.wikioasis.org";

/// The path every check requests.
pub const MAIN_PAGE: &str = "/wiki/Main_Page";

/// A page as the fleet served it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// The HTTP status.
    pub status: u16,
    /// The body (lossy UTF-8).
    pub body: String,
}

impl Page {
    /// The value of a `name=value` line of the page (`server`, `version`, `stamp-a`,
    /// `stamp-b`, `path`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.body.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('='))
                .map(str::trim)
        })
    }

    /// Whether the body contains `wikioasis` (case-insensitive), as the canary expects.
    pub fn has_marker(&self) -> bool {
        self.body.to_ascii_lowercase().contains("wikioasis")
    }

    /// The release stamp, when both stamp files agree.
    pub fn stamp(&self) -> Option<&str> {
        match (self.field("stamp-a"), self.field("stamp-b")) {
            (Some(a), Some(b)) if a == b => Some(a),
            _ => None,
        }
    }

    /// Whether the page was served from two releases at once (its two stamps differ).
    pub fn is_mixed(&self) -> bool {
        matches!((self.field("stamp-a"), self.field("stamp-b")), (Some(a), Some(b)) if a != b)
    }

    /// The server that served it (`mw1`..., or `staging`).
    pub fn server(&self) -> Option<&str> {
        self.field("server")
    }

    /// A good page: HTTP 200, `wikioasis` in the body, one release.
    pub fn is_good(&self) -> bool {
        self.status == 200 && self.has_marker() && !self.is_mixed()
    }
}

/// `GET path` from 127.0.0.1:`port` with the fleet's Host header, within `timeout`.
pub(crate) fn get(port: u16, path: &str, timeout: Duration) -> io::Result<Page> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // A signal meant for another thread of the caller can interrupt a call (EINTR):
    // that is no answer from the server, so the call is made again.
    let mut s = loop {
        match TcpStream::connect_timeout(&addr, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "request timed out"))
    };
    s.set_write_timeout(Some(left()?))?;
    s.set_nodelay(true)?;
    // One write: a request split over several segments waits on delayed ACKs (40 ms).
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {VHOST}\r\nUser-Agent: testfleet\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        s.set_read_timeout(Some(left()?))?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "request timed out"))
            }
            Err(e) => return Err(e),
        }
    }
    parse_response(&raw)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Parses a whole response read until the server closed the connection.
pub(crate) fn parse_response(raw: &[u8]) -> io::Result<Page> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| bad("no end of headers in the response"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Page {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body.
pub(crate) fn dechunk(mut body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(body, b"\r\n").ok_or_else(|| bad("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| bad("bad chunk size in the body"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_and_plain_responses_parse() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nstamp\r\n4\r\n-a=x\r\n0\r\n\r\n";
        let page = parse_response(raw).unwrap();
        assert_eq!(page.status, 200);
        assert_eq!(page.body, "stamp-a=x");
        let raw = b"HTTP/1.0 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad";
        let page = parse_response(raw).unwrap();
        assert_eq!((page.status, page.body.as_str()), (500, "bad"));
    }

    #[test]
    fn stamps_tell_a_mixed_page() {
        let page = |a: &str, b: &str| Page {
            status: 200,
            body: format!("<p>WikiOasis</p>\nserver=mw1\nstamp-a={a}\nstamp-b={b}\n"),
        };
        assert_eq!(page("r2", "r2").stamp(), Some("r2"));
        assert!(page("r2", "r2").is_good());
        assert!(page("r1", "r2").is_mixed());
        assert!(!page("r1", "r2").is_good());
        assert_eq!(page("r1", "r2").stamp(), None);
        assert_eq!(page("r1", "r1").server(), Some("mw1"));
    }
}
