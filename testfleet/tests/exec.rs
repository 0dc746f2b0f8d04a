//! Core's `exec` against real OpenSSH: the fleet's sshd, one per server, with host key
//! checking on.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mwdeploy_exec::{Cmd, CommandRunner, ControlDir, SshRunner, SshTarget, Stream};
use testfleet::{Fault, Fleet};

fn runner(fleet: &Fleet, k: usize, control: &Arc<ControlDir>) -> SshRunner {
    let server = &fleet.servers()[k];
    let mut t = SshTarget::new(fleet.ssh_user(), "127.0.0.1");
    t.port = Some(server.ssh_port());
    t.identity = Some(fleet.client_key());
    // Only the fleet's known_hosts: no StrictHostKeyChecking option, so exec's own
    // default (checked) is what is tested.
    t.options = vec![format!(
        "UserKnownHostsFile={}",
        fleet.known_hosts().display()
    )];
    t.connect_timeout = Duration::from_secs(3);
    SshRunner::new(t, control.clone()).unwrap()
}

/// Processes whose command line names `dir` (the ssh control master, once it exists).
fn processes_using(dir: &Path) -> usize {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn ssh_commands_arrive_byte_exact_reuse_one_connection_and_refuse_bad_hosts() {
    let fleet = Fleet::builder().servers(2).proxies(0).start().unwrap();
    let control = Arc::new(ControlDir::new().unwrap());
    let mw1 = runner(&fleet, 0, &control);

    // Hostile arguments cross the remote shell unchanged.
    let hostile = [
        "a b",
        "it's",
        "\"dq\"",
        ";",
        "$(id)",
        "`id`",
        "new\nline",
        "*",
        "~",
        "&& true",
        "|",
        "a\\b",
        "",
        "-n",
        "tab\there",
        "semi;colon; rm -rf /nonexistent",
    ];
    let mut argv = vec!["printf".to_string(), "%s\\0".to_string()];
    argv.extend(hostile.iter().map(|s| s.to_string()));
    let out = mw1.run_ok(&Cmd::new(argv)).await.unwrap();
    let got: Vec<&str> = out.stdout.split('\0').collect();
    assert_eq!(&got[..hostile.len()], &hostile[..]);
    assert_eq!(got[hostile.len()], "", "nothing after the last argument");

    // Sessions run in the server's own deploy home, not this machine's (whose
    // ~/.bashrc would run on every command).
    let home = mw1
        .run_ok(&Cmd::new(["sh", "-c", "printf %s \"$HOME\""]))
        .await
        .unwrap();
    assert_eq!(home.stdout, fleet.servers()[0].home().display().to_string());

    // Lines end at \r too, over ssh as locally.
    let mut lines = Vec::new();
    mw1.run(
        &Cmd::new(["printf", "10%%\\r55%%\\r100%%\\ndone\\n"]),
        &mut |s, l| {
            if s == Stream::Stdout {
                lines.push(l.to_string())
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(lines, ["10%", "55%", "100%", "done"]);

    // Many commands, one connection: the control master is the only ssh left running.
    for i in 0..10 {
        let out = mw1
            .run_ok(&Cmd::new(["echo", &i.to_string()]))
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), i.to_string());
    }
    assert_eq!(processes_using(control.path()), 1, "one master for mw1");
    mw1.close().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_using(control.path()) != 0 {
        assert!(Instant::now() < deadline, "the master did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A changed host key is refused, never accepted.
    let mw2 = runner(&fleet, 1, &control);
    mw2.run_ok(&Cmd::new(["true"])).await.unwrap();
    mw2.close().await;
    fleet.inject(Fault::SshHostKeyChanged(1)).unwrap();
    let err = mw2
        .run_ok(&Cmd::new(["true"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Host key verification failed"), "{err}");
    assert!(err.contains("status 255"), "{err}");
    fleet.clear(Fault::SshHostKeyChanged(1)).unwrap();

    // A host that is down fails at once with ssh's own words.
    fleet.inject(Fault::SshDown(1)).unwrap();
    let err = mw2
        .run_ok(&Cmd::new(["true"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Connection refused"), "{err}");
    fleet.clear(Fault::SshDown(1)).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_host_that_never_answers_fails_within_the_connect_timeout() {
    // A peer that accepts the connection and never says a word (a hung sshd).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let control = Arc::new(ControlDir::new().unwrap());
    let mut t = SshTarget::new("root", "127.0.0.1");
    t.port = Some(port);
    t.connect_timeout = Duration::from_secs(2);
    let r = SshRunner::new(t, control).unwrap();
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(60), r.run_ok(&Cmd::new(["true"])))
        .await
        .expect("ssh gave up by itself");
    let err = out.unwrap_err().to_string();
    assert!(err.contains("status 255"), "{err}");
    // Well before the 60 s backstop: the 2 s connect timeout ended it.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

/// `Accepted publickey` lines in server `k`'s sshd log: connections it accepted.
fn accepted(fleet: &Fleet, k: usize) -> usize {
    std::fs::read_to_string(fleet.servers()[k].dir().join("sshd.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Accepted publickey"))
        .count()
}

#[tokio::test(flavor = "current_thread")]
async fn commands_started_at_once_share_one_connection_opened_ahead() {
    let fleet = Fleet::builder().servers(2).proxies(0).start().unwrap();
    let control = Arc::new(ControlDir::new().unwrap());

    // Eight first commands at once: one of them opens the connection, the others wait
    // for it instead of each becoming a master of its own.
    let mw1 = Arc::new(runner(&fleet, 0, &control));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let r = mw1.clone();
        set.spawn(async move { r.run_ok(&Cmd::new(["echo", &i.to_string()])).await });
    }
    while let Some(done) = set.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(accepted(&fleet, 0), 1, "one connection for eight commands");

    // Opened ahead of need: the command after it uses that connection.
    let mw2 = runner(&fleet, 1, &control);
    assert!(mw2.connect().await.unwrap().is_none());
    assert_eq!(accepted(&fleet, 1), 1);
    mw2.run_ok(&Cmd::new(["true"])).await.unwrap();
    assert!(mw2.connect().await.unwrap().is_none());
    assert_eq!(accepted(&fleet, 1), 1, "connect opens the connection once");
    mw1.close().await;
    mw2.close().await;

    // A host that is down: connect hands back ssh's own failure.
    fleet.inject(Fault::SshDown(1)).unwrap();
    let failed = mw2.connect().await.unwrap().expect("ssh's failure");
    assert_eq!(failed.code, Some(255));
    assert!(failed.stderr.contains("Connection refused"), "{failed:?}");
    fleet.clear(Fault::SshDown(1)).unwrap();
}
