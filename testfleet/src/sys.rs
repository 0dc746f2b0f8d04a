//! Operating-system helpers: finding programs, signals, `/proc`, free ports, bounded waits.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::Error;

/// Directories searched after `$PATH`: daemons live in sbin, which a non-root `PATH` may lack.
const SBIN: [&str; 3] = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(SBIN.iter().map(PathBuf::from));
    dirs
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The full path of `name`, searched in `$PATH` and the sbin directories.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    search_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// php-fpm carries the PHP version in its name on Debian (`php-fpm8.2`): the newest found.
fn find_php_fpm() -> Option<PathBuf> {
    if let Some(p) = find_program("php-fpm") {
        return Some(p);
    }
    let mut found: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    for dir in search_dirs() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name.strip_prefix("php-fpm") else {
                continue;
            };
            let parts: Option<Vec<u32>> = version.split('.').map(|n| n.parse().ok()).collect();
            if let Some(parts) = parts {
                if is_executable(&entry.path()) {
                    found.push((parts, entry.path()));
                }
            }
        }
    }
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// The programs a fleet runs, by full path.
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    pub(crate) haproxy: PathBuf,
    pub(crate) nginx: PathBuf,
    pub(crate) php_fpm: PathBuf,
    pub(crate) sshd: PathBuf,
    pub(crate) ssh_keygen: PathBuf,
    pub(crate) git: PathBuf,
}

impl Programs {
    /// Finds every program the fleet runs, and those a deploy to it runs (ssh, rsync, curl,
    /// socat, php), or names all missing ones (and their packages) at once.
    pub(crate) fn find() -> Result<Programs, Error> {
        let mut missing = Vec::new();
        let mut need = |name: &str, package: &str| {
            find_program(name).unwrap_or_else(|| {
                missing.push(format!("{name} (package {package})"));
                PathBuf::new()
            })
        };
        let haproxy = need("haproxy", "haproxy");
        let nginx = need("nginx", "nginx");
        let sshd = need("sshd", "openssh-server");
        let ssh_keygen = need("ssh-keygen", "openssh-client");
        let git = need("git", "git");
        need("sh", "dash");
        // Not run by the fleet itself, but by every deploy to it: a test finds out here.
        need("ssh", "openssh-client");
        need("rsync", "rsync");
        need("curl", "curl");
        need("socat", "socat");
        need("php", "php-cli");
        let php_fpm = find_php_fpm().unwrap_or_else(|| {
            missing.push("php-fpm (package php-fpm)".to_string());
            PathBuf::new()
        });
        if !missing.is_empty() {
            return Err(Error::MissingPrograms { missing });
        }
        Ok(Programs {
            haproxy,
            nginx,
            php_fpm,
            sshd,
            ssh_keygen,
            git,
        })
    }
}

/// Fails with a message naming the install script when `name` is not installed.
pub(crate) fn require(name: &str, package: &str) -> Result<PathBuf, Error> {
    find_program(name).ok_or_else(|| Error::MissingPrograms {
        missing: vec![format!("{name} (package {package})")],
    })
}

/// Runs a command to completion; its output becomes the error text when it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<String, Error> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {shown}"), e))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.trim().is_empty() {
            text.push('\n');
            text.push_str(stdout.trim());
        }
        return Err(Error::Command {
            command: shown,
            status: out.status.to_string(),
            output: text,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sends `signal` (a name: TERM, KILL, HUP, USR2, QUIT) to the given processes.
///
/// Through the shell's `kill` builtin: the crate forbids `unsafe`, so no `libc::kill`. A
/// process that is already gone is not an error.
pub(crate) fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {signal} \"$@\" 2>/dev/null; exit 0"))
        .arg("kill")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A process, told apart from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ProcId {
    pub(crate) pid: u32,
    start: u64,
}

struct Stat {
    ppid: u32,
    state: char,
    start: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        // Field 22 of the whole line is the 20th after the state.
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The process with this pid now, if it runs (zombies count as gone).
pub(crate) fn proc_id(pid: u32) -> Option<ProcId> {
    let s = stat(pid)?;
    (s.state != 'Z' && s.state != 'X').then_some(ProcId {
        pid,
        start: s.start,
    })
}

/// Stops `pid` (SIGSTOP) and waits until it is stopped: a listener then forks nothing
/// more, so the tree read next is all of it.
pub(crate) fn freeze(pid: u32) {
    signal(&[pid], "STOP");
    wait_until(Duration::from_secs(2), Duration::from_millis(1), || {
        stat(pid).is_none_or(|s| matches!(s.state, 'T' | 't' | 'Z' | 'X'))
    });
}

/// Stops `pid` and every descendant, to a fixed point: a session that forked after the
/// tree was read (sshd's privilege-separated child, a shell) is stopped on the next
/// read, and a stopped process forks nothing more. Bounded by 2 s. Returns every pid
/// stopped (`pid` first), for a SIGCONT later.
pub fn freeze_tree(pid: u32) -> Vec<u32> {
    freeze(pid);
    let mut stopped = vec![pid];
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let running: Vec<u32> = descendants(pid)
            .into_iter()
            .filter(|p| stat(p.pid).is_some_and(|s| !matches!(s.state, 'T' | 't')))
            .map(|p| p.pid)
            .collect();
        if running.is_empty() || Instant::now() >= deadline {
            return stopped;
        }
        signal(&running, "STOP");
        wait_until(Duration::from_millis(200), Duration::from_millis(1), || {
            running
                .iter()
                .all(|&p| stat(p).is_none_or(|s| matches!(s.state, 'T' | 't' | 'Z' | 'X')))
        });
        stopped.extend(running);
    }
}

/// Pids of processes holding a TCP socket whose local port is `port` (a listener, or the
/// server side of a connection), this process excluded: after [`Fault::SshDown`], none
/// may hold a server's ssh port.
///
/// [`Fault::SshDown`]: crate::Fault::SshDown
pub fn socket_owners(port: u16) -> Vec<u32> {
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // Inode 0: a socket no process holds any more (TIME_WAIT).
            if let (Some(p), Some(inode)) = (local_port, f.get(9)) {
                if p == port && *inode != "0" {
                    inodes.insert(format!("socket:[{inode}]"));
                }
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let holds = fs::read_dir(entry.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                fs::read_link(fd.path())
                    .is_ok_and(|l| inodes.contains(l.to_string_lossy().as_ref()))
            });
        if holds {
            pids.push(pid);
        }
    }
    pids
}

/// The process's command name (`/proc/<pid>/comm`).
pub(crate) fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// Whether that very process still runs (not a zombie, not a new process with its pid).
pub(crate) fn is_running(p: ProcId) -> bool {
    proc_id(p.pid) == Some(p)
}

/// Every running descendant of `pid` (children, their children, ...).
pub(crate) fn descendants(pid: u32) -> Vec<ProcId> {
    let mut children: BTreeMap<u32, Vec<ProcId>> = BTreeMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(s) = stat(p) {
                if s.state != 'Z' && s.state != 'X' {
                    children.entry(s.ppid).or_default().push(ProcId {
                        pid: p,
                        start: s.start,
                    });
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children.remove(&p).unwrap_or_default() {
            todo.push(c.pid);
            out.push(c);
        }
    }
    out
}

/// Whether this process runs as root (read from `/proc`, no `libc`).
pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Calls `ready` every `step` until it says yes or `limit` has passed; says whether it did.
pub(crate) fn wait_until(limit: Duration, step: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub(crate) fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Whether an SSH server greets on 127.0.0.1:`port`.
pub(crate) fn ssh_greets(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 8];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-2.0-"
}

/// The last `n` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(cannot read: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Ports handed out by this process and not yet given back: two fleets of one test binary
/// never get the same port, even between a probe and the daemon's bind.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port reserved for a daemon. The probe listener keeps other processes off it until the
/// daemon is about to bind ([`Port::release`]); the port returns to the pool on drop.
#[derive(Debug)]
pub(crate) struct Port {
    port: u16,
    probe: Option<TcpListener>,
}

impl Port {
    pub(crate) fn get(&self) -> u16 {
        self.port
    }

    /// Closes the probe so the daemon can bind.
    pub(crate) fn release(&mut self) {
        self.probe = None;
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if let Ok(mut taken) = TAKEN.lock() {
            taken.remove(&self.port);
        }
    }
}

/// The range ports are taken from: below the kernel's ephemeral range, so an outgoing
/// connection's source port cannot take a port between its probe and the daemon's bind.
fn port_range() -> (u16, u16) {
    let ephemeral = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if ephemeral.0 > 12000 {
        (10000, ephemeral.0 - 1)
    } else if ephemeral.1 < 63000 {
        (ephemeral.1 + 1, 65000)
    } else {
        (1025, ephemeral.0.saturating_sub(1).max(1026))
    }
}

/// Reserves `n` distinct free ports on 127.0.0.1.
///
/// Ports are probed from a per-call random point of the range, so parallel test binaries
/// rarely probe the same ports; a probe that fails to bind is skipped.
pub(crate) fn reserve_ports(n: usize) -> Result<Vec<Port>, Error> {
    let (lo, hi) = port_range();
    let span = u32::from(hi - lo) + 1;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let mut taken = TAKEN
        .lock()
        .map_err(|_| Error::Invalid("port registry poisoned".into()))?;
    let mut out = Vec::with_capacity(n);
    for i in 0..span {
        if out.len() == n {
            break;
        }
        let port = lo + ((seed.wrapping_add(i.wrapping_mul(7919))) % span) as u16;
        if taken.contains(&port) {
            continue;
        }
        if let Ok(l) = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))) {
            taken.insert(port);
            out.push(Port {
                port,
                probe: Some(l),
            });
        }
    }
    // The ports' drop takes the lock again: let it go first.
    drop(taken);
    if out.len() < n {
        return Err(Error::Invalid(format!(
            "found only {} free ports of {n} in {lo}-{hi}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_not_installed_is_an_error_naming_the_install_script() {
        let e = require("testfleet-no-such-program", "no-such-package").unwrap_err();
        assert!(matches!(e, Error::MissingPrograms { .. }));
        assert!(e.to_string().contains("scripts/install-deps.sh"), "{e}");
    }

    #[test]
    fn reserved_ports_are_distinct_and_free_again_when_released() {
        let mut a = reserve_ports(5).unwrap();
        let b = reserve_ports(5).unwrap();
        let all: BTreeSet<u16> = a.iter().chain(&b).map(Port::get).collect();
        assert_eq!(all.len(), 10);
        let (lo, hi) = port_range();
        assert!(all.iter().all(|p| (lo..=hi).contains(p)));
        a[0].release();
        TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], a[0].get()))).unwrap();
    }

    #[test]
    fn descendants_and_running_follow_proc() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let me = proc_id(child.id()).unwrap();
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(5),
            || { !descendants(child.id()).is_empty() }
        ));
        let grandchild = descendants(child.id())[0];
        signal(&[grandchild.pid], "KILL");
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(5),
            || { !is_running(grandchild) }
        ));
        child.wait().unwrap();
        assert!(!is_running(me));
    }
}
