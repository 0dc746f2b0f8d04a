//! The canary with real curl against a small HTTP server on loopback, locally run.
//! (The same checks over ssh against php-fpm run in the testfleet suite.)

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mwdeploy_canary::{Canary, CommandCheck, ConfigError, CurlCheck, ErrorRateGate};
use mwdeploy_core::model::CanaryTarget;
use mwdeploy_core::ports::{HealthCheck, Progress};
use mwdeploy_core::{Health, Server, ServerId};
use mwdeploy_exec::{Hosts, LocalRunner, SshDefaults};
use mwdeploy_sim::conformance;

fn need(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed: run scripts/install-deps.sh"
    );
}

/// A tiny web server: answers by path, and for `/vhost` only to the canary's Host.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || answer(conn));
        }
    });
    port
}

fn answer(mut conn: TcpStream) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut host = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(h) = line
            .strip_prefix("Host: ")
            .or_else(|| line.strip_prefix("host: "))
        {
            host = h.trim().to_string();
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, extra, body) = match path.as_str() {
        "/ok" => ("200 OK", "", "<html>Welcome to WikiOasis</html>"),
        "/500" => ("500 Internal Server Error", "", "wikioasis is down"),
        "/notext" => ("200 OK", "", "<html>nginx default page</html>"),
        "/redirect" => ("302 Found", "Location: /ok\r\n", ""),
        "/vhost" if host == "test.wikioasis.org" => ("200 OK", "", "wikioasis main page"),
        "/vhost" => ("404 Not Found", "", "no such site"),
        "/hang" => {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        _ => ("404 Not Found", "", "not found"),
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn local_server(urls: Vec<String>) -> Server {
    let mut s = Server::new(ServerId::new("mw1").unwrap());
    s.local = true;
    s.canary = CanaryTarget::Urls(urls);
    s
}

fn canary(port: u16) -> Canary {
    let curl = CurlCheck::new([format!("http://127.0.0.1:{port}/ok")])
        .unwrap()
        .host("test.wikioasis.org")
        .unwrap()
        .expect_body("wikioasis")
        .timeout(Duration::from_secs(2));
    Canary::new(
        Arc::new(Hosts::new(SshDefaults::new("root")).unwrap()),
        curl,
    )
}

async fn check(port: u16, paths: &[&str]) -> Health {
    let urls = paths
        .iter()
        .map(|p| format!("http://127.0.0.1:{port}{p}"))
        .collect();
    let server = local_server(urls);
    canary(port)
        .check(&server, &Progress::discard(server.id.clone()))
        .await
}

fn reason(h: &Health) -> String {
    match h {
        Health::Unhealthy { reason, .. } => reason.clone(),
        other => panic!("expected unhealthy, got {other:?}"),
    }
}

#[tokio::test]
async fn page_checks_say_what_was_wrong() {
    need("curl");
    let port = serve();
    assert_eq!(check(port, &["/ok"]).await, Health::Healthy);

    let h = check(port, &["/500"]).await;
    assert!(matches!(
        h,
        Health::Unhealthy {
            status: Some(500),
            ..
        }
    ));
    assert!(reason(&h).contains("HTTP 500"), "{h:?}");

    assert!(reason(&check(port, &["/notext"]).await).contains("lacks \"wikioasis\""));

    // Redirects are not followed: the 302 itself is the answer.
    assert!(reason(&check(port, &["/redirect"]).await).contains("HTTP 302"));

    // Several URLs: all must pass; the failing one is named.
    let h = check(port, &["/ok", "/500", "/ok"]).await;
    assert!(reason(&h).contains("/500"), "{h:?}");
}

#[tokio::test]
async fn the_host_header_is_really_sent() {
    need("curl");
    let port = serve();
    assert_eq!(check(port, &["/vhost"]).await, Health::Healthy);
    let curl = CurlCheck::new([format!("http://127.0.0.1:{port}/vhost")]).unwrap();
    let h = curl.check(&LocalRunner::new()).await;
    assert!(
        reason(&h).contains("HTTP 404"),
        "without the Host header: {h:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_fails_at_the_timeout_not_later() {
    need("curl");
    let port = serve();
    let started = Instant::now();
    let h = check(port, &["/hang"]).await;
    let took = started.elapsed();
    assert!(reason(&h).contains("(28)"), "curl's timeout: {h:?}");
    // The check's timeout is 2 s and the server holds the request for 30 s.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[tokio::test]
async fn connection_refused_is_curls_own_error() {
    need("curl");
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let h = check(port, &["/ok"]).await;
    assert!(reason(&h).contains("(7)"), "{h:?}");
}

#[test]
fn urls_that_could_reach_curl_as_options_are_refused() {
    for bad in [
        "-o/etc/passwd",
        "--config=/x",
        "ftp://x/",
        "file:///etc/passwd",
        "http://a b/",
        "http://x/\n-o",
    ] {
        assert!(
            matches!(CurlCheck::new([bad]), Err(ConfigError::Url { .. })),
            "{bad:?} was accepted"
        );
    }
    assert!(CurlCheck::new(Vec::<String>::new()).is_err());
    let ok = CurlCheck::new(["http://127.0.0.1/wiki/Main_Page"]).unwrap();
    assert!(ok.clone().host("evil\r\nX-Injected: 1").is_err());
    let argv = ok.argv("http://127.0.0.1/wiki/Main_Page");
    assert_eq!(argv[argv.len() - 2], "--", "options end before the URL");
    assert!(!argv.contains(&"--location".to_string()));
}

#[tokio::test]
async fn the_command_check_is_healthy_on_status_zero_only() {
    let r = LocalRunner::new();
    let t = Duration::from_secs(5);
    let check =
        |argv: &[&str]| CommandCheck::new(argv.iter().map(|s| s.to_string()).collect(), t).unwrap();
    assert_eq!(check(&["true"]).check(&r).await, Health::Healthy);
    let h = check(&["ls", "/nonexistent-mwdeploy"]).check(&r).await;
    let why = reason(&h);
    assert!(
        why.contains("status 2") && why.contains("No such file"),
        "{why}"
    );
    assert!(CommandCheck::new(vec![], t).is_err());
    // Through the HealthCheck port, a job runner's canary_command is used.
    let mut job = Server::new(ServerId::new("task1").unwrap()).unpooled(vec!["true".into()]);
    job.local = true;
    let h = canary(1)
        .check(&job, &Progress::discard(job.id.clone()))
        .await;
    assert_eq!(h, Health::Healthy);
}

/// A log in a folder of its own, removed at the end.
struct Log {
    dir: PathBuf,
    path: PathBuf,
}

impl Log {
    fn new(name: &str) -> Log {
        let dir = std::env::temp_dir().join(format!("mwdeploy-gate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("error.log");
        std::fs::write(&path, "PHP Fatal error: before the window\n").unwrap();
        Log { dir, path }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn append(path: &Path, lines: usize, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    for _ in 0..lines {
        writeln!(f, "{text}").unwrap();
    }
}

/// Runs the gate for 600 ms while `during(dir, log)` writes, 100 ms into the window.
async fn gate_with(log: &Log, during: impl FnOnce(&Path, &Path) + Send + 'static) -> Health {
    let gate = ErrorRateGate::new(log.path.to_str().unwrap(), "PHP (Fatal|Warning)", 10).unwrap();
    let (dir, path) = (log.dir.clone(), log.path.clone());
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        during(&dir, &path);
    });
    let id = ServerId::new("mw1").unwrap();
    let h = gate
        .watch(
            &LocalRunner::new(),
            Duration::from_millis(600),
            &Progress::discard(id),
        )
        .await;
    writer.join().unwrap();
    h
}

#[tokio::test]
async fn the_error_gate_counts_only_new_matching_lines() {
    let log = Log::new("counts");
    // The line written before the window does not count; other lines do not count.
    let h = gate_with(&log, |_, p| append(p, 50, "PHP Notice: harmless")).await;
    assert_eq!(h, Health::Healthy);
    let h = gate_with(&log, |_, p| append(p, 5, "PHP Warning: something")).await;
    assert_eq!(h, Health::Healthy, "5 is under the threshold of 10");
    let h = gate_with(&log, |_, p| append(p, 20, "PHP Fatal error: boom")).await;
    assert!(reason(&h).contains("20 lines"), "{h:?}");
}

#[tokio::test]
async fn the_error_gate_follows_a_rotated_log() {
    let log = Log::new("rotate");
    let h = gate_with(&log, |dir, p| {
        append(p, 6, "PHP Fatal error: in the old file");
        std::fs::rename(p, dir.join("error.log.1")).unwrap();
        std::fs::write(p, "").unwrap();
        append(p, 6, "PHP Fatal error: in the new file");
    })
    .await;
    assert!(reason(&h).contains("12 lines"), "both files counted: {h:?}");
}

#[tokio::test]
async fn an_unreadable_log_is_unknown_never_healthy() {
    let gate = ErrorRateGate::new("/nonexistent/mwdeploy/error.log", "PHP", 1).unwrap();
    let id = ServerId::new("mw1").unwrap();
    let h = gate
        .watch(
            &LocalRunner::new(),
            Duration::from_millis(10),
            &Progress::discard(id),
        )
        .await;
    assert!(matches!(h, Health::Unknown { .. }), "{h:?}");
    assert!(ErrorRateGate::new("relative.log", "x", 1).is_err());
    assert!(ErrorRateGate::new("/var/log/x", "(unclosed", 1).is_err());
    assert!(ErrorRateGate::new("/var/log/x", "x", 0).is_err());
}

#[tokio::test]
async fn the_fake_and_this_check_pass_the_same_conformance_suite() {
    need("curl");
    let port = serve();
    let good = local_server(vec![format!("http://127.0.0.1:{port}/ok")]);
    let bad = local_server(vec![format!("http://127.0.0.1:{port}/500")]);
    let c = canary(port);
    conformance::health_healthy(&c, &good).await.unwrap();
    conformance::health_unhealthy(&c, &bad).await.unwrap();
}
