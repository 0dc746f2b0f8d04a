//! The fleet's own self-test: every part answers, a release switch behaves as production's
//! PHP does, each fault takes effect and goes away, and teardown leaves nothing behind.
//!
//! Two tests, two fleets: fleets are not shared between tests, so the checks are grouped.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use testfleet::{
    write_stamp, DocumentRoot, Error, FailureKind, Fault, Fleet, Layout, LoadOptions, PoolState,
    ReleaseId, Server, INITIAL_STAMP,
};

fn ok<T>(r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.chars().next()
        })
        .is_some_and(|state| state != 'Z' && state != 'X')
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The command the issue asks each sshd to answer, host key checking on.
fn ssh_true(fleet: &Fleet, s: &Server) -> Command {
    let mut cmd = Command::new("ssh");
    cmd.arg("-p")
        .arg(s.ssh_port().to_string())
        .arg("-i")
        .arg(fleet.client_key())
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            fleet.known_hosts().display()
        ))
        .args(["root@127.0.0.1", "--", "true"]);
    cmd
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (install with scripts/install-deps.sh)"))
}

/// A new release beside the live one (a copy of it) with `stamp`: what a deploy's copy makes.
fn make_release(s: &Server, stamp: &str) -> ReleaseId {
    let live = s.live_release().expect("release layout");
    let id = ReleaseId::at(SystemTime::now(), stamp).unwrap();
    let out = output(
        Command::new("cp")
            .arg("-a")
            .arg(s.releases_dir().join(live.as_str()))
            .arg(s.releases_dir().join(id.as_str())),
    );
    assert!(out.status.success(), "cp: {out:?}");
    ok(write_stamp(&s.releases_dir().join(id.as_str()), stamp));
    id
}

/// The atomic switch: a new symlink renamed over the live one.
fn switch(s: &Server, id: &ReleaseId) {
    let tmp = s.dir().join("mediawiki.switch");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("mediawiki-releases").join(id.as_str()), &tmp).unwrap();
    fs::rename(&tmp, s.live_path()).unwrap();
}

fn stamp_of(s: &Server) -> String {
    ok(s.served_stamp())
}

fn code_path(s: &Server) -> PathBuf {
    PathBuf::from(ok(s.page()).field("path").expect("path= in the page"))
}

fn post(url: &str, body: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = TcpStream::connect(host).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn fleet_of_eight_serves_switches_takes_faults_and_leaves_nothing() {
    let began = Instant::now();
    let fleet = ok(Fleet::builder()
        .servers(8)
        .proxies(2)
        .layout(Layout::Releases)
        .start());
    let took = began.elapsed();
    eprintln!("start() of 8 servers and 2 proxies took {took:?}");
    assert!(took < Duration::from_secs(30), "start() took {took:?}");
    let servers = fleet.servers();
    let names: BTreeSet<String> = servers.iter().map(|s| s.name().to_string()).collect();
    assert_eq!(names.len(), 8);

    // Each server's page, straight from its nginx: one release, its own tree.
    for s in servers {
        let page = ok(s.page());
        assert!(page.is_good(), "{}: {page:?}", s.name());
        assert_eq!(page.stamp(), Some(INITIAL_STAMP));
        assert_eq!(page.server(), Some(s.name()));
        assert_eq!(page.field("version"), Some("1.45"));
        assert!(code_path(s).starts_with(s.releases_dir()), "{}", s.name());
        assert!(fs::symlink_metadata(s.live_path()).unwrap().is_symlink());
        assert_eq!(s.reload_command().len(), 1);
    }
    assert_eq!(ok(fleet.staging().served_stamp()), INITIAL_STAMP);

    // Each frontend spreads requests over every server.
    for p in fleet.proxies() {
        let mut seen = BTreeSet::new();
        for _ in 0..24 {
            let page = ok(p.page_within(Duration::from_secs(5)));
            assert!(page.is_good(), "{}: {page:?}", p.name());
            seen.insert(page.server().unwrap().to_string());
        }
        assert_eq!(seen, names, "{} reaches every server", p.name());
    }

    // Each admin socket lists the 8 servers UP.
    for p in fleet.proxies() {
        let stat = ok(p.command("show stat"));
        let up = stat
            .lines()
            .filter(|l| l.starts_with("mediawiki,mw") && l.split(',').nth(17) == Some("UP"))
            .count();
        assert_eq!(up, 8, "{}: {stat}", p.name());
        let states = ok(p.server_states());
        assert_eq!(states.len(), 8);
        assert!(states.iter().all(|s| s.state == PoolState::Up));
    }

    // Each sshd lets the client in, with host key checking on; every host key differs.
    let children: Vec<_> = servers
        .iter()
        .map(|s| (s.name(), ssh_true(&fleet, s).spawn().unwrap()))
        .collect();
    for (name, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "ssh to {name}: {out:?}");
    }
    let known = fs::read_to_string(fleet.known_hosts()).unwrap();
    let keys: BTreeSet<&str> = known
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(keys.len(), 8, "{known}");

    // Staging pulls from its origin.
    let commit = ok(fleet.push_stamp("r2"));
    let staging = fleet.staging().path();
    let out = output(
        Command::new("git")
            .arg("-C")
            .arg(staging)
            .args(["pull", "-q"]),
    );
    assert!(out.status.success(), "git pull: {out:?}");
    let head = output(
        Command::new("git")
            .arg("-C")
            .arg(staging)
            .args(["rev-parse", "HEAD"]),
    );
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), commit);
    let version = fs::read_to_string(staging.join("versions/1.45/includes/Version.php")).unwrap();
    assert!(version.contains("'r2'"), "{version}");
    assert!(staging
        .join("versions/1.45/includes/cache/ObjectCache.php")
        .exists());
    assert!(staging.join("cache/README").exists());

    // The config for the CLI: private, this fleet's ports, paths, keys, sockets.
    let config = fleet.root().join("config.yaml");
    ok(fleet.write_config(&config, Layout::Releases));
    assert_eq!(
        fs::metadata(&config).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let yaml = fs::read_to_string(&config).unwrap();
    assert!(yaml.contains("release_layout: \"releases\""));
    assert!(yaml.contains(&format!(
        "UserKnownHostsFile={}",
        fleet.known_hosts().display()
    )));
    for s in servers {
        assert!(yaml.contains(&format!("ssh_port: {}", s.ssh_port())));
        assert!(yaml.contains(&s.canary_url()));
        assert!(yaml.contains(&s.reload_command()[0]));
    }
    for p in fleet.proxies() {
        assert!(yaml.contains(&p.admin_socket().display().to_string()));
    }
    assert!(yaml.contains(&fleet.webhooks().discord_url()));

    // A release switch on mw1 under load: with $realpath_root the new release is served
    // from the first request after the switch, and no page ever mixes two releases.
    let mw1 = &servers[0];
    let old_path = code_path(mw1);
    let new = make_release(mw1, "r2");
    let load = ok(fleet.start_load_on(0, LoadOptions::default().pause(Duration::ZERO)));
    wait_for("requests before the switch", Duration::from_secs(5), || {
        load.report().requests > 20
    });
    switch(mw1, &new);
    assert_eq!(
        stamp_of(mw1),
        "r2",
        "served from the first request after the switch"
    );
    ok(mw1.reload());
    let after = load.report().requests;
    wait_for("requests after the reload", Duration::from_secs(5), || {
        load.report().requests > after + 20
    });
    let report = load.stop();
    assert_eq!(report.failed, 0, "{:?}", report.failures);
    let stamps: BTreeSet<&str> = report.stamps.keys().map(String::as_str).collect();
    assert_eq!(stamps, BTreeSet::from([INITIAL_STAMP, "r2"]));
    for _ in 0..10 {
        assert_eq!(stamp_of(mw1), "r2");
    }
    assert_ne!(code_path(mw1), old_path);

    // In place (files changed in the live tree, as the in-place layout's rsync does):
    // nothing changes until php-fpm is reloaded.
    let mw2 = &servers[1];
    let mw2_tree = fs::canonicalize(mw2.live_path()).unwrap();
    ok(write_stamp(&mw2_tree, "r2"));
    for _ in 0..5 {
        assert_eq!(
            stamp_of(mw2),
            INITIAL_STAMP,
            "changed files unseen before the reload"
        );
    }
    ok(mw2.reload());
    assert_eq!(stamp_of(mw2), "r2");
    // The other post_activate hook: opcache_reset() in the running php-fpm does the same.
    ok(write_stamp(&mw2_tree, "r3"));
    assert_eq!(stamp_of(mw2), "r2", "changed files unseen before the reset");
    let reset = mw2.opcache_reset_command();
    let out = output(Command::new(&reset[0]).args(&reset[1..]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stamp_of(mw2),
        "r3",
        "the reset makes php-fpm read the files again"
    );
    ok(write_stamp(&mw2_tree, "r2"));
    ok(mw2.reload());

    // A page mixing two releases is caught by the load generator.
    fs::write(
        mw2_tree.join("versions/1.45/includes/Stamp.php"),
        "<?php\n$wgFleetStamp = 'other';\n",
    )
    .unwrap();
    ok(mw2.reload());
    let page = ok(mw2.page());
    assert!(page.is_mixed() && !page.is_good(), "{page:?}");
    let load = ok(fleet.start_load(LoadOptions::default()));
    wait_for(
        "a mixed page through the frontends",
        Duration::from_secs(10),
        || {
            load.report().count(&FailureKind::Mixed {
                a: String::new(),
                b: String::new(),
            }) > 0
        },
    );
    let report = load.stop();
    assert!(report
        .failures
        .iter()
        .all(|f| f.server.as_deref() == Some("mw2")
            && f.kind
                == FailureKind::Mixed {
                    a: "r2".into(),
                    b: "other".into()
                }));
    ok(write_stamp(&mw2_tree, "r2"));
    ok(mw2.reload());
    assert_eq!(stamp_of(mw2), "r2");

    // Faults, one per server, under load and watched by the pool monitor.
    let monitor = fleet.start_pool_monitor(Duration::from_millis(10));
    let load = ok(fleet.start_load(
        LoadOptions::default()
            .workers(4)
            .timeout(Duration::from_secs(2)),
    ));
    let server_faults = [
        Fault::PageError(0),
        Fault::PageHang(1),
        Fault::PhpFpmDown(2),
        Fault::WebServerDown(3),
        Fault::SshDown(4),
        Fault::SshHostKeyChanged(5),
        Fault::DiskWriteFails(6),
        Fault::PageWarning(7),
    ];
    let warnings_before = fs::read_to_string(servers[7].php_error_log())
        .unwrap_or_default()
        .matches("PHP Warning")
        .count();
    for f in server_faults {
        ok(fleet.inject(f));
    }
    assert_eq!(ok(servers[0].page()).status, 500);
    assert!(
        servers[1].page_within(Duration::from_millis(800)).is_err(),
        "mw2 hangs"
    );
    assert_eq!(ok(servers[2].page()).status, 502);
    assert!(
        !port_open(servers[3].http_port()),
        "mw4's web server is down"
    );
    assert!(
        ok(servers[4].page()).is_good(),
        "the other server blocks still serve"
    );
    let out = output(&mut ssh_true(&fleet, &servers[4]));
    assert_eq!(out.status.code(), Some(255), "ssh to mw5 fails: {out:?}");
    let out = output(&mut ssh_true(&fleet, &servers[5]));
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "ssh to mw6 with a changed host key: {out:?}"
    );
    let attempt = servers[6].releases_dir().join("new-release");
    let err = fs::create_dir(&attempt).expect_err("writes fail on mw7");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(
        ok(servers[7].page()).is_good(),
        "a warning does not break the page"
    );
    let warnings = fs::read_to_string(servers[7].php_error_log()).unwrap_or_default();
    assert!(
        warnings.matches("PHP Warning").count() > warnings_before,
        "{warnings}"
    );
    let mw3_reload = output(&mut Command::new(&servers[2].reload_command()[0]));
    assert!(!mw3_reload.status.success(), "no reload without php-fpm");

    // The proxies take the failing servers out, and only those.
    let down: BTreeSet<&str> = ["mw1", "mw2", "mw3", "mw4"].into();
    for p in fleet.proxies() {
        wait_for(
            &format!("{} marks mw1..mw4 DOWN", p.name()),
            Duration::from_secs(15),
            || {
                ok(p.server_states())
                    .iter()
                    .all(|s| (s.state == PoolState::Down) == down.contains(s.name.as_str()))
            },
        );
    }

    // A proxy reload loses runtime state: mw8 put in maintenance on lb1 comes back.
    let lb1 = &fleet.proxies()[0];
    assert_eq!(ok(lb1.command("disable server mediawiki/mw8")).trim(), "");
    let state = |name: &str| {
        ok(lb1.server_states())
            .into_iter()
            .find(|s| s.name == name)
            .unwrap()
            .state
    };
    assert_eq!(state("mw8"), PoolState::Maint);
    wait_for("the monitor sees mw8 out", Duration::from_secs(5), || {
        monitor.report().servers["mw8"].times_out > 0
    });
    ok(fleet.reload_proxy(0));
    assert_eq!(
        state("mw8"),
        PoolState::Up,
        "maintenance forgotten by the reload"
    );
    // (Its new worker starts with every server UP until the checks fail again: a page
    // request could hit hanging mw2, so only the frontend's port is checked.)
    assert!(port_open(lb1.frontend_port()));

    // A stopped proxy: frontend and socket gone; cleared, it starts again.
    let lb2 = &fleet.proxies()[1];
    ok(fleet.inject(Fault::ProxyDown(1)));
    assert!(!port_open(lb2.frontend_port()));
    assert!(lb2.command("show info").is_err());
    wait_for("load fails through lb2", Duration::from_secs(5), || {
        load.report().failed_via("lb2") > 0
    });
    ok(fleet.clear(Fault::ProxyDown(1)));

    for f in server_faults {
        ok(fleet.clear(f));
    }
    ok(fleet.wait_all_up(Duration::from_secs(20)));
    for s in servers {
        assert!(ok(s.page()).is_good(), "{} serves again", s.name());
    }
    for s in &servers[4..6] {
        let out = output(&mut ssh_true(&fleet, s));
        assert!(out.status.success(), "ssh to {} again: {out:?}", s.name());
    }
    fs::create_dir(&attempt).unwrap();
    fs::remove_dir(&attempt).unwrap();
    let warnings_now = fs::read_to_string(servers[7].php_error_log())
        .unwrap()
        .matches("PHP Warning")
        .count();
    ok(servers[7].page());
    let warnings_after = fs::read_to_string(servers[7].php_error_log())
        .unwrap()
        .matches("PHP Warning")
        .count();
    assert_eq!(warnings_after, warnings_now, "no warning once cleared");

    let faults_load = load.stop();
    let pool = monitor.stop();
    eprintln!(
        "under faults: {} of {} requests failed; pool: at most {} out ({:?})",
        faults_load.failed, faults_load.requests, pool.max_out, pool.max_out_servers
    );
    assert!(faults_load.failed > 0 && faults_load.failed_via("lb2") > 0);
    assert!(pool.max_out >= 4, "{pool:?}");
    for name in ["mw1", "mw2", "mw3", "mw4", "mw8"] {
        assert!(
            pool.servers[name].time_out > Duration::ZERO,
            "{name}: {pool:?}"
        );
    }
    for name in ["mw5", "mw6", "mw7"] {
        assert_eq!(pool.servers[name].times_out, 0, "{name}: {pool:?}");
    }
    // Only mw8 was in maintenance; the others were out because their checks failed.
    assert!(
        pool.servers["mw8"].time_in_maint > Duration::ZERO
            && pool.servers["mw8"].time_in_maint <= pool.servers["mw8"].time_out,
        "{pool:?}"
    );
    for name in ["mw1", "mw2", "mw3", "mw4"] {
        assert_eq!(
            pool.servers[name].time_in_maint,
            Duration::ZERO,
            "{name}: {pool:?}"
        );
    }
    assert!(pool.unreachable["lb2"] > 0 && pool.unreachable["lb1"] < pool.unreachable["lb2"]);

    // A healthy fleet under load: no failure at all.
    let load = ok(fleet.start_load(LoadOptions::default()));
    wait_for(
        "a quiet load over every server",
        Duration::from_secs(10),
        || {
            let r = load.report();
            r.requests > 200 && r.servers.len() == 8
        },
    );
    let quiet = load.stop();
    assert_eq!(quiet.failed, 0, "{:?}", quiet.failures);

    // The webhook receiver records posts and answers as told.
    let hooks = fleet.webhooks();
    let answer = post(&hooks.discord_url(), r#"{"content":"deploy started"}"#);
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    hooks.reply_next(429, Some(2));
    let answer = post(&hooks.slack_url(), r#"{"text":"deploy done"}"#);
    assert!(answer.starts_with("HTTP/1.1 429") && answer.contains("Retry-After: 2"));
    let posts = hooks.posts();
    assert_eq!(posts.len(), 2);
    assert_eq!(
        (posts[0].path.as_str(), posts[0].body.as_str()),
        ("/discord", r#"{"content":"deploy started"}"#)
    );
    assert_eq!((posts[1].path.as_str(), posts[1].answered), ("/slack", 429));

    // Teardown: no process left, no port open, no directory.
    let pids = fleet.pids();
    let ports = fleet.ports();
    let root = fleet.root().to_path_buf();
    assert!(pids.len() >= 8 + 9 + 1 + 2, "{pids:?}");
    assert!(ports.iter().all(|&p| port_open(p)), "{ports:?}");
    ok(fleet.shutdown());
    let left: Vec<u32> = pids.into_iter().filter(|&p| running(p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    let open: Vec<u16> = ports.into_iter().filter(|&p| port_open(p)).collect();
    assert!(open.is_empty(), "still listening: {open:?}");
    assert!(!root.exists());
}

/// The deliberate panic that ends the second test's fleet.
struct Sentinel;

/// What the second test saw of its fleet before the panic: pids, ports, directory.
type Seen = (Vec<u32>, Vec<u16>, PathBuf);

#[test]
fn symlinked_document_root_serves_the_old_release_until_reload_and_a_panic_tears_down() {
    let seen: std::sync::Mutex<Option<Seen>> = Default::default();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let fleet = ok(Fleet::builder()
            .servers(1)
            .proxies(1)
            .tree(50, 0)
            .layout(Layout::Releases)
            .document_root(DocumentRoot::Symlinked)
            .start());
        let s = &fleet.servers()[0];
        let old_path = code_path(s);
        let new = make_release(s, "r2");
        switch(s, &new);
        assert_eq!(
            fs::read_link(s.live_path()).unwrap(),
            Path::new("mediawiki-releases").join(new.as_str())
        );
        // What the operator (and a canary) sees: a good page, from the old release.
        for _ in 0..10 {
            let page = ok(s.page());
            assert!(page.is_good());
            assert_eq!(
                page.stamp(),
                Some(INITIAL_STAMP),
                "old code after the switch"
            );
            assert_eq!(Path::new(page.field("path").unwrap()), old_path);
        }
        ok(s.reload());
        let page = ok(s.page());
        assert_eq!(page.stamp(), Some("r2"), "new code after the reload");
        assert_eq!(
            Path::new(page.field("path").unwrap()),
            s.releases_dir().join(new.as_str())
        );

        // A test that panics while its fleet runs: the drop during unwinding tears down.
        *seen.lock().unwrap() = Some((fleet.pids(), fleet.ports(), fleet.root().to_path_buf()));
        std::panic::panic_any(Sentinel);
    }));
    match outcome {
        Err(payload) if payload.is::<Sentinel>() => {}
        Err(payload) => std::panic::resume_unwind(payload),
        Ok(()) => unreachable!("the closure ends with a panic"),
    }
    let (pids, ports, root) = seen.lock().unwrap().take().unwrap();
    assert!(pids.len() >= 5, "{pids:?}");
    let left: Vec<u32> = pids.into_iter().filter(|&p| running(p)).collect();
    assert!(left.is_empty(), "still running after the panic: {left:?}");
    let open: Vec<u16> = ports.into_iter().filter(|&p| port_open(p)).collect();
    assert!(open.is_empty(), "still listening after the panic: {open:?}");
    assert!(!root.exists());
}
