//! The deploy lock across two processes, including a holder that is killed.
//!
//! The test binary runs itself again as the holder (`MWDEPLOY_TEST_LOCK_DIR` set):
//! the child takes the lock, says so on stdout, and waits to be killed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use mwdeploy_runtime::lock::{DeployLock, Holder, LockError, LockStatus};

const ROLE: &str = "MWDEPLOY_TEST_LOCK_DIR";

/// Entry point of the child process; a no-op in the normal test run.
#[test]
fn lock_holder_child() {
    let Ok(dir) = std::env::var(ROLE) else {
        return;
    };
    let _lock = DeployLock::acquire(&PathBuf::from(dir), Holder::current("child deploy")).unwrap();
    println!("locked");
    std::thread::sleep(std::time::Duration::from_secs(120));
}

fn spawn_holder(dir: &std::path::Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_holder_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains("locked") => break,
            Some(Ok(_)) => continue,
            other => panic!("holder did not take the lock: {other:?}"),
        }
    }
    child
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mwdeploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn a_held_lock_is_refused_at_once_naming_its_holder_and_freed_when_the_holder_is_killed() {
    let dir = temp_dir("lock-kill");
    let mut child = spawn_holder(&dir);
    let child_pid = child.id();

    // Taken elsewhere: refused at once, with who holds it.
    let started = std::time::Instant::now();
    match DeployLock::acquire(&dir, Holder::current("second deploy")) {
        Err(LockError::Held {
            holder: Some(h), ..
        }) => {
            assert_eq!(h.pid, child_pid);
            assert_eq!(h.message, "child deploy");
            let shown = LockError::Held {
                path: dir.join("lock"),
                holder: Some(h),
            }
            .to_string();
            assert!(shown.contains(&format!("pid {child_pid}")), "{shown}");
        }
        other => panic!("expected Held with a record, got {other:?}"),
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "it waited"
    );
    assert!(matches!(
        DeployLock::status(&dir).unwrap(),
        LockStatus::Held(Some(h)) if h.pid == child_pid
    ));
    // A live holder's record cannot be cleared.
    assert!(matches!(
        DeployLock::clear_stale(&dir),
        Err(LockError::Held { .. })
    ));

    // The holder dies without cleaning up: the kernel frees the lock, the record stays.
    child.kill().unwrap();
    child.wait().unwrap();
    match DeployLock::status(&dir).unwrap() {
        LockStatus::Stale(h) => assert_eq!(h.pid, child_pid),
        other => panic!("expected a stale record, got {other:?}"),
    }
    let cleared = DeployLock::clear_stale(&dir).unwrap();
    assert_eq!(cleared.map(|h| h.pid), Some(child_pid));
    assert_eq!(DeployLock::status(&dir).unwrap(), LockStatus::Free);

    let mine = DeployLock::acquire(&dir, Holder::current("third deploy")).unwrap();
    assert!(matches!(
        DeployLock::status(&dir).unwrap(),
        LockStatus::Held(Some(h)) if h.pid == std::process::id()
    ));
    drop(mine);
    assert_eq!(DeployLock::status(&dir).unwrap(), LockStatus::Free);
    std::fs::remove_dir_all(&dir).unwrap();
}
