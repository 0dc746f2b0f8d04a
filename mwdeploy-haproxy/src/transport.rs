//! How one command line reaches a proxy's admin socket, and its answer comes back.
//!
//! - [`Transport::local`]: the socket is on this host; a tokio `UnixStream` connects,
//!   writes the line and reads until HAProxy closes (it does after answering, in
//!   non-interactive mode).
//! - [`Transport::remote`]: the socket is on another host; core's
//!   [`CommandRunner`] runs `socat stdio UNIX-CONNECT:<socket>` there (over ssh,
//!   argv only) with the line on stdin, and socat's stdout is the answer.
//!
//! Either way, one connection per command, and every command line is checked first:
//! HAProxy reads `;` and a newline as command separators, so a line holding one
//! would run more than was meant.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mwdeploy_exec::{Cmd, CommandRunner, ExecError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::error::HaproxyError;

/// The largest answer read (a `show stat` of a very large configuration fits).
const MAX_REPLY: u64 = 64 << 20;

/// Where a proxy's admin socket is, and how to reach it.
#[derive(Clone)]
pub struct Transport {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Local {
        path: PathBuf,
    },
    Remote {
        runner: Arc<dyn CommandRunner>,
        path: String,
        sudo: bool,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Local { path } => f.debug_struct("Local").field("path", path).finish(),
            Inner::Remote { runner, path, sudo } => f
                .debug_struct("Remote")
                .field("host", &runner.host())
                .field("path", path)
                .field("sudo", sudo)
                .finish(),
        }
    }
}

fn check_path(path: &str) -> Result<(), HaproxyError> {
    let bad = |why| {
        Err(HaproxyError::BadSocketPath {
            path: path.to_string(),
            why,
        })
    };
    if path.is_empty() {
        return bad("is empty");
    }
    if path.chars().any(char::is_control) {
        return bad("contains a newline or another control character");
    }
    Ok(())
}

impl Transport {
    /// The admin socket at `path` on this host.
    ///
    /// ```
    /// use mwdeploy_haproxy::Transport;
    /// assert!(Transport::local("/run/haproxy/admin.sock").is_ok());
    /// assert!(Transport::local("/run/haproxy/admin.sock\nshow info").is_err());
    /// ```
    pub fn local(path: impl Into<PathBuf>) -> Result<Transport, HaproxyError> {
        let path = path.into();
        let text = path.to_str().ok_or_else(|| HaproxyError::BadSocketPath {
            path: path.display().to_string(),
            why: "is not valid UTF-8",
        })?;
        check_path(text)?;
        Ok(Transport {
            inner: Inner::Local { path },
        })
    }

    /// The admin socket at `path` on the host `runner` reaches, through `socat`.
    ///
    /// The path must be absolute and hold none of the characters socat reads as
    /// address syntax (`,` `!` quotes, brackets, backslash, spaces).
    pub fn remote(
        runner: Arc<dyn CommandRunner>,
        path: impl Into<String>,
    ) -> Result<Transport, HaproxyError> {
        let path = path.into();
        check_path(&path)?;
        if !path.starts_with('/') {
            return Err(HaproxyError::BadSocketPath {
                path,
                why: "must be absolute on a remote proxy",
            });
        }
        if path
            .chars()
            .any(|c| c.is_whitespace() || ",!\"'\\()[]{}".contains(c))
        {
            return Err(HaproxyError::BadSocketPath {
                path,
                why: "contains a space or one of , ! \" ' \\ ( ) [ ] { }, which socat reads as address syntax",
            });
        }
        Ok(Transport {
            inner: Inner::Remote {
                runner,
                path,
                sudo: false,
            },
        })
    }

    /// The same transport, running socat through `sudo -n` when `sudo` is true (a
    /// deploy user that may not open the socket itself). No effect on a local socket.
    pub fn sudo(mut self, sudo: bool) -> Transport {
        if let Inner::Remote { sudo: s, .. } = &mut self.inner {
            *s = sudo;
        }
        self
    }

    /// Where the socket is: `local`, or the ssh destination.
    pub fn host(&self) -> String {
        match &self.inner {
            Inner::Local { .. } => "local".to_string(),
            Inner::Remote { runner, .. } => runner.host(),
        }
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        match &self.inner {
            Inner::Local { path } => path,
            Inner::Remote { path, .. } => Path::new(path),
        }
    }

    /// The command a remote transport runs to send `line` (for logs and dry runs);
    /// `None` for a local socket.
    pub fn remote_cmd(&self, line: &str, timeout: Duration) -> Option<Cmd> {
        match &self.inner {
            Inner::Local { .. } => None,
            Inner::Remote { path, sudo, .. } => Some(socat_cmd(path, *sudo, line, timeout)),
        }
    }

    /// Sends one command line to the socket and returns HAProxy's whole answer.
    ///
    /// `proxy` names the proxy in errors. The line may not hold `;`, a newline or any
    /// other control character. Nothing of the answer is judged here: see
    /// [`reply`](crate::reply) and [`stat`](crate::stat).
    pub async fn send(
        &self,
        proxy: &str,
        line: &str,
        timeout: Duration,
    ) -> Result<String, HaproxyError> {
        check_command(line)?;
        let no_answer = || HaproxyError::NoAnswer {
            proxy: proxy.to_string(),
            command: line.to_string(),
            timeout,
        };
        match &self.inner {
            Inner::Local { path } => tokio::time::timeout(timeout, send_local(proxy, path, line))
                .await
                .map_err(|_| no_answer())?,
            Inner::Remote { runner, path, sudo } => {
                let cmd = socat_cmd(path, *sudo, line, timeout);
                // Dropping the run on timeout kills the command.
                let out = tokio::time::timeout(timeout, runner.run(&cmd, &mut |_, _| {}))
                    .await
                    .map_err(|_| no_answer())?;
                remote_answer(proxy, &runner.host(), path, out)
            }
        }
    }
}

/// Refuses a command line HAProxy would read as more than one command.
pub fn check_command(line: &str) -> Result<(), HaproxyError> {
    let bad = |why| {
        Err(HaproxyError::BadCommand {
            command: line.to_string(),
            why,
        })
    };
    if line.trim().is_empty() {
        return bad("it is empty");
    }
    if line.contains(';') {
        return bad("`;` separates commands");
    }
    if line.chars().any(char::is_control) {
        return bad("it holds a newline or another control character");
    }
    Ok(())
}

fn socat_cmd(path: &str, sudo: bool, line: &str, timeout: Duration) -> Cmd {
    // -t: after sending the line (stdin's end), wait this long for HAProxy's answer;
    // HAProxy closes the connection once it has answered, which ends socat sooner.
    let wait = format!("{:.1}", timeout.as_secs_f64().max(0.1));
    Cmd::new([
        "socat".to_string(),
        "-t".to_string(),
        wait,
        "stdio".to_string(),
        format!("UNIX-CONNECT:{path}"),
    ])
    .sudo(sudo)
    .stdin(format!("{line}\n"))
}

async fn send_local(proxy: &str, path: &Path, line: &str) -> Result<String, HaproxyError> {
    let shown = path.display().to_string();
    let io = |e: std::io::Error| socket_error(proxy, "local", &shown, e.kind(), &e.to_string());
    let mut stream = UnixStream::connect(path).await.map_err(io)?;
    stream
        .write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(io)?;
    let mut buf = Vec::new();
    let mut limited = (&mut stream).take(MAX_REPLY + 1);
    limited.read_to_end(&mut buf).await.map_err(io)?;
    if buf.len() as u64 > MAX_REPLY {
        return Err(HaproxyError::SocketIo {
            proxy: proxy.to_string(),
            host: "local".to_string(),
            path: shown,
            detail: format!("the answer to `{line}` is larger than {MAX_REPLY} bytes"),
        });
    }
    String::from_utf8(buf).map_err(|_| HaproxyError::BadAnswer {
        proxy: proxy.to_string(),
        command: line.to_string(),
        detail: "the answer is not UTF-8".to_string(),
    })
}

fn socket_error(proxy: &str, host: &str, path: &str, kind: ErrorKind, text: &str) -> HaproxyError {
    let (proxy, host, path) = (proxy.to_string(), host.to_string(), path.to_string());
    match kind {
        ErrorKind::NotFound => HaproxyError::SocketMissing { proxy, host, path },
        ErrorKind::ConnectionRefused => HaproxyError::ConnectionRefused { proxy, host, path },
        ErrorKind::PermissionDenied => HaproxyError::SocketPermission { proxy, host, path },
        _ => HaproxyError::SocketIo {
            proxy,
            host,
            path,
            detail: text.to_string(),
        },
    }
}

/// Judges how a remote socat (behind ssh) ended.
fn remote_answer(
    proxy: &str,
    host: &str,
    path: &str,
    out: Result<mwdeploy_exec::Output, ExecError>,
) -> Result<String, HaproxyError> {
    let out = match out {
        Ok(out) => out,
        Err(ExecError::Spawn {
            program, source, ..
        }) => {
            return Err(HaproxyError::Unreachable {
                proxy: proxy.to_string(),
                host: host.to_string(),
                detail: format!("cannot run {program}: {source}"),
            })
        }
        Err(e) => {
            return Err(HaproxyError::Unreachable {
                proxy: proxy.to_string(),
                host: host.to_string(),
                detail: e.to_string(),
            })
        }
    };
    if out.success() {
        return Ok(out.stdout);
    }
    Err(failed_exit(proxy, host, path, out.code, out.last_words()))
}

/// The error for a remote socat (behind ssh) that did not exit with status 0.
fn failed_exit(
    proxy: &str,
    host: &str,
    path: &str,
    code: Option<i32>,
    words: &str,
) -> HaproxyError {
    let socket = |kind| socket_error(proxy, host, path, kind, words);
    let (p, h, w) = (proxy.to_string(), host.to_string(), words.to_string());
    match code {
        // ssh's own failure: the host was not reached.
        Some(255) => HaproxyError::Unreachable {
            proxy: p,
            host: h,
            detail: w,
        },
        Some(126) | Some(127) => HaproxyError::Socat {
            proxy: p,
            host: h,
            detail: w,
        },
        _ if words.contains("No such file or directory") => socket(ErrorKind::NotFound),
        _ if words.contains("Connection refused") => socket(ErrorKind::ConnectionRefused),
        _ if words.contains("Permission denied") => socket(ErrorKind::PermissionDenied),
        _ if words.contains("sudo") => HaproxyError::Socat {
            proxy: p,
            host: h,
            detail: w,
        },
        _ => socket(ErrorKind::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_that_would_be_several_commands_are_refused() {
        for bad in [
            "",
            " ",
            "set server b/s state ready; shutdown sessions server b/s",
            "set server b/s state ready\nshow info",
            "show stat\r",
            "show\0stat",
        ] {
            assert!(
                matches!(check_command(bad), Err(HaproxyError::BadCommand { .. })),
                "{bad:?}"
            );
        }
        assert!(check_command("set server mediawiki/mw1 state drain").is_ok());
    }

    #[test]
    fn socket_paths_are_checked() {
        assert!(Transport::local("").is_err());
        assert!(Transport::local("/run/a\nb").is_err());
        let runner: Arc<dyn CommandRunner> = Arc::new(mwdeploy_exec::LocalRunner::new());
        for bad in [
            "relative.sock",
            "/run/a,fork",
            "/run/a b",
            "/run/a!!b",
            "/run/a\nb",
        ] {
            assert!(
                Transport::remote(runner.clone(), bad).is_err(),
                "{bad:?} should be refused"
            );
        }
        let t = Transport::remote(runner, "/run/haproxy/admin.sock")
            .unwrap()
            .sudo(true);
        let cmd = t
            .remote_cmd("show stat", Duration::from_secs(5))
            .expect("a remote transport runs a command");
        assert_eq!(
            cmd.full_argv(),
            [
                "sudo",
                "-n",
                "--",
                "socat",
                "-t",
                "5.0",
                "stdio",
                "UNIX-CONNECT:/run/haproxy/admin.sock"
            ]
        );
        assert_eq!(cmd.stdin.as_deref(), Some(&b"show stat\n"[..]));
    }

    #[test]
    fn remote_failures_are_typed() {
        let judge = |code, words| {
            failed_exit(
                "lb1",
                "deploy@lb1",
                "/run/haproxy/admin.sock",
                Some(code),
                words,
            )
        };
        assert!(matches!(
            judge(255, "ssh: connect to host lb1 port 22: Connection refused"),
            HaproxyError::Unreachable { .. }
        ));
        assert!(matches!(
            judge(
                1,
                "socat[1] E connect(5, AF=1 \"/x\", 4): No such file or directory"
            ),
            HaproxyError::SocketMissing { .. }
        ));
        assert!(matches!(
            judge(
                1,
                "socat[1] E connect(5, AF=1 \"/x\", 4): Connection refused"
            ),
            HaproxyError::ConnectionRefused { .. }
        ));
        assert!(matches!(
            judge(127, "sh: 1: socat: not found"),
            HaproxyError::Socat { .. }
        ));
        assert!(matches!(
            judge(1, "sudo: a password is required"),
            HaproxyError::Socat { .. }
        ));
    }
}
