//! Daemons the fleet owns: spawned as children, stopped by pid, always waited for.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext};
use crate::sys::{self, ProcId};

/// One daemon (nginx, php-fpm, sshd, haproxy) run in the foreground as our child.
#[derive(Debug)]
pub(crate) struct Daemon {
    what: String,
    child: Child,
    log: PathBuf,
    /// Set once it has been waited for.
    done: bool,
}

impl Daemon {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(what: String, mut cmd: Command, log: &Path) -> Result<Daemon, Error> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .context(|| format!("opening {}", log.display()))?;
        let err = out
            .try_clone()
            .context(|| format!("opening {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context(|| format!("starting {what}: {cmd:?}"))?;
        Ok(Daemon {
            what,
            child,
            log: log.to_path_buf(),
            done: false,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if it has exited (it should run), with the end of its log.
    pub(crate) fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.done = true;
                Err(Error::Exited {
                    what: self.what.clone(),
                    status: status.to_string(),
                    log: self.log.clone(),
                    tail: sys::tail(&self.log, 15),
                })
            }
            Err(e) => Err(Error::io(format!("waiting for {}", self.what), e)),
        }
    }

    /// The daemon and every process it started (workers, ssh sessions).
    pub(crate) fn tree(&self) -> Vec<ProcId> {
        let mut all: Vec<ProcId> = sys::proc_id(self.pid()).into_iter().collect();
        all.extend(sys::descendants(self.pid()));
        all
    }

    /// Waits for an error naming the daemon when it does not become ready within `limit`.
    pub(crate) fn wait_ready(
        &mut self,
        what: &str,
        limit: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + limit;
        loop {
            self.check_running()?;
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: format!("{} ({what})", self.what),
                    waited: limit,
                    log: self.log.clone(),
                    tail: sys::tail(&self.log, 15),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_all(vec![(self, "KILL")], Duration::ZERO);
    }
}

/// Stops daemons: each gets its signal, then `grace` to exit, then SIGKILL; every process
/// they started that is still there afterwards gets SIGKILL too. Every daemon is waited for.
///
/// Returns what had to be forced, for the record.
pub(crate) fn stop_all(daemons: Vec<(&mut Daemon, &str)>, grace: Duration) -> Vec<String> {
    let mut notes = Vec::new();
    let mut daemons: Vec<(&mut Daemon, &str, Vec<ProcId>)> = daemons
        .into_iter()
        .filter(|(d, _)| !d.done)
        .map(|(d, sig)| {
            let tree = sys::descendants(d.pid());
            (d, sig, tree)
        })
        .collect();
    let mut by_signal: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for (d, sig, _) in &daemons {
        by_signal.entry(*sig).or_default().push(d.pid());
    }
    for (sig, pids) in by_signal {
        if sig == "KILL" {
            continue;
        }
        sys::signal(&pids, sig);
    }
    let deadline = Instant::now() + grace;
    let mut left: Vec<usize> = (0..daemons.len()).collect();
    while !left.is_empty() {
        left.retain(|&i| !matches!(daemons[i].0.child.try_wait(), Ok(Some(_))));
        if left.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for &i in &left {
        let (d, sig, _) = &mut daemons[i];
        if *sig != "KILL" {
            notes.push(format!("{} did not stop within {grace:?}: killed", d.what));
        }
        let _ = d.child.kill();
    }
    let mut stray = Vec::new();
    for (d, _, tree) in &mut daemons {
        let _ = d.child.wait();
        d.done = true;
        stray.extend(tree.iter().copied().filter(|p| sys::is_running(*p)));
    }
    if !stray.is_empty() {
        let pids: Vec<u32> = stray.iter().map(|p| p.pid).collect();
        sys::signal(&pids, "KILL");
        // They are not our children: wait until the kernel has taken them down.
        sys::wait_until(Duration::from_secs(2), Duration::from_millis(5), || {
            stray.iter().all(|p| !sys::is_running(*p))
        });
    }
    notes
}
