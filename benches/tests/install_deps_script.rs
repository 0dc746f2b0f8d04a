//! `scripts/install-deps.sh`, which `scripts/test.sh` runs first: with every command there
//! it touches nothing and says so; where it cannot install (no apt-get) it fails naming
//! the packages to install, so a fresh machine is told exactly what is missing.

use std::process::{Command, Output, Stdio};

fn script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/install-deps.sh").to_string()
}

fn run(path: &str) -> Output {
    Command::new("/bin/bash")
        .arg(script())
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("bash runs")
}

#[test]
fn with_every_command_there_it_installs_nothing() {
    let path = std::env::var("PATH").unwrap_or_default();
    let o = run(&path);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(
        o.status.success(),
        "{}: run scripts/install-deps.sh as root first\n{out}\n{err}",
        o.status
    );
    assert!(out.contains("every needed command is installed"), "{out}");
    assert!(!out.contains("installing"), "{out}");
}

#[test]
fn where_it_cannot_install_it_names_the_packages() {
    // An empty PATH: no apt-get, and none of the commands found in /usr/bin.
    let empty = std::env::temp_dir().join(format!("install-deps-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let o = run(&empty.display().to_string());
    std::fs::remove_dir_all(&empty).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("apt-get not found"), "{err}");
    for package in ["curl", "git", "rsync"] {
        assert!(err.contains(package), "{package} named: {err}");
    }
}
