//! Running commands on a host: here ([`LocalRunner`]) or over OpenSSH ([`SshRunner`]).
//!
//! Commands are argv, never shell strings built from input. Over ssh the remote side
//! has a shell, so every argument is quoted for it ([`shell_quote`]) and arrives byte
//! for byte. Each host gets one multiplexed connection (ControlMaster, its socket in a
//! private 0700 directory), host keys are checked unless the config says otherwise,
//! `BatchMode=yes` keeps ssh from ever asking a question, and `--` ends the options
//! before the destination. Output is streamed as lines, with `\r` as a line end too
//! (rsync's progress rewrites one line with `\r`).
//!
//! ```
//! use mwdeploy_exec::{Cmd, CommandRunner, LocalRunner};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let out = LocalRunner::new()
//!     .run(&Cmd::new(["printf", "a\\rb\\nc"]), &mut |_, line: &str| println!("{line}"))
//!     .await
//!     .unwrap();
//! assert!(out.success());
//! assert_eq!(out.stdout, "a\rb\nc");
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio_process_stream::{Item, ProcessChunkStream};
use tokio_stream::StreamExt;

use mwdeploy_core::error::NameError;
use mwdeploy_core::model::{validate_name, Server};

/// Output kept per stream for the result; lines beyond it still reach the callback.
const KEEP_BYTES: usize = 4 << 20;

/// A command: its argv, whether it runs through `sudo -n`, and what it reads on stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Run it through `sudo -n` (a non-root deploy user).
    pub sudo: bool,
    /// Bytes written to its stdin, which is then closed (none: stdin is empty).
    pub stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// A command with this argv.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
            sudo: false,
            stdin: None,
        }
    }

    /// The same command, through `sudo -n` when `sudo` is true.
    pub fn sudo(mut self, sudo: bool) -> Self {
        self.sudo = sudo;
        self
    }

    /// The same command, reading `input` on stdin.
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The argv as it will run on the host (with `sudo -n --` in front if asked).
    pub fn full_argv(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.argv.len() + 3);
        if self.sudo {
            v.extend(["sudo", "-n", "--"].map(String::from));
        }
        v.extend(self.argv.iter().cloned());
        v
    }
}

impl fmt::Display for Cmd {
    /// The argv, quoted as a shell would need it: for logs and dry runs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_join(&self.full_argv()))
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Output {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// What it printed on stdout (lossy UTF-8; the first 4 MiB).
    pub stdout: String,
    /// What it printed on stderr (lossy UTF-8; the first 4 MiB).
    pub stderr: String,
}

impl Output {
    /// An output (for runners outside this crate, and tests).
    pub fn new(code: Option<i32>, stdout: impl Into<String>, stderr: impl Into<String>) -> Self {
        Output {
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last non-empty line of stderr, else of stdout: what to show when it failed.
    pub fn last_words(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .or_else(|| self.stdout.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("")
            .trim()
    }
}

/// A command could not be run, or (with [`ExecError::check`]) did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The program could not be started.
    #[error("{host}: cannot run {program}: {source}")]
    Spawn {
        /// Where (`local`, or the ssh destination).
        host: String,
        /// The program.
        program: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// Reading its output or writing its input failed.
    #[error("{host}: {program}: {source}")]
    Io {
        /// Where.
        host: String,
        /// The program.
        program: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("{host}: {cmd} exited with {}: {detail}", code.map(|c| format!("status {c}")).unwrap_or_else(|| "a signal".into()))]
    Failed {
        /// Where.
        host: String,
        /// The command, quoted.
        cmd: String,
        /// Its exit code.
        code: Option<i32>,
        /// Its last words.
        detail: String,
    },
    /// An empty argv.
    #[error("empty command")]
    Empty,
    /// A host, user or option that may not reach ssh.
    #[error("{0}")]
    BadName(#[from] NameError),
    /// An ssh option that is not `Key=Value` or could inject another option.
    #[error("ssh option {0:?} is not of the form Key=Value")]
    BadOption(String),
}

/// What kind of failure an [`ExecError`] is: what an operator has to fix, told apart
/// without grepping its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// ssh refused the server's host key (unknown, or changed): check it with the
    /// server's owner.
    HostKey,
    /// ssh could not log in (key not accepted, no agent, a password asked for).
    Auth,
    /// Nothing listens there (connection refused).
    Refused,
    /// The host's name does not resolve, or there is no route to it.
    Unreachable,
    /// The connection or the command timed out.
    Timeout,
    /// ssh failed for another reason (its exit status 255).
    Ssh,
    /// The command ran and failed on its own.
    Command,
    /// The program could not be started here.
    NotStarted,
    /// Its input or output broke.
    Io,
    /// The command, a name or an option was refused before it ran.
    Invalid,
}

/// The kind of an ssh failure from ssh's own words (its last line on stderr), or `None`
/// when they name none of them.
pub fn ssh_failure_kind(detail: &str) -> Option<FailureKind> {
    let d = detail.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| d.contains(w));
    Some(
        if has(&[
            "host key verification failed",
            "host key is known",
            "host key for",
            "remote host identification has changed",
        ]) {
            FailureKind::HostKey
        } else if has(&["permission denied", "too many authentication failures"]) {
            FailureKind::Auth
        } else if has(&["connection refused"]) {
            FailureKind::Refused
        } else if has(&[
            "could not resolve hostname",
            "name or service not known",
            "no route to host",
            "network is unreachable",
        ]) {
            FailureKind::Unreachable
        } else if has(&["timed out", "timeout"]) {
            FailureKind::Timeout
        } else {
            return None;
        },
    )
}

impl ExecError {
    /// What kind of failure it is. A command run over ssh that exits with 255 is ssh's
    /// own failure, told apart by ssh's words; any other exit status is the command's.
    pub fn kind(&self) -> FailureKind {
        match self {
            ExecError::Spawn { .. } => FailureKind::NotStarted,
            ExecError::Io { .. } => FailureKind::Io,
            ExecError::Failed {
                host, code, detail, ..
            } if host != "local" && *code == Some(255) => {
                ssh_failure_kind(detail).unwrap_or(FailureKind::Ssh)
            }
            ExecError::Failed { .. } => FailureKind::Command,
            ExecError::Empty | ExecError::BadName(_) | ExecError::BadOption(_) => {
                FailureKind::Invalid
            }
        }
    }

    /// `Ok(output)` if it succeeded, else [`ExecError::Failed`] with its last words.
    pub fn check(host: &str, cmd: &Cmd, output: Output) -> Result<Output, ExecError> {
        if output.success() {
            Ok(output)
        } else {
            Err(ExecError::Failed {
                host: host.to_string(),
                cmd: cmd.to_string(),
                code: output.code,
                detail: output.last_words().to_string(),
            })
        }
    }
}

/// A line sink: each line of output as it comes, with its stream.
pub type OnLine<'a> = dyn FnMut(Stream, &str) + Send + 'a;

/// Runs commands on one host.
#[async_trait]
pub trait CommandRunner: Send + Sync {
    /// Runs `cmd`, handing each line of its output to `on_line` as it arrives.
    ///
    /// A non-zero exit is an [`Output`], not an error; see [`ExecError::check`]. Dropping
    /// the future kills the command.
    async fn run(&self, cmd: &Cmd, on_line: &mut OnLine<'_>) -> Result<Output, ExecError>;

    /// Where commands run (`local`, or `user@host:port`), for messages.
    fn host(&self) -> String;

    /// Runs `cmd` and fails unless it exits with status 0.
    async fn run_ok(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let out = self.run(cmd, &mut |_, _| {}).await?;
        ExecError::check(&self.host(), cmd, out)
    }
}

/// Runs commands on this host.
#[derive(Debug, Clone, Default)]
pub struct LocalRunner;

impl LocalRunner {
    /// A local runner.
    pub fn new() -> Self {
        LocalRunner
    }
}

#[async_trait]
impl CommandRunner for LocalRunner {
    async fn run(&self, cmd: &Cmd, on_line: &mut OnLine<'_>) -> Result<Output, ExecError> {
        let argv = cmd.full_argv();
        let (program, args) = argv.split_first().ok_or(ExecError::Empty)?;
        let mut c = tokio::process::Command::new(program);
        c.args(args);
        spawn_and_stream(c, "local", program, cmd.stdin.as_deref(), on_line).await
    }

    fn host(&self) -> String {
        "local".into()
    }
}

/// How to reach a host over ssh.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SshTarget {
    /// Host name or IPv4 address.
    pub host: String,
    /// Port (`None`: ssh's default or its config).
    pub port: Option<u16>,
    /// Remote user.
    pub user: String,
    /// Private key (`-i`).
    pub identity: Option<PathBuf>,
    /// Extra `Key=Value` options (`ssh_options`); host keys are checked unless one of
    /// them says otherwise.
    pub options: Vec<String>,
    /// How long to wait for the connection.
    pub connect_timeout: Duration,
}

impl SshTarget {
    /// `user@host` on the default port, 10 s connect timeout, no extra options.
    pub fn new(user: impl Into<String>, host: impl Into<String>) -> Self {
        SshTarget {
            host: host.into(),
            port: None,
            user: user.into(),
            identity: None,
            options: Vec::new(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A private folder (0700) for ssh control sockets, removed when dropped.
#[derive(Debug)]
pub struct ControlDir {
    path: PathBuf,
}

impl ControlDir {
    /// Creates a fresh private folder under the system's temp dir.
    pub fn new() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        for n in 0u32..1000 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = base.join(format!("mwdeploy-ssh-{}-{nanos:x}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(ControlDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(
            "no free name for an ssh control folder",
        ))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs commands on one host over OpenSSH, through one multiplexed connection.
#[derive(Debug)]
pub struct SshRunner {
    target: SshTarget,
    control: Arc<ControlDir>,
    base_args: Vec<String>,
    /// Whether the shared connection was opened (see [`SshRunner::connect`]).
    opened: AtomicBool,
    /// Held while it is being opened: the commands that come meanwhile wait for it.
    opening: tokio::sync::Mutex<()>,
}

impl SshRunner {
    /// A runner for `target`, with its control socket in `control` (share one folder
    /// among the runners of a deploy). Checks every name that will reach ssh.
    pub fn new(target: SshTarget, control: Arc<ControlDir>) -> Result<Self, ExecError> {
        validate_name("ssh host", &target.host, 253)?;
        validate_name("ssh user", &target.user, 32)?;
        let mut args: Vec<String> = vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ConnectTimeout={}", target.connect_timeout.as_secs().max(1)),
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}/%C", control.path().display()),
            "-o".into(),
            "ControlPersist=60s".into(),
        ];
        let mut strict = true;
        for opt in &target.options {
            let (key, _) = opt
                .split_once('=')
                .filter(|(k, v)| {
                    !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_alphanumeric())
                        && !v.contains('\n')
                })
                .ok_or_else(|| ExecError::BadOption(opt.clone()))?;
            if key.eq_ignore_ascii_case("StrictHostKeyChecking") {
                strict = false;
            }
            args.extend(["-o".into(), opt.clone()]);
        }
        if strict {
            // Unknown or changed host keys are refused, never accepted.
            args.extend(["-o".into(), "StrictHostKeyChecking=yes".into()]);
        }
        if let Some(id) = &target.identity {
            args.extend(["-i".into(), id.display().to_string()]);
        }
        if let Some(port) = target.port {
            args.extend(["-p".into(), port.to_string()]);
        }
        args.extend(["-l".into(), target.user.clone()]);
        Ok(SshRunner {
            target,
            control,
            base_args: args,
            opened: AtomicBool::new(false),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    /// Opens the shared connection unless this runner opened it already (`true`, run
    /// through it). Commands started at once then share one connection instead of each
    /// racing to become its master, and a caller can open it before it is needed (the
    /// handshake then costs nothing while a server is out of the pool). ssh's own
    /// failure (exit 255: refused, unreachable, host key) is returned as its `Output`.
    ///
    /// Bounded: a host that accepts the connection and never completes the handshake (a
    /// hung sshd) fails it after twice `connect_timeout` and 5 s, as ssh's exit 255, and
    /// so do the commands waiting for it.
    pub async fn connect(&self) -> Result<Option<Output>, ExecError> {
        if self.opened.load(Ordering::Acquire) {
            return Ok(None);
        }
        let bound = self.target.connect_timeout * 2 + Duration::from_secs(5);
        let not_opened = |why: &str| {
            Ok(Some(Output::new(
                Some(255),
                "",
                format!(
                    "ssh: no connection to {} within {bound:?}: {why}",
                    self.host()
                ),
            )))
        };
        let Ok(_opening) = tokio::time::timeout(bound, self.opening.lock()).await else {
            return not_opened("another command is still opening it");
        };
        if self.opened.load(Ordering::Acquire) {
            return Ok(None);
        }
        let Ok(out) =
            tokio::time::timeout(bound, self.spawn(&Cmd::new(["true"]), &mut |_, _| {})).await
        else {
            return not_opened("the handshake did not finish");
        };
        let out = out?;
        if out.code == Some(255) {
            return Ok(Some(out));
        }
        self.opened.store(true, Ordering::Release);
        Ok(None)
    }

    async fn spawn(&self, cmd: &Cmd, on_line: &mut OnLine<'_>) -> Result<Output, ExecError> {
        let argv = self.ssh_argv(cmd);
        let mut c = tokio::process::Command::new(&argv[0]);
        c.args(&argv[1..]);
        spawn_and_stream(c, &self.host(), "ssh", cmd.stdin.as_deref(), on_line).await
    }

    /// The ssh argv that runs `cmd` (for logs, dry runs and tests).
    pub fn ssh_argv(&self, cmd: &Cmd) -> Vec<String> {
        let mut v = vec!["ssh".to_string()];
        v.extend(self.base_args.iter().cloned());
        v.push("--".into());
        v.push(self.target.host.clone());
        v.push(shell_join(&cmd.full_argv()));
        v
    }

    /// Closes the shared connection (`ssh -O exit`), if one is open.
    pub async fn close(&self) {
        self.opened.store(false, Ordering::Release);
        let mut c = tokio::process::Command::new("ssh");
        c.args(&self.base_args)
            .args(["-O", "exit", "--", &self.target.host])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .process_group(0);
        let _ = tokio::time::timeout(Duration::from_secs(5), c.status()).await;
    }

    /// The host it reaches.
    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// The control folder.
    pub fn control_dir(&self) -> &Path {
        self.control.path()
    }
}

#[async_trait]
impl CommandRunner for SshRunner {
    async fn run(&self, cmd: &Cmd, on_line: &mut OnLine<'_>) -> Result<Output, ExecError> {
        if cmd.argv.is_empty() {
            return Err(ExecError::Empty);
        }
        // Not reachable: the command would fail the same way, after as long a wait.
        if let Some(failed) = self.connect().await? {
            return Ok(failed);
        }
        self.spawn(cmd, on_line).await
    }

    fn host(&self) -> String {
        match self.target.port {
            Some(p) => format!("{}@{}:{p}", self.target.user, self.target.host),
            None => format!("{}@{}", self.target.user, self.target.host),
        }
    }
}

async fn spawn_and_stream(
    mut c: tokio::process::Command,
    host: &str,
    program: &str,
    stdin: Option<&[u8]>,
    on_line: &mut OnLine<'_>,
) -> Result<Output, ExecError> {
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    // Its own process group: the terminal's signals (the SIGHUP of a terminal that went
    // away, a Ctrl+C) are the runner's to handle, not a half-done step's to die of.
    c.process_group(0);
    let mut child = c.spawn().map_err(|source| ExecError::Spawn {
        host: host.to_string(),
        program: program.to_string(),
        source,
    })?;
    let io = |source| ExecError::Io {
        host: host.to_string(),
        program: program.to_string(),
        source,
    };
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Small inputs (HAProxy commands) fit the pipe; a reader that stops early
        // (EPIPE) is not our failure, its exit status says what happened.
        match pipe.write_all(input).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(io(e)),
        }
        drop(pipe);
    }
    let mut stream = ProcessChunkStream::from(child);
    let mut out = Splitter::new(Stream::Stdout);
    let mut err = Splitter::new(Stream::Stderr);
    let mut status = None;
    while let Some(item) = stream.next().await {
        match item {
            Item::Stdout(chunk) => out.feed(&chunk, on_line),
            Item::Stderr(chunk) => err.feed(&chunk, on_line),
            Item::Done(s) => status = Some(s.map_err(io)?),
        }
    }
    out.flush(on_line);
    err.flush(on_line);
    let status = status.ok_or_else(|| io(std::io::Error::other("no exit status")))?;
    Ok(Output {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out.kept).into_owned(),
        stderr: String::from_utf8_lossy(&err.kept).into_owned(),
    })
}

/// Cuts a byte stream into lines at `\n`, `\r` and `\r\n`, keeping the raw bytes too.
struct Splitter {
    stream: Stream,
    line: Vec<u8>,
    kept: Vec<u8>,
    after_cr: bool,
}

impl Splitter {
    fn new(stream: Stream) -> Self {
        Splitter {
            stream,
            line: Vec::new(),
            kept: Vec::new(),
            after_cr: false,
        }
    }

    fn feed(&mut self, chunk: &[u8], on_line: &mut OnLine<'_>) {
        let room = KEEP_BYTES.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    self.emit(on_line);
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
    }

    fn emit(&mut self, on_line: &mut OnLine<'_>) {
        let text = String::from_utf8_lossy(&self.line);
        on_line(self.stream, &text);
        self.line.clear();
    }

    fn flush(&mut self, on_line: &mut OnLine<'_>) {
        if !self.line.is_empty() {
            self.emit(on_line);
        }
    }
}

/// Quotes one argument for a POSIX shell: unchanged if it is plainly safe, else in
/// single quotes (a `'` inside becomes `'\''`).
///
/// ```
/// use mwdeploy_exec::shell_quote;
/// assert_eq!(shell_quote("mw1"), "mw1");
/// assert_eq!(shell_quote("a b"), "'a b'");
/// assert_eq!(shell_quote("it's; $(id)"), r#"'it'\''s; $(id)'"#);
/// assert_eq!(shell_quote(""), "''");
/// ```
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        return arg.to_string();
    }
    let mut q = String::with_capacity(arg.len() + 2);
    q.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    q
}

/// An argv as one shell command line, each argument quoted.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    fn failed(host: &str, code: i32, detail: &str) -> ExecError {
        ExecError::Failed {
            host: host.into(),
            cmd: "true".into(),
            code: Some(code),
            detail: detail.into(),
        }
    }

    #[test]
    fn ssh_failures_are_told_apart_by_kind() {
        let at = "deploy@mw1";
        for (detail, kind) in [
            ("Host key verification failed.", FailureKind::HostKey),
            (
                "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@",
                FailureKind::HostKey,
            ),
            (
                "deploy@mw1: Permission denied (publickey).",
                FailureKind::Auth,
            ),
            (
                "ssh: connect to host mw1 port 22: Connection refused",
                FailureKind::Refused,
            ),
            (
                "ssh: Could not resolve hostname mw9: Name or service not known",
                FailureKind::Unreachable,
            ),
            (
                "ssh: connect to host mw1 port 22: Connection timed out",
                FailureKind::Timeout,
            ),
            (
                "kex_exchange_identification: read: Connection reset",
                FailureKind::Ssh,
            ),
        ] {
            assert_eq!(failed(at, 255, detail).kind(), kind, "{detail}");
        }
        // The command's own failure, even when its words look like ssh's.
        assert_eq!(
            failed(at, 1, "Permission denied").kind(),
            FailureKind::Command
        );
        assert_eq!(
            failed("local", 255, "Connection refused").kind(),
            FailureKind::Command
        );
        assert_eq!(ExecError::Empty.kind(), FailureKind::Invalid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut got = Vec::new();
        let mut s = Splitter::new(Stream::Stdout);
        let mut sink = |_: Stream, l: &str| got.push(l.to_string());
        for c in chunks {
            s.feed(c, &mut sink);
        }
        s.flush(&mut sink);
        got
    }

    #[test]
    fn lines_end_at_cr_lf_and_crlf_across_chunks() {
        assert_eq!(
            lines(&[b"  1%\r 50%", b"\r100%\nsent 3 files\r", b"\ntail"]),
            ["  1%", " 50%", "100%", "sent 3 files", "tail"]
        );
        assert_eq!(lines(&[b"a\n\nb\n"]), ["a", "", "b"]);
    }

    #[test]
    fn ssh_argv_checks_host_keys_and_ends_options_before_the_host() {
        let control = Arc::new(ControlDir::new().unwrap());
        let mut t = SshTarget::new("deploy", "mw1.example.org");
        t.port = Some(2222);
        let r = SshRunner::new(t, control.clone()).unwrap();
        let argv = r.ssh_argv(&Cmd::new(["echo", "a b"]).sudo(true));
        let dashdash = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(argv[dashdash + 1], "mw1.example.org");
        assert_eq!(argv[dashdash + 2], "sudo -n -- echo 'a b'");
        assert!(argv.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(argv.contains(&"BatchMode=yes".to_string()));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(control.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn hostile_hosts_users_and_options_never_reach_ssh() {
        let control = Arc::new(ControlDir::new().unwrap());
        for host in ["-oProxyCommand=x", "a b", "h;id", ""] {
            assert!(
                SshRunner::new(SshTarget::new("u", host), control.clone()).is_err(),
                "{host}"
            );
        }
        assert!(SshRunner::new(SshTarget::new("-l", "h"), control.clone()).is_err());
        let mut t = SshTarget::new("u", "h");
        t.options = vec!["ProxyCommand sh -c x".into()];
        assert!(matches!(
            SshRunner::new(t, control.clone()),
            Err(ExecError::BadOption(_))
        ));
        let mut t = SshTarget::new("u", "h");
        t.options = vec!["StrictHostKeyChecking=accept-new".into()];
        let argv = SshRunner::new(t, control)
            .unwrap()
            .ssh_argv(&Cmd::new(["true"]));
        assert!(!argv.contains(&"StrictHostKeyChecking=yes".to_string()));
    }

    #[tokio::test]
    async fn local_commands_stream_lines_and_report_status_and_stdin() {
        let mut seen = Vec::new();
        let out = LocalRunner::new()
            .run(
                &Cmd::new(["sh", "-c", "cat; printf 'x\\ry' >&2; exit 3"]).stdin("in\n"),
                &mut |s, l| seen.push((s, l.to_string())),
            )
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "in\n");
        assert_eq!(out.last_words(), "x\ry");
        assert!(seen.contains(&(Stream::Stdout, "in".into())));
        assert!(seen.contains(&(Stream::Stderr, "x".into())));
        assert!(seen.contains(&(Stream::Stderr, "y".into())));
        let err = LocalRunner::new()
            .run_ok(&Cmd::new(["false"]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("status 1"), "{err}");
        assert!(matches!(
            LocalRunner::new()
                .run_ok(&Cmd::new(["/nonexistent/prog"]))
                .await,
            Err(ExecError::Spawn { .. })
        ));
    }
}

/// How servers are reached: the deploy-wide ssh settings, with each server's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SshDefaults {
    /// Remote user (`deploy_user`).
    pub user: String,
    /// Private key (`ssh_identity`).
    pub identity: Option<PathBuf>,
    /// Port (`ssh_port`).
    pub port: Option<u16>,
    /// Extra `Key=Value` options (`ssh_options`).
    pub options: Vec<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Run remote commands through `sudo -n` (`remote_sudo`).
    pub sudo: bool,
}

impl SshDefaults {
    /// `user`, no key, default port, no options, 10 s connect timeout, no sudo.
    pub fn new(user: impl Into<String>) -> Self {
        SshDefaults {
            user: user.into(),
            identity: None,
            port: None,
            options: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            sudo: false,
        }
    }
}

/// A host and port.
type HostKey = (String, Option<u16>);

/// One runner per host, shared by every adapter, so each host has one ssh connection.
///
/// ```
/// use mwdeploy_exec::{Hosts, SshDefaults};
/// use mwdeploy_core::{Server, ServerId};
/// let hosts = Hosts::new(SshDefaults::new("mwdeploy")).unwrap();
/// let mut local = Server::new(ServerId::new("mw1").unwrap());
/// local.local = true;
/// assert_eq!(hosts.runner(&local).unwrap().host(), "local");
/// let remote = Server::new(ServerId::new("mw2.example.org").unwrap());
/// assert_eq!(hosts.runner(&remote).unwrap().host(), "mwdeploy@mw2.example.org");
/// ```
#[derive(Debug)]
pub struct Hosts {
    defaults: SshDefaults,
    control: Arc<ControlDir>,
    runners: Mutex<HashMap<HostKey, Arc<SshRunner>>>,
}

impl Hosts {
    /// A registry with `defaults`, and a fresh private control folder.
    pub fn new(defaults: SshDefaults) -> std::io::Result<Self> {
        Ok(Hosts {
            defaults,
            control: Arc::new(ControlDir::new()?),
            runners: Default::default(),
        })
    }

    /// Whether remote commands go through `sudo -n`.
    pub fn sudo(&self) -> bool {
        self.defaults.sudo
    }

    /// The ssh runner for `server`, or `None` when it is `local: true`: for tools that
    /// run ssh themselves (rsync's `-e`) and must share the runner's options and
    /// connection.
    pub fn ssh_runner(&self, server: &Server) -> Result<Option<Arc<SshRunner>>, ExecError> {
        if server.local {
            return Ok(None);
        }
        let host = server
            .ssh_host
            .clone()
            .unwrap_or_else(|| server.id.to_string());
        self.ssh(&host, server.ssh_port.or(self.defaults.port))
            .map(Some)
    }

    /// The runner for `server`: local when it says `local: true`, else ssh to its
    /// `ssh_host` (default: its name) and port.
    pub fn runner(&self, server: &Server) -> Result<Arc<dyn CommandRunner>, ExecError> {
        match self.ssh_runner(server)? {
            Some(r) => Ok(r),
            None => Ok(Arc::new(LocalRunner::new())),
        }
    }

    /// The runner for `host` on `port` (proxies, which are not servers).
    pub fn ssh(&self, host: &str, port: Option<u16>) -> Result<Arc<SshRunner>, ExecError> {
        let key = (host.to_string(), port);
        let mut runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = runners.get(&key) {
            return Ok(r.clone());
        }
        let d = &self.defaults;
        let target = SshTarget {
            host: host.to_string(),
            port,
            user: d.user.clone(),
            identity: d.identity.clone(),
            options: d.options.clone(),
            connect_timeout: d.connect_timeout,
        };
        let runner = Arc::new(SshRunner::new(target, self.control.clone())?);
        runners.insert(key, runner.clone());
        Ok(runner)
    }

    /// Closes every shared connection.
    pub async fn close(&self) {
        let all: Vec<_> = {
            let runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
            runners.values().cloned().collect()
        };
        // All at once: each is a round trip to its master, and a deploy that finished
        // should not wait for them one by one.
        let mut closing = tokio::task::JoinSet::new();
        for r in all {
            closing.spawn(async move { r.close().await });
        }
        while closing.join_next().await.is_some() {}
    }
}
