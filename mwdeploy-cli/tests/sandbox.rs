//! `mwdeploy sandbox` as an operator meets it: it starts a real fleet on 127.0.0.1, prints
//! its config and the deploy command, a deploy with that config reaches every server,
//! and SIGTERM stops it with its folder removed.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[test]
fn the_sandbox_takes_a_deploy_and_goes_away_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mwdeploy"))
        .args(["sandbox", "--servers", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut shown = String::new();
    let mut config = None;
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!(
                "the sandbox ended before it was ready (scripts/install-deps.sh):\n{shown}\n{err}"
            );
        }
        shown.push_str(&line);
        if let Some(path) = line.strip_prefix("config: ") {
            config = Some(PathBuf::from(path.trim()));
        }
        if line.starts_with("stop it with Ctrl-C") {
            break;
        }
    }
    let config = config.unwrap_or_else(|| panic!("no config line:\n{shown}"));
    let root = config.parent().unwrap().to_path_buf();
    assert!(
        shown.contains(&format!(
            "mwdeploy -C {} --rsync --rollout",
            config.display()
        )),
        "{shown}"
    );

    // The printed command, with a change in staging.
    let staging = root.join("staging");
    std::fs::write(staging.join("hello.txt"), "hello\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mwdeploy"))
        .arg("-C")
        .arg(&config)
        .args(["--rsync", "--rollout", "--json", "-m", "first"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("\"succeeded\":2"), "{out}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("sandbox stopped"), "{rest}");
    assert!(!root.exists(), "{} left behind", root.display());
}
