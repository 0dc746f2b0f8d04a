//! The fleet: building it, starting every part, accessors, observers, teardown.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use mwdeploy_core::{Layout, ReleaseId};

use crate::conf::{php_fpm_conf, reload_script, FASTCGI_PARAMS, OPCACHE_RESET_PHP};
use crate::daemon::{stop_all, Daemon};
use crate::error::{Error, IoContext};
use crate::haproxy;
use crate::observe::{LoadGenerator, LoadOptions, PoolMonitor};
use crate::site::{Proxy, Server, Site, Staging};
use crate::sys::{self, Port, Programs};
use crate::tree::{self, TreeSpec};
use crate::webhook::WebhookReceiver;

/// How long a part gets to come up before `start` gives up with its log.
pub(crate) const READY: Duration = Duration::from_secs(20);
/// How long daemons get to exit on teardown before SIGKILL.
pub(crate) const GRACE: Duration = Duration::from_secs(3);

/// How nginx tells php-fpm where the code is, in the release layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DocumentRoot {
    /// `$realpath_root`: nginx resolves the live symlink on every request, so PHP sees the
    /// release's own path (production's setting; the default).
    #[default]
    Realpath,
    /// `$document_root`: PHP sees the path through the symlink, and with
    /// `validate_timestamps=0` keeps serving the old release until php-fpm is reloaded.
    Symlinked,
}

/// What each server's (and staging's) `post_activate` hook does in the fleet's config, so
/// that php-fpm serves the code just switched to or copied in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PostActivate {
    /// A graceful php-fpm reload that returns once php-fpm is ready again (the default).
    #[default]
    Reload,
    /// `opcache_reset()` in the running php-fpm: no worker restarts, so it is quicker.
    OpcacheReset,
}

/// Builds a [`Fleet`]; [`start`](Self::start) brings it up.
#[derive(Debug, Clone)]
pub struct FleetBuilder {
    servers: usize,
    proxies: usize,
    files: usize,
    megabytes: u64,
    layout: Layout,
    versions: Vec<String>,
    document_root: DocumentRoot,
    post_activate: PostActivate,
}

impl Default for FleetBuilder {
    fn default() -> Self {
        FleetBuilder {
            servers: 4,
            proxies: 2,
            files: 200,
            megabytes: 1,
            layout: Layout::Inplace,
            versions: vec!["1.45".to_string()],
            document_root: DocumentRoot::Realpath,
            post_activate: PostActivate::Reload,
        }
    }
}

impl FleetBuilder {
    /// Web servers `mw1..mwN` (default 4, at least 1).
    pub fn servers(mut self, n: usize) -> Self {
        self.servers = n;
        self
    }

    /// HAProxy processes `lb1..lbP` (default 2; 0 for none).
    pub fn proxies(mut self, p: usize) -> Self {
        self.proxies = p;
        self
    }

    /// The staging tree's size: about `files` files (never fewer than the fixed ones: 16
    /// with one version) holding about `megabytes` MiB (default 200 files, 1 MiB).
    pub fn tree(mut self, files: usize, megabytes: u64) -> Self {
        self.files = files;
        self.megabytes = megabytes;
        self
    }

    /// How each server's live tree starts: a real directory ([`Layout::Inplace`], the
    /// default) or a symlink to a first release ([`Layout::Releases`]).
    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The MediaWiki versions under `versions/` (default `["1.45"]`); the page is served by
    /// the last one.
    pub fn versions<S: AsRef<str>>(mut self, versions: &[S]) -> Self {
        self.versions = versions.iter().map(|v| v.as_ref().to_string()).collect();
        self
    }

    /// What nginx passes to php-fpm as the script's path (default
    /// [`DocumentRoot::Realpath`]).
    pub fn document_root(mut self, root: DocumentRoot) -> Self {
        self.document_root = root;
        self
    }

    /// The `post_activate` hook of the fleet's config (default [`PostActivate::Reload`]).
    pub fn post_activate(mut self, hook: PostActivate) -> Self {
        self.post_activate = hook;
        self
    }

    /// Starts the fleet: generates the tree and its repositories, starts every daemon and
    /// waits until every page answers and every proxy sees every server UP.
    ///
    /// # Errors
    ///
    /// A missing program ([`Error::MissingPrograms`], naming `scripts/install-deps.sh`), a
    /// part that does not come up (with the end of its log), bad builder values.
    pub fn start(self) -> Result<Fleet, Error> {
        Fleet::start(self)
    }
}

/// The daemons of a running fleet and the faults in force.
#[derive(Debug, Default)]
pub(crate) struct Running {
    pub(crate) nginx: Option<Daemon>,
    /// Servers whose nginx block is taken out.
    pub(crate) web_down: BTreeSet<usize>,
    /// php-fpm of each server, then of staging (last).
    pub(crate) php_fpm: Vec<Option<Daemon>>,
    pub(crate) sshd: Vec<Option<Daemon>>,
    /// Servers whose sshd runs with the changed host key.
    pub(crate) key_changed: BTreeSet<usize>,
    pub(crate) haproxy: Vec<Option<Daemon>>,
    /// Per server, the path made immutable, to undo before removing the fleet.
    pub(crate) immutable: BTreeMap<usize, PathBuf>,
}

impl Running {
    pub(crate) fn daemons(&self) -> impl Iterator<Item = &Daemon> {
        self.nginx
            .iter()
            .chain(self.php_fpm.iter().flatten())
            .chain(self.sshd.iter().flatten())
            .chain(self.haproxy.iter().flatten())
    }
}

/// Stops the fleet's daemons and removes its directory if the test process dies without
/// dropping the fleet (SIGKILL, Ctrl+C): it waits for the end of its stdin, the write end
/// of which only the test process holds.
const WATCHDOG: &str = r#"trap '' INT HUP
root=$1
while read -r _; do :; done
[ -d "$root" ] || exit 0
if [ -s "$root/pids" ]; then
    pids=$(cat "$root/pids")
    kill -s TERM $pids 2>/dev/null
    sleep 1
    kill -s KILL $pids 2>/dev/null
fi
command -v chattr >/dev/null 2>&1 && chattr -R -i "$root" 2>/dev/null
rm -rf "$root"
"#;

static FLEETS: AtomicU64 = AtomicU64::new(0);

/// A fleet of MediaWiki web servers on loopback, behind HAProxy: see the [crate docs](crate).
///
/// Dropping it (also while a test panics) stops every process it started, waits for each,
/// and removes its directory.
#[derive(Debug)]
pub struct Fleet {
    pub(crate) root: PathBuf,
    pub(crate) layout: Layout,
    pub(crate) document_root: DocumentRoot,
    pub(crate) post_activate: PostActivate,
    pub(crate) programs: Programs,
    pub(crate) servers: Vec<Server>,
    pub(crate) staging: Staging,
    pub(crate) proxies: Vec<Proxy>,
    pub(crate) webhooks: WebhookReceiver,
    pub(crate) running: Mutex<Running>,
    /// Reserved ports: back to the pool when the fleet is gone.
    pub(crate) ports: Mutex<Vec<Port>>,
    pub(crate) commits: AtomicU64,
    pub(crate) watchdog: Option<Child>,
    pub(crate) started_in: Duration,
    pub(crate) torn_down: bool,
}

impl Fleet {
    /// A builder with the defaults: 4 servers, 2 proxies, 200 files in 1 MiB, in-place
    /// layout, `$realpath_root`.
    pub fn builder() -> FleetBuilder {
        FleetBuilder::default()
    }

    fn start(b: FleetBuilder) -> Result<Fleet, Error> {
        let began = Instant::now();
        if b.servers == 0 || b.servers > 500 {
            return Err(Error::Invalid(format!("servers: {} (1 to 500)", b.servers)));
        }
        if b.proxies > 50 {
            return Err(Error::Invalid(format!("proxies: {} (0 to 50)", b.proxies)));
        }
        if b.versions.is_empty() {
            return Err(Error::Invalid("versions: at least one".into()));
        }
        for v in &b.versions {
            tree::check_stamp(v).map_err(|_| Error::Invalid(format!("bad version {v:?}")))?;
        }
        let programs = Programs::find()?;

        let root = std::env::temp_dir().join(format!(
            "testfleet-{}-{}-{}",
            std::process::id(),
            FLEETS.fetch_add(1, Ordering::SeqCst),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_micros())
                .unwrap_or(0)
        ));
        // Unix socket paths are limited to 107 bytes.
        let longest = root.join("servers/mw000/php-fpm.sock");
        if longest.as_os_str().len() > 100 {
            return Err(Error::Invalid(format!(
                "the temp dir {} is too long for unix sockets; set TMPDIR to a short path",
                std::env::temp_dir().display()
            )));
        }
        fs::create_dir(&root).context(|| format!("creating {}", root.display()))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .context(|| format!("setting the mode of {}", root.display()))?;

        let n = b.servers;
        let ports = match sys::reserve_ports(2 * n + 1 + b.proxies) {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        let port = |i: usize| ports[i].get();
        let servers: Vec<Server> = (0..n)
            .map(|i| Server {
                site: Site::new(
                    &format!("mw{}", i + 1),
                    root.join(format!("servers/mw{}", i + 1)),
                    port(i),
                ),
                index: i,
                ssh_port: port(n + i),
            })
            .collect();
        let staging = Staging {
            site: Site::new("staging", root.join("deploy-host"), port(2 * n)),
            path: root.join("staging"),
            origin: root.join("origin.git"),
        };
        let proxies: Vec<Proxy> = (0..b.proxies)
            .map(|i| Proxy {
                name: format!("lb{}", i + 1),
                index: i,
                dir: root.join(format!("haproxy/{}", i + 1)),
                frontend_port: port(2 * n + 1 + i),
            })
            .collect();
        let webhooks = match WebhookReceiver::start() {
            Ok(w) => w,
            Err(e) => {
                let _ = fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        let mut fleet = Fleet {
            root,
            layout: b.layout,
            document_root: b.document_root,
            post_activate: b.post_activate,
            programs,
            servers,
            staging,
            proxies,
            webhooks,
            running: Mutex::new(Running::default()),
            ports: Mutex::new(ports),
            commits: AtomicU64::new(1),
            watchdog: None,
            started_in: Duration::ZERO,
            torn_down: false,
        };
        // From here on, an error drops the fleet, which tears down what was started.
        fleet.boot(&b)?;
        fleet.started_in = began.elapsed();
        Ok(fleet)
    }

    fn boot(&mut self, b: &FleetBuilder) -> Result<(), Error> {
        self.watchdog = Some(
            Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("testfleet-watchdog")
                .arg(&self.root)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context(|| "starting the fleet's watchdog".to_string())?,
        );
        for dir in [self.keys_dir(), self.nginx_dir(), self.state_dir()] {
            fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        }
        for p in &self.proxies {
            fs::create_dir_all(&p.dir).context(|| format!("creating {}", p.dir.display()))?;
        }
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").context(|| "creating /run/sshd".to_string())?;

        // Keys are made while the tree is generated.
        let mut keygens = vec![self.keygen(&self.client_key(), "testfleet client")?];
        for s in &self.servers {
            fs::create_dir_all(&s.site.dir)
                .context(|| format!("creating {}", s.site.dir.display()))?;
            keygens.push(self.keygen(&s.host_key(), s.name())?);
        }
        let spec = TreeSpec {
            files: b.files,
            megabytes: b.megabytes,
            versions: b.versions.clone(),
        };
        // The repositories and the sites' copies only read the generated work tree: they
        // are made at the same time.
        let tree_result = tree::generate(&self.staging.path, &spec).and_then(|_| {
            std::thread::scope(|scope| {
                let git = scope.spawn(|| {
                    tree::init_repos(&self.programs.git, &self.staging.path, &self.staging.origin)
                });
                let copies = self.copy_initial_trees();
                let git = git
                    .join()
                    .unwrap_or_else(|_| Err(Error::Invalid("the git thread panicked".into())));
                copies.and(git.map(|_| ()))
            })
        });
        let mut keygen_error = None;
        for (mut child, what) in keygens {
            let status = child.wait();
            if !matches!(status, Ok(s) if s.success()) && keygen_error.is_none() {
                keygen_error = Some(Error::Command {
                    command: format!("ssh-keygen for {what}"),
                    status: format!("{status:?}"),
                    output: String::new(),
                });
            }
        }
        tree_result?;
        if let Some(e) = keygen_error {
            return Err(e);
        }
        self.write_known_hosts()?;
        self.write_configs()?;

        // The daemons: php-fpm and sshd per server, one nginx, then the proxies.
        for i in 0..=self.servers.len() {
            let d = self.spawn_php_fpm(i)?;
            self.lock().php_fpm.push(Some(d));
        }
        for i in 0..self.servers.len() {
            let d = self.spawn_sshd(i, false)?;
            self.lock().sshd.push(Some(d));
        }
        let d = self.spawn_nginx()?;
        self.lock().nginx = Some(d);
        self.record_pids();
        self.wait_sites_ready()?;
        for i in 0..self.proxies.len() {
            let d = self.spawn_haproxy(i)?;
            self.lock().haproxy.push(Some(d));
            self.record_pids();
        }
        for i in 0..self.proxies.len() {
            self.wait_proxy_ready(i, true)?;
        }
        self.record_pids();
        Ok(())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Running> {
        // A panic while holding the lock leaves consistent data: keep going.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub(crate) fn nginx_dir(&self) -> PathBuf {
        self.root.join("nginx")
    }

    pub(crate) fn keygen(&self, path: &Path, comment: &str) -> Result<(Child, String), Error> {
        let child = Command::new(&self.programs.ssh_keygen)
            .args(["-t", "ed25519", "-N", "", "-q", "-C", comment, "-f"])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context(|| format!("running ssh-keygen for {comment}"))?;
        Ok((child, comment.to_string()))
    }

    /// Each site's live tree starts as a copy of the staging tree at its first commit.
    fn copy_initial_trees(&self) -> Result<(), Error> {
        let release = ReleaseId::at(SystemTime::now(), "initial")
            .map_err(|e| Error::Invalid(format!("initial release id: {e}")))?;
        let sites: Vec<&Site> = self
            .servers
            .iter()
            .map(|s| &s.site)
            .chain([&self.staging.site])
            .collect();
        tree::parallel(&sites, |site| self.copy_initial_tree(site, &release))
    }

    fn copy_initial_tree(&self, site: &Site, release: &ReleaseId) -> Result<(), Error> {
        fs::create_dir_all(&site.releases)
            .context(|| format!("creating {}", site.releases.display()))?;
        match self.layout {
            Layout::Releases => {
                tree::copy_tree(&self.staging.path, &site.releases.join(release.as_str()))?;
                let target = PathBuf::from("mediawiki-releases").join(release.as_str());
                std::os::unix::fs::symlink(&target, &site.live)
                    .context(|| format!("linking {}", site.live.display()))
            }
            _ => tree::copy_tree(&self.staging.path, &site.live),
        }
    }

    fn write_known_hosts(&self) -> Result<(), Error> {
        let mut text = String::new();
        for s in &self.servers {
            let key = s.host_key().with_extension("pub");
            let public =
                fs::read_to_string(&key).context(|| format!("reading {}", key.display()))?;
            let mut parts = public.split_whitespace();
            let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
                return Err(Error::Invalid(format!(
                    "bad public key in {}",
                    key.display()
                )));
            };
            text.push_str(&format!("[127.0.0.1]:{} {kind} {blob}\n", s.ssh_port));
        }
        let path = self.known_hosts();
        fs::write(&path, text).context(|| format!("writing {}", path.display()))
    }

    fn write_configs(&self) -> Result<(), Error> {
        let write = |path: PathBuf, text: String| {
            fs::write(&path, text).context(|| format!("writing {}", path.display()))
        };
        for site in self.sites() {
            write(site.fpm_conf(), php_fpm_conf(site))?;
            // As on a server: the PHP error log exists, empty, before the first error.
            write(site.php_error_log(), String::new())?;
            let script = site.dir.join("reload-php-fpm");
            write(script.clone(), reload_script(site))?;
            write(site.opcache_reset_php(), OPCACHE_RESET_PHP.to_string())?;
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755))
                .context(|| format!("setting the mode of {}", script.display()))?;
        }
        for s in &self.servers {
            fs::create_dir_all(s.home()).context(|| format!("creating {}", s.home().display()))?;
            write(s.sshd_config(false), self.sshd_conf(s, &s.host_key()))?;
            write(
                s.sshd_config(true),
                self.sshd_conf(s, &s.changed_host_key()),
            )?;
        }
        write(
            self.nginx_dir().join("fastcgi.conf"),
            FASTCGI_PARAMS.to_string(),
        )?;
        write(
            self.nginx_dir().join("nginx.conf"),
            self.nginx_conf(&BTreeSet::new()),
        )?;
        let backend: Vec<(String, u16)> = self
            .servers
            .iter()
            .map(|s| (s.name().to_string(), s.http_port()))
            .collect();
        for p in &self.proxies {
            write(
                p.config_path(),
                haproxy::config(&p.admin_socket(), p.frontend_port, &backend),
            )?;
        }
        Ok(())
    }

    pub(crate) fn sites(&self) -> impl Iterator<Item = &Site> {
        self.servers
            .iter()
            .map(|s| &s.site)
            .chain([&self.staging.site])
    }

    /// Site `i`: server `i`, or staging for `i == servers.len()`.
    pub(crate) fn site(&self, i: usize) -> &Site {
        self.servers
            .get(i)
            .map(|s| &s.site)
            .unwrap_or(&self.staging.site)
    }

    pub(crate) fn spawn_php_fpm(&self, i: usize) -> Result<Daemon, Error> {
        let site = self.site(i);
        let _ = fs::remove_file(site.fpm_socket());
        let mut cmd = Command::new(&self.programs.php_fpm);
        // -R: allowed to run as root; -F: in the foreground, our child. Opcache settings
        // are also given on the command line: some are not settable per pool.
        // file_update_protection=0: opcache caches a file written a moment ago at once.
        // With production's 2 s, whether a just-generated or just-deployed file gets cached
        // would depend on the test's timing (a file younger than 2 s is compiled on every
        // request, so it is never "stale").
        cmd.args(["-F", "-R", "-y"]).arg(site.fpm_conf()).args([
            "-d",
            "opcache.enable=1",
            "-d",
            "opcache.validate_timestamps=0",
            "-d",
            "opcache.file_update_protection=0",
            "-d",
            "opcache.memory_consumption=32",
            "-d",
            "opcache.interned_strings_buffer=4",
        ]);
        // What it prints before it opens its error_log goes to the same file.
        Daemon::spawn(format!("php-fpm of {}", site.name), cmd, &site.fpm_log())
    }

    pub(crate) fn spawn_sshd(&self, i: usize, changed_key: bool) -> Result<Daemon, Error> {
        let s = &self.servers[i];
        self.release_port(s.ssh_port);
        let mut cmd = Command::new(&self.programs.sshd);
        cmd.args(["-D", "-e", "-f"]).arg(s.sshd_config(changed_key));
        Daemon::spawn(format!("sshd of {}", s.name()), cmd, &s.sshd_log())
    }

    pub(crate) fn spawn_nginx(&self) -> Result<Daemon, Error> {
        let dir = self.nginx_dir();
        fs::create_dir_all(dir.join("tmp"))
            .context(|| format!("creating {}/tmp", dir.display()))?;
        for s in self.sites() {
            self.release_port(s.http_port);
        }
        let mut cmd = Command::new(&self.programs.nginx);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"));
        Daemon::spawn("nginx".to_string(), cmd, &dir.join("error.log"))
    }

    pub(crate) fn spawn_haproxy(&self, i: usize) -> Result<Daemon, Error> {
        let p = &self.proxies[i];
        self.release_port(p.frontend_port);
        let _ = fs::remove_file(p.admin_socket());
        let mut cmd = Command::new(&self.programs.haproxy);
        // -W: master-worker, so a reload (SIGUSR2) is HAProxy's own seamless reload.
        cmd.args(["-W", "-db", "-f"]).arg(p.config_path());
        Daemon::spawn(format!("haproxy {}", p.name), cmd, &p.log())
    }

    pub(crate) fn release_port(&self, port: u16) {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = ports.iter_mut().find(|p| p.get() == port) {
            p.release();
        }
    }

    /// Waits until every sshd greets and every site serves a good page.
    fn wait_sites_ready(&self) -> Result<(), Error> {
        let mut running = self.lock();
        let Running {
            sshd,
            nginx,
            php_fpm,
            ..
        } = &mut *running;
        for (i, d) in sshd.iter_mut().enumerate() {
            if let Some(d) = d {
                let port = self.servers[i].ssh_port;
                d.wait_ready("greeting on its port", READY, || sys::ssh_greets(port))?;
            }
        }
        for (i, site) in self.sites().enumerate() {
            let fpm = php_fpm.get_mut(i).and_then(Option::as_mut);
            if let Some(fpm) = fpm {
                let sock = site.fpm_socket();
                fpm.wait_ready("its socket", READY, || sock.exists())?;
            }
            if let Some(nginx) = nginx.as_mut() {
                let port = site.http_port;
                nginx.wait_ready(&format!("serving {}'s page", site.name), READY, || {
                    crate::http::get(port, crate::http::MAIN_PAGE, Duration::from_secs(2))
                        .map(|p| p.is_good())
                        .unwrap_or(false)
                })?;
            }
        }
        Ok(())
    }

    /// Waits until proxy `i` answers on its socket and (when `checks`) sees every server UP
    /// with a passed health check.
    pub(crate) fn wait_proxy_ready(&self, i: usize, checks: bool) -> Result<(), Error> {
        let p = &self.proxies[i];
        let n = self.servers.len();
        let mut running = self.lock();
        let Some(d) = running.haproxy.get_mut(i).and_then(Option::as_mut) else {
            return Err(Error::Invalid(format!("{} is not running", p.name)));
        };
        d.wait_ready("answering on its admin socket", READY, || {
            p.command("show info").is_ok() && sys::port_open(p.frontend_port)
        })?;
        if checks {
            d.wait_ready("seeing every server UP", READY, || p.all_up(n))?;
        }
        Ok(())
    }

    /// Writes the pids of every daemon for the watchdog.
    pub(crate) fn record_pids(&self) {
        let pids: Vec<String> = self.lock().daemons().map(|d| d.pid().to_string()).collect();
        let path = self.root.join("pids");
        let tmp = self.root.join("pids.tmp");
        if fs::write(&tmp, pids.join(" ") + "\n").is_ok() {
            let _ = fs::rename(&tmp, &path);
        }
    }
}

/// Accessors.
impl Fleet {
    /// The web servers, `mw1` first.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name() == name)
    }

    /// The deploy host: staging checkout, its origin, its own web site.
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// The HAProxy processes, `lb1` first.
    pub fn proxies(&self) -> &[Proxy] {
        &self.proxies
    }

    /// The layout the live trees started in.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The fleet's directory (removed on drop).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A state directory for mwdeploy (journal, lock), inside the fleet's directory.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The ssh user on every server: `root`.
    pub fn ssh_user(&self) -> &str {
        "root"
    }

    /// The client's private key, trusted by every server's sshd.
    pub fn client_key(&self) -> PathBuf {
        self.keys_dir().join("id_ed25519")
    }

    /// A `known_hosts` with every server's host key (`[127.0.0.1]:PORT ...`).
    pub fn known_hosts(&self) -> PathBuf {
        self.keys_dir().join("known_hosts")
    }

    /// The ssh options a client needs for this fleet, host key checking on:
    /// `UserKnownHostsFile=<known_hosts>`, `StrictHostKeyChecking=yes`,
    /// `IdentitiesOnly=yes`.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "StrictHostKeyChecking=yes".to_string(),
            "IdentitiesOnly=yes".to_string(),
        ]
    }

    /// An `ssh` command to `server`, ready for `.arg("--").args(remote argv)`: port, key,
    /// `BatchMode=yes` and [`ssh_options`](Self::ssh_options), then `root@127.0.0.1`.
    pub fn ssh(&self, server: &Server) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-p")
            .arg(server.ssh_port.to_string())
            .arg("-i")
            .arg(self.client_key())
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]);
        for o in self.ssh_options() {
            cmd.arg("-o").arg(o);
        }
        cmd.arg(format!("{}@127.0.0.1", self.ssh_user()));
        cmd
    }

    /// The webhook receiver `write_config` points the webhooks at.
    pub fn webhooks(&self) -> &WebhookReceiver {
        &self.webhooks
    }

    /// How long [`FleetBuilder::start`] took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Every process the fleet runs now: daemons, their workers, ssh sessions.
    pub fn pids(&self) -> Vec<u32> {
        let running = self.lock();
        let mut pids: Vec<u32> = running
            .daemons()
            .flat_map(|d| d.tree())
            .map(|p| p.pid)
            .collect();
        drop(running);
        if let Some(w) = &self.watchdog {
            pids.push(w.id());
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Every TCP port the fleet listens on (web servers, sshds, frontends, webhooks).
    pub fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.sites().map(|s| s.http_port).collect();
        ports.extend(self.servers.iter().map(|s| s.ssh_port));
        ports.extend(self.proxies.iter().map(|p| p.frontend_port));
        ports.push(self.webhooks.port());
        ports
    }

    /// Commits `files` (paths relative to the tree, contents) to `origin`'s `main`, as a
    /// developer's push would: `git pull` in staging then brings them. Returns the commit id.
    ///
    /// Commits are deterministic: the same changes in the same order give the same ids.
    ///
    /// # Errors
    ///
    /// A bad path (absolute, `..`), or git failing.
    pub fn push_to_origin(&self, message: &str, files: &[(&str, &[u8])]) -> Result<String, Error> {
        let files: Vec<(String, Vec<u8>)> = files
            .iter()
            .map(|(p, c)| (p.to_string(), c.to_vec()))
            .collect();
        let n = self.commits.fetch_add(1, Ordering::SeqCst);
        tree::commit_to_bare(
            &self.programs.git,
            &self.staging.origin,
            &self.root.join(format!("scratch-{n}")),
            n,
            message,
            &files,
        )
    }

    /// Pushes a commit to `origin` that sets the release stamp to `stamp` in both stamp
    /// files of every version: after a pull and a deploy, pages show `stamp`.
    ///
    /// # Errors
    ///
    /// A bad stamp (use `[A-Za-z0-9._-]`, at most 64), or git failing.
    pub fn push_stamp(&self, stamp: &str) -> Result<String, Error> {
        tree::check_stamp(stamp)?;
        let files = tree::stamp_files(&self.staging.path, stamp)?;
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_bytes()))
            .collect();
        self.push_to_origin(&format!("Set the release stamp to {stamp}"), &refs)
    }

    /// Waits until every running proxy sees every server UP with a passed health check.
    ///
    /// # Errors
    ///
    /// Not within `limit`: the error says which proxy.
    pub fn wait_all_up(&self, limit: Duration) -> Result<(), Error> {
        let n = self.servers.len();
        let running: Vec<usize> = {
            let r = self.lock();
            (0..self.proxies.len())
                .filter(|&i| r.haproxy.get(i).is_some_and(Option::is_some))
                .collect()
        };
        for i in running {
            let p = &self.proxies[i];
            if !sys::wait_until(limit, Duration::from_millis(20), || p.all_up(n)) {
                return Err(Error::NotReady {
                    what: format!("{}: every server UP", p.name),
                    waited: limit,
                    log: p.log(),
                    tail: p.command("show stat").unwrap_or_default(),
                });
            }
        }
        Ok(())
    }
}

/// Observers.
impl Fleet {
    /// Starts a load through every proxy's frontend, in turn.
    ///
    /// # Errors
    ///
    /// The fleet has no proxies.
    pub fn start_load(&self, options: LoadOptions) -> Result<LoadGenerator, Error> {
        if self.proxies.is_empty() {
            return Err(Error::Invalid(
                "a load through the proxies needs proxies".into(),
            ));
        }
        let targets = self
            .proxies
            .iter()
            .map(|p| (p.name().to_string(), p.frontend_port))
            .collect();
        Ok(LoadGenerator::start(targets, options))
    }

    /// Starts a load straight at server `i`'s nginx, bypassing the proxies.
    ///
    /// # Errors
    ///
    /// A bad index.
    pub fn start_load_on(&self, i: usize, options: LoadOptions) -> Result<LoadGenerator, Error> {
        let s = self.check_server(i)?;
        Ok(LoadGenerator::start(
            vec![(s.name().to_string(), s.http_port())],
            options,
        ))
    }

    /// Starts sampling every server's state on every proxy each `every` (10 ms is cheap).
    pub fn start_pool_monitor(&self, every: Duration) -> PoolMonitor {
        PoolMonitor::start(
            self.proxies.clone(),
            self.servers.iter().map(|s| s.name().to_string()).collect(),
            every,
        )
    }

    /// The release stamp each server serves now, `mw1` first (an error for a bad page).
    pub fn served_stamps(&self) -> Vec<(String, Result<String, Error>)> {
        self.servers
            .iter()
            .map(|s| (s.name().to_string(), s.served_stamp()))
            .collect()
    }
}

/// Teardown.
impl Fleet {
    /// Stops everything and removes the fleet's directory, reporting what went wrong (a
    /// daemon that had to be killed is not an error). Dropping the fleet does the same and
    /// prints problems instead.
    ///
    /// # Errors
    ///
    /// The directory could not be removed, or a process outlived SIGKILL.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), Error> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut before: Vec<sys::ProcId> = self.lock().daemons().flat_map(Daemon::tree).collect();
        before.extend(self.watchdog.as_ref().and_then(|w| sys::proc_id(w.id())));
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let mut running = std::mem::take(&mut *self.lock());
        let mut daemons: Vec<(&mut Daemon, &str)> = Vec::new();
        // nginx and haproxy: TERM is their fast shutdown. php-fpm: TERM stops the workers
        // at once (QUIT would wait for hung requests).
        for d in running.haproxy.iter_mut().flatten() {
            daemons.push((d, "TERM"));
        }
        if let Some(d) = running.nginx.as_mut() {
            daemons.push((d, "TERM"));
        }
        for d in running.php_fpm.iter_mut().flatten() {
            daemons.push((d, "TERM"));
        }
        for d in running.sshd.iter_mut().flatten() {
            daemons.push((d, "TERM"));
        }
        for note in stop_all(daemons, GRACE) {
            eprintln!("testfleet: {note}");
        }
        let mut problems = Vec::new();
        if let Some(chattr) = sys::find_program("chattr") {
            for path in running.immutable.values() {
                if let Err(e) = sys::run(Command::new(&chattr).args(["-R", "-i"]).arg(path)) {
                    problems.push(e.to_string());
                }
            }
        }
        drop(running);
        let left: Vec<u32> = before
            .iter()
            .filter(|p| sys::is_running(**p))
            .map(|p| p.pid)
            .collect();
        if !left.is_empty() {
            problems.push(format!("processes still running after teardown: {left:?}"));
        }
        if std::env::var_os("TESTFLEET_KEEP").is_some() {
            eprintln!(
                "testfleet: TESTFLEET_KEEP is set: {} is left for inspection",
                self.root.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.root) {
            problems.push(format!("removing {}: {e}", self.root.display()));
        }
        self.ports.lock().unwrap_or_else(|e| e.into_inner()).clear();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "testfleet teardown: {}",
                problems.join("; ")
            )))
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("{e}");
        }
    }
}

// Tests share a fleet between threads.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<Fleet>();
};

/// Writes `text` to `path` with mode 0600 (replacing what was there).
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .context(|| format!("writing {}", path.display()))?;
    // An existing file keeps its mode on open: set it.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .context(|| format!("setting the mode of {}", path.display()))?;
    f.write_all(text.as_bytes())
        .context(|| format!("writing {}", path.display()))
}
