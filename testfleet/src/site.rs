//! The hosts of a fleet as tests see them: web servers, the deploy host's staging, proxies.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mwdeploy_core::ReleaseId;

use crate::error::Error;
use crate::haproxy::{self, ServerState, BACKEND};
use crate::http::{self, Page, MAIN_PAGE};
use crate::sys;

/// Where each server's nginx serves the opcache reset (to 127.0.0.1 only).
pub(crate) const OPCACHE_RESET_PATH: &str = "/__testfleet/opcache-reset";

/// What a web server and the deploy host's staging site have in common: a live tree served
/// by nginx through the site's own php-fpm.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) http_port: u16,
    pub(crate) live: PathBuf,
    pub(crate) releases: PathBuf,
    pub(crate) reload: Vec<String>,
    pub(crate) opcache_reset: Vec<String>,
}

impl Site {
    pub(crate) fn new(name: &str, dir: PathBuf, http_port: u16) -> Site {
        let reload = vec![dir.join("reload-php-fpm").to_string_lossy().into_owned()];
        let opcache_reset = [
            "curl",
            "--fail",
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--output",
            "/dev/null",
        ]
        .into_iter()
        .map(String::from)
        .chain([format!("http://127.0.0.1:{http_port}{OPCACHE_RESET_PATH}")])
        .collect();
        Site {
            name: name.to_string(),
            live: dir.join("mediawiki"),
            releases: dir.join("mediawiki-releases"),
            dir,
            http_port,
            reload,
            opcache_reset,
        }
    }

    /// The PHP file that empties the opcache (outside any tree: nginx serves it at
    /// [`OPCACHE_RESET_PATH`]).
    pub(crate) fn opcache_reset_php(&self) -> PathBuf {
        self.dir.join("opcache-reset.php")
    }

    pub(crate) fn fault_file(&self) -> PathBuf {
        self.dir.join("fault")
    }
    pub(crate) fn fpm_conf(&self) -> PathBuf {
        self.dir.join("php-fpm.conf")
    }
    pub(crate) fn fpm_log(&self) -> PathBuf {
        self.dir.join("php-fpm.log")
    }
    pub(crate) fn fpm_pid(&self) -> PathBuf {
        self.dir.join("php-fpm.pid")
    }
    pub(crate) fn fpm_socket(&self) -> PathBuf {
        self.dir.join("php-fpm.sock")
    }
    pub(crate) fn php_error_log(&self) -> PathBuf {
        self.dir.join("php-error.log")
    }

    fn canary_url(&self) -> String {
        format!("http://127.0.0.1:{}{MAIN_PAGE}", self.http_port)
    }

    fn page_within(&self, timeout: Duration) -> Result<Page, Error> {
        http::get(self.http_port, MAIN_PAGE, timeout)
            .map_err(|e| Error::io(format!("GET {} from {}", self.canary_url(), self.name), e))
    }

    fn served_stamp(&self) -> Result<String, Error> {
        let page = self.page_within(Duration::from_secs(5))?;
        if !page.is_good() {
            return Err(Error::Invalid(format!(
                "{} served a bad page (HTTP {}{}): {}",
                self.name,
                page.status,
                if page.is_mixed() {
                    ", mixed releases"
                } else {
                    ""
                },
                page.body.trim()
            )));
        }
        page.stamp()
            .map(str::to_string)
            .ok_or_else(|| Error::Invalid(format!("{} served a page without a stamp", self.name)))
    }

    fn live_release(&self) -> Option<ReleaseId> {
        let target = fs::read_link(&self.live).ok()?;
        ReleaseId::parse(target.file_name()?.to_str()?).ok()
    }

    fn reload(&self) -> Result<(), Error> {
        let (program, args) = self
            .reload
            .split_first()
            .ok_or_else(|| Error::Invalid("empty reload command".into()))?;
        sys::run(Command::new(program).args(args)).map(|_| ())
    }
}

/// Accessors shared by [`Server`] and [`Staging`] for their web site.
macro_rules! site_accessors {
    () => {
        /// The port its nginx `server` block listens on (127.0.0.1).
        pub fn http_port(&self) -> u16 {
            self.site.http_port
        }

        /// Its live path (`prod_path`): a real directory in the in-place layout, a symlink
        /// `mediawiki -> mediawiki-releases/<id>` in the release layout.
        pub fn live_path(&self) -> &Path {
            &self.site.live
        }

        /// Its releases directory, `<live path>-releases` (empty in the in-place layout).
        pub fn releases_dir(&self) -> &Path {
            &self.site.releases
        }

        /// The URL of its main page, as the canary requests it (send `Host: test.wikioasis.org`).
        pub fn canary_url(&self) -> String {
            self.site.canary_url()
        }

        /// The argv that reloads its php-fpm (graceful SIGUSR2, which also empties the
        /// opcache) and returns once it serves again: its `post_activate` hook.
        pub fn reload_command(&self) -> &[String] {
            &self.site.reload
        }

        /// The argv that empties its php-fpm's opcache without a reload (`opcache_reset()`
        /// through nginx, as cachetool's `opcache:reset` does through FastCGI): the other
        /// `post_activate` hook a fleet can use ([`PostActivate::OpcacheReset`]). With
        /// `$realpath_root` a new release is served anyway; in place the reset is what makes
        /// php-fpm read the changed files.
        ///
        /// [`PostActivate::OpcacheReset`]: crate::PostActivate::OpcacheReset
        pub fn opcache_reset_command(&self) -> &[String] {
            &self.site.opcache_reset
        }

        /// Runs [`reload_command`](Self::reload_command) here.
        ///
        /// # Errors
        ///
        /// php-fpm is not running, or did not come back within 15 s.
        pub fn reload(&self) -> Result<(), Error> {
            self.site.reload()
        }

        /// Its PHP error log (where `PHP Warning` lines go): for an error gate.
        pub fn php_error_log(&self) -> PathBuf {
            self.site.php_error_log()
        }

        /// Its main page, fetched from its nginx directly (not through a proxy), within 5 s.
        ///
        /// # Errors
        ///
        /// Nothing answered, or not within the time.
        pub fn page(&self) -> Result<Page, Error> {
            self.site.page_within(Duration::from_secs(5))
        }

        /// Its main page, fetched from its nginx directly, within `timeout`.
        ///
        /// # Errors
        ///
        /// Nothing answered, or not within the time.
        pub fn page_within(&self, timeout: Duration) -> Result<Page, Error> {
            self.site.page_within(timeout)
        }

        /// The release stamp it serves now.
        ///
        /// # Errors
        ///
        /// No answer, or a page that is not HTTP 200 with `wikioasis` and one stamp.
        pub fn served_stamp(&self) -> Result<String, Error> {
            self.site.served_stamp()
        }

        /// The release its live symlink points at (release layout); `None` for a real
        /// directory.
        pub fn live_release(&self) -> Option<ReleaseId> {
            self.site.live_release()
        }

        /// Its own directory: configs, sockets, pid files and logs of its daemons.
        pub fn dir(&self) -> &Path {
            &self.site.dir
        }
    };
}

/// One web server of the fleet: its own live tree, php-fpm, nginx `server` block and sshd.
///
/// Each is its own host as far as a deploy can tell: it is reached over ssh on its own port,
/// with its own host key.
#[derive(Debug, Clone)]
pub struct Server {
    pub(crate) site: Site,
    pub(crate) index: usize,
    pub(crate) ssh_port: u16,
}

impl Server {
    /// Its name, `mw1`..`mwN`: in the config and in the HAProxy backend.
    pub fn name(&self) -> &str {
        &self.site.name
    }

    /// Its index in [`Fleet::servers`](crate::Fleet::servers) (`mw1` is 0): what
    /// [`Fault`](crate::Fault) takes.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The port its sshd listens on (127.0.0.1).
    pub fn ssh_port(&self) -> u16 {
        self.ssh_port
    }

    pub(crate) fn host_key(&self) -> PathBuf {
        self.site.dir.join("ssh_host_ed25519_key")
    }
    /// The home of the account ssh sessions run as (`HOME` in them).
    pub fn home(&self) -> PathBuf {
        self.site.dir.join("home")
    }

    pub(crate) fn changed_host_key(&self) -> PathBuf {
        self.site.dir.join("ssh_host_ed25519_key.changed")
    }
    pub(crate) fn sshd_config(&self, changed_key: bool) -> PathBuf {
        self.site.dir.join(if changed_key {
            "sshd_config.changed"
        } else {
            "sshd_config"
        })
    }
    pub(crate) fn sshd_log(&self) -> PathBuf {
        self.site.dir.join("sshd.log")
    }

    site_accessors!();
}

/// The deploy host: the staging git checkout (`staging_path`) with its bare `origin`, and
/// the host's own web site (`staging.prod_path`) served by nginx and php-fpm for the
/// staging canary. No sshd: a deploy runs here.
#[derive(Debug, Clone)]
pub struct Staging {
    pub(crate) site: Site,
    pub(crate) path: PathBuf,
    pub(crate) origin: PathBuf,
}

impl Staging {
    /// The staging checkout (`staging_path`): a git work tree whose upstream is
    /// [`origin`](Self::origin).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bare repository staging pulls from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    site_accessors!();
}

/// One HAProxy process of the fleet: a frontend and the `mediawiki` backend with every
/// server, health-checked on the main page.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) dir: PathBuf,
    pub(crate) frontend_port: u16,
}

impl Proxy {
    /// Its name in the config, `lb1`..`lbP`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its index in [`Fleet::proxies`](crate::Fleet::proxies) (`lb1` is 0).
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its admin socket (runtime API at level admin).
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// The port its frontend listens on (127.0.0.1).
    pub fn frontend_port(&self) -> u16 {
        self.frontend_port
    }

    /// The main page's URL through this proxy.
    pub fn frontend_url(&self) -> String {
        format!("http://127.0.0.1:{}{MAIN_PAGE}", self.frontend_port)
    }

    /// Its directory: config and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn config_path(&self) -> PathBuf {
        self.dir.join("haproxy.cfg")
    }
    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("haproxy.log")
    }

    /// Sends one runtime API command (`show stat`, `disable server mediawiki/mw1`) and
    /// returns the answer as HAProxy wrote it (errors are text too: read it).
    ///
    /// # Errors
    ///
    /// The socket does not answer within 2 s.
    pub fn command(&self, command: &str) -> Result<String, Error> {
        haproxy::query(&self.admin_socket(), command, Duration::from_secs(2)).map_err(|e| {
            Error::io(
                format!("{} on {}'s admin socket", command.trim(), self.name),
                e,
            )
        })
    }

    /// Every server's state in the `mediawiki` backend (`show servers state`).
    ///
    /// # Errors
    ///
    /// No answer, or one that does not parse.
    pub fn server_states(&self) -> Result<Vec<ServerState>, Error> {
        let text = self.command(&format!("show servers state {BACKEND}"))?;
        haproxy::parse_servers_state(&text, BACKEND)
            .map_err(|e| Error::io(format!("reading show servers state from {}", self.name), e))
    }

    /// The main page through this proxy's frontend, within `timeout`.
    ///
    /// # Errors
    ///
    /// Nothing answered, or not within the time.
    pub fn page_within(&self, timeout: Duration) -> Result<Page, Error> {
        http::get(self.frontend_port, MAIN_PAGE, timeout)
            .map_err(|e| Error::io(format!("GET {}", self.frontend_url()), e))
    }

    /// Whether every server is UP with its last health check passed (`show stat`).
    pub(crate) fn all_up(&self, servers: usize) -> bool {
        let Ok(text) = self.command("show stat") else {
            return false;
        };
        let rows = haproxy::parse_show_stat(&text, BACKEND);
        rows.len() == servers
            && rows
                .iter()
                .all(|(_, status, check)| status == "UP" && check == "L7OK")
    }
}
