//! Faults a test injects into a running fleet, and takes away again.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::daemon::{stop_all, Daemon};
use crate::error::{Error, IoContext};
use crate::fleet::{Fleet, GRACE, READY};
use crate::site::{Proxy, Server};
use crate::sys;
use crate::tree;

/// A fault a test injects into a running fleet with [`Fleet::inject`] and takes away with
/// [`Fleet::clear`]. Servers and proxies are given by index (`mw1` and `lb1` are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Fault {
    /// The server's page answers HTTP 500 (the canary and the health checks fail).
    PageError(usize),
    /// The server's page does not answer while the fault lasts (60 s at most); requests
    /// in flight finish once it is cleared.
    PageHang(usize),
    /// The server's page logs a `PHP Warning` to its error log on each request and is
    /// otherwise fine (for an error-rate gate).
    PageWarning(usize),
    /// The server's php-fpm is stopped: nginx answers 502. Clearing starts a new one.
    PhpFpmDown(usize),
    /// The server's nginx `server` block is taken out (nginx reloaded): its port refuses
    /// connections; the other servers are not touched.
    WebServerDown(usize),
    /// The server's sshd is stopped and its ssh sessions killed: ssh is refused.
    SshDown(usize),
    /// The server's sshd comes back with a new host key: ssh with host key checking fails.
    SshHostKeyChanged(usize),
    /// Writes under the server's trees fail with EPERM (`chattr +i`, which binds root too):
    /// with a real live directory (in-place layout) the whole live tree; with a live
    /// symlink (release layout) the releases directory, so no new release can be made.
    /// Needs `chattr` (e2fsprogs) and a file system that supports it (ext4, xfs; tmpfs from
    /// Linux 6.0).
    DiskWriteFails(usize),
    /// The proxy is stopped: its frontend and admin socket are gone. Clearing starts it
    /// again, with runtime state (maintenance set through the socket) lost.
    ProxyDown(usize),
}

/// Faults.
impl Fleet {
    pub(crate) fn check_server(&self, i: usize) -> Result<&Server, Error> {
        self.servers.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "no server with index {i} (the fleet has {})",
                self.servers.len()
            ))
        })
    }

    pub(crate) fn check_proxy(&self, i: usize) -> Result<&Proxy, Error> {
        self.proxies.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "no proxy with index {i} (the fleet has {})",
                self.proxies.len()
            ))
        })
    }

    /// Injects a fault; it lasts until [`clear`](Self::clear). Returns once it is in effect
    /// (a stopped daemon has exited, a closed port refuses).
    ///
    /// # Errors
    ///
    /// A bad index, or the fault could not be set (the error says why).
    pub fn inject(&self, fault: Fault) -> Result<(), Error> {
        match fault {
            Fault::PageError(i) => self.set_page_fault(i, Some("500")),
            Fault::PageHang(i) => self.set_page_fault(i, Some("hang")),
            Fault::PageWarning(i) => self.set_page_fault(i, Some("warning")),
            Fault::PhpFpmDown(i) => {
                self.check_server(i)?;
                let d = self.lock().php_fpm[i].take();
                if let Some(mut d) = d {
                    stop_all(vec![(&mut d, "QUIT")], GRACE);
                }
                // A pid file left by a killed php-fpm would point the reload at a stranger.
                let _ = fs::remove_file(self.servers[i].site.fpm_pid());
                self.record_pids();
                Ok(())
            }
            Fault::WebServerDown(i) => {
                let s = self.check_server(i)?;
                self.reconfigure_nginx(|down| {
                    down.insert(i);
                })?;
                self.wait_or(
                    || !sys::port_open(s.http_port()),
                    &format!("{}'s web server: port closed", s.name()),
                    &self.nginx_dir().join("error.log"),
                )
            }
            Fault::SshDown(i) => {
                self.check_server(i)?;
                self.stop_sshd(i);
                Ok(())
            }
            Fault::SshHostKeyChanged(i) => {
                let s = self.check_server(i)?;
                let key = s.changed_host_key();
                if !key.exists() {
                    let (mut child, _) = self.keygen(&key, &format!("{} changed", s.name()))?;
                    let status = child.wait().context(|| "running ssh-keygen".to_string())?;
                    if !status.success() {
                        return Err(Error::Command {
                            command: "ssh-keygen".into(),
                            status: status.to_string(),
                            output: String::new(),
                        });
                    }
                }
                self.restart_sshd(i, true)
            }
            Fault::DiskWriteFails(i) => {
                let s = self.check_server(i)?;
                let chattr = sys::require("chattr", "e2fsprogs")?;
                // As the server is now: a live symlink means the release layout.
                let releases = fs::symlink_metadata(s.live_path())
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false);
                let mut cmd = Command::new(chattr);
                let target = if releases {
                    s.releases_dir().to_path_buf()
                } else {
                    cmd.arg("-R");
                    s.live_path().to_path_buf()
                };
                sys::run(cmd.arg("+i").arg(&target))?;
                self.lock().immutable.insert(i, target);
                Ok(())
            }
            Fault::ProxyDown(i) => {
                self.check_proxy(i)?;
                let d = self.lock().haproxy[i].take();
                if let Some(mut d) = d {
                    stop_all(vec![(&mut d, "TERM")], GRACE);
                }
                self.record_pids();
                Ok(())
            }
        }
    }

    /// Takes a fault away and waits until the part serves again (a restarted daemon
    /// answers on its port or socket). Clearing a fault that is not in force is not an
    /// error. Health checks take a moment to see a server back: [`wait_all_up`]
    /// waits for that.
    ///
    /// [`wait_all_up`]: Self::wait_all_up
    ///
    /// # Errors
    ///
    /// A bad index, or the part did not come back (with its log).
    pub fn clear(&self, fault: Fault) -> Result<(), Error> {
        match fault {
            Fault::PageError(i) | Fault::PageHang(i) | Fault::PageWarning(i) => {
                self.set_page_fault(i, None)
            }
            Fault::PhpFpmDown(i) => {
                self.check_server(i)?;
                if self.lock().php_fpm[i].is_some() {
                    return Ok(());
                }
                let d = self.spawn_php_fpm(i)?;
                self.lock().php_fpm[i] = Some(d);
                self.record_pids();
                let site = &self.servers[i].site;
                let sock = site.fpm_socket();
                let mut running = self.lock();
                let d = running.php_fpm[i].as_mut().expect("just started");
                d.wait_ready("its socket", READY, || sock.exists())
            }
            Fault::WebServerDown(i) => {
                let s = self.check_server(i)?;
                self.reconfigure_nginx(|down| {
                    down.remove(&i);
                })?;
                self.wait_or(
                    || sys::port_open(s.http_port()),
                    &format!("{}'s web server: port open", s.name()),
                    &self.nginx_dir().join("error.log"),
                )
            }
            Fault::SshDown(i) => {
                self.check_server(i)?;
                let running = self.lock().sshd[i].is_some();
                if running {
                    return Ok(());
                }
                let changed = self.lock().key_changed.contains(&i);
                self.restart_sshd(i, changed)
            }
            Fault::SshHostKeyChanged(i) => {
                self.check_server(i)?;
                if !self.lock().key_changed.contains(&i) {
                    return Ok(());
                }
                self.restart_sshd(i, false)
            }
            Fault::DiskWriteFails(i) => {
                self.check_server(i)?;
                let Some(target) = self.lock().immutable.get(&i).cloned() else {
                    return Ok(());
                };
                let chattr = sys::require("chattr", "e2fsprogs")?;
                sys::run(Command::new(chattr).args(["-R", "-i"]).arg(&target))?;
                self.lock().immutable.remove(&i);
                Ok(())
            }
            Fault::ProxyDown(i) => {
                self.check_proxy(i)?;
                if self.lock().haproxy[i].is_some() {
                    return Ok(());
                }
                let d = self.spawn_haproxy(i)?;
                self.lock().haproxy[i] = Some(d);
                self.record_pids();
                // Other faults may keep servers DOWN: `wait_all_up` waits for the checks.
                self.wait_proxy_ready(i, false)
            }
        }
    }

    /// Reloads proxy `i` as `systemctl reload haproxy` does (SIGUSR2 to the master: a new
    /// worker takes over the sockets, the old one finishes). Runtime state set through the
    /// admin socket (maintenance, drain, weights) is lost. Returns once the new worker
    /// answers on the admin socket.
    ///
    /// # Errors
    ///
    /// A bad index, a stopped proxy, or no new worker within 20 s.
    pub fn reload_proxy(&self, i: usize) -> Result<(), Error> {
        let p = self.check_proxy(i)?;
        let worker = |p: &Proxy| -> Option<String> {
            p.command("show info").ok().and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("Pid:").map(|v| v.trim().to_string()))
            })
        };
        let before = worker(p)
            .ok_or_else(|| Error::Invalid(format!("{} does not answer: is it running?", p.name)))?;
        let master = self
            .lock()
            .haproxy
            .get(i)
            .and_then(|d| d.as_ref().map(Daemon::pid))
            .ok_or_else(|| Error::Invalid(format!("{} is not running", p.name)))?;
        sys::signal(&[master], "USR2");
        self.wait_or(
            || worker(p).is_some_and(|w| w != before),
            &format!("{}: a new worker after the reload", p.name),
            &p.log(),
        )
    }

    fn set_page_fault(&self, i: usize, mode: Option<&str>) -> Result<(), Error> {
        let s = self.check_server(i)?;
        let file = s.site.fault_file();
        match mode {
            Some(mode) => tree::replace_file(&file, format!("{mode}\n").as_bytes()),
            None => match fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io(format!("removing {}", file.display()), e))
                }
                _ => Ok(()),
            },
        }
    }

    fn reconfigure_nginx(&self, change: impl FnOnce(&mut BTreeSet<usize>)) -> Result<(), Error> {
        let mut running = self.lock();
        change(&mut running.web_down);
        let conf = self.nginx_conf(&running.web_down);
        let path = self.nginx_dir().join("nginx.conf");
        tree::replace_file(&path, conf.as_bytes())?;
        let nginx = running
            .nginx
            .as_mut()
            .ok_or_else(|| Error::Invalid("nginx is not running".into()))?;
        nginx.check_running()?;
        sys::signal(&[nginx.pid()], "HUP");
        Ok(())
    }

    fn stop_sshd(&self, i: usize) {
        let d = self.lock().sshd[i].take();
        if let Some(mut d) = d {
            // Its sessions (multiplexed connections included) go with it, as when a host
            // dies. Frozen first, the whole tree: a process forked after the tree was read
            // would live on with the connection.
            let _ = sys::freeze_tree(d.pid());
            stop_all(vec![(&mut d, "KILL")], Duration::ZERO);
            // Anything still holding the port's server side escaped the tree (reparented
            // mid-kill): it goes too, or the "cut" connection would keep working.
            let port = self.servers[i].ssh_port;
            sys::wait_until(Duration::from_secs(2), Duration::from_millis(5), || {
                let left: Vec<u32> = sys::socket_owners(port)
                    .into_iter()
                    .filter(|p| sys::comm(*p).is_some_and(|c| c.starts_with("sshd")))
                    .collect();
                if !left.is_empty() {
                    sys::signal(&left, "KILL");
                }
                left.is_empty()
            });
        }
        self.record_pids();
    }

    fn restart_sshd(&self, i: usize, changed_key: bool) -> Result<(), Error> {
        self.stop_sshd(i);
        // The port is free again once the listener is gone.
        let port = self.servers[i].ssh_port;
        sys::wait_until(READY, Duration::from_millis(10), || !sys::port_open(port));
        let d = self.spawn_sshd(i, changed_key)?;
        let mut running = self.lock();
        if changed_key {
            running.key_changed.insert(i);
        } else {
            running.key_changed.remove(&i);
        }
        let slot = &mut running.sshd[i];
        *slot = Some(d);
        let result =
            slot.as_mut()
                .expect("just started")
                .wait_ready("greeting on its port", READY, || sys::ssh_greets(port));
        drop(running);
        self.record_pids();
        result
    }

    fn wait_or(
        &self,
        mut ready: impl FnMut() -> bool,
        what: &str,
        log: &Path,
    ) -> Result<(), Error> {
        if sys::wait_until(READY, Duration::from_millis(10), &mut ready) {
            Ok(())
        } else {
            Err(Error::NotReady {
                what: what.to_string(),
                waited: READY,
                log: log.to_path_buf(),
                tail: sys::tail(log, 15),
            })
        }
    }
}
