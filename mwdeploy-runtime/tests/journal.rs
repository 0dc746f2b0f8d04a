//! The journal: write-ahead of pool changes proven by killing a deploy between the
//! intent and the result; a torn last line; a damaged middle line; pruning.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use mwdeploy_core::event::{Event, Record, Summary};
use mwdeploy_core::ports::{PoolControl, Progress};
use mwdeploy_core::{PoolState, PortError, Rollout, Server, ServerId};
use mwdeploy_runtime::driver::{Driver, Ports};
use mwdeploy_runtime::journal::{self, Journal, JournalError};
use mwdeploy_sim::{SimFleet, Simulation};

const ROLE: &str = "MWDEPLOY_TEST_JOURNAL_DIR";

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mwdeploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A balancer that takes the first depool and never answers it.
struct StuckPool;

#[async_trait]
impl PoolControl for StuckPool {
    async fn depool(&self, _: &Server, _: &Progress) -> Result<(), PortError> {
        std::future::pending().await
    }
    async fn repool(&self, _: &Server, _: &Progress) -> Result<(), PortError> {
        Ok(())
    }
    async fn state(&self, _: &Server) -> Result<PoolState, PortError> {
        Ok(PoolState::Up)
    }
    async fn states(&self) -> Result<Vec<(ServerId, PoolState)>, PortError> {
        let ids = ["mw00001", "mw00002"].map(|n| (ServerId::new(n).unwrap(), PoolState::Up));
        Ok(ids.to_vec())
    }
}

/// Entry point of the child process: a real deploy whose first depool hangs.
#[test]
fn deploy_child() {
    let Ok(dir) = std::env::var(ROLE) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let sim = Simulation::new(2, 3);
        let fleet = Arc::new(SimFleet::new(sim.fleet_model()));
        let plan = sim.into_plan();
        let id = plan.deploy_id.clone();
        let mut ports = Ports::all(fleet);
        ports.pool = Arc::new(StuckPool);
        let (driver, _h) = Driver::new(ports);
        let j = Journal::create(Path::new(&dir), &id).unwrap();
        let r = Rollout::new(plan, Instant::now()).unwrap();
        driver.subscribe(j).run(r).await;
    });
}

#[test]
fn a_deploy_killed_between_intent_and_result_leaves_the_intent_on_disk() {
    let dir = temp_dir("journal-kill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "deploy_child", "--nocapture", "--test-threads=1"])
        .env(ROLE, &dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let id = Simulation::new(2, 3).into_plan().deploy_id;
    let path = journal::path(&dir, &id);
    // Wait (bounded) for the depool intent to reach the file, then kill the deploy.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("\"action\":\"depool\",\"phase\":\"intent\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no depool intent in {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let read = journal::read(&path).unwrap();
    assert!(!journal::is_finished(&read));
    let pool: Vec<&Event> = read
        .records
        .iter()
        .map(|r| &r.event)
        .filter(|e| matches!(e, Event::Pool { .. }))
        .collect();
    assert_eq!(pool.len(), 1, "only the intent: {pool:?}");
    let left = journal::left_out(&read);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].server.as_str(), "mw00001");
    assert!(!left[0].depool_confirmed);
    assert!(left[0].copy_finished, "the in-place copy never started");
    assert_eq!(left[0].deploy, id);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn record(deploy: &str, event: Event) -> Record {
    Record {
        ts: SystemTime::now(),
        deploy: deploy.into(),
        event,
    }
}

fn state(server: &str, state: mwdeploy_core::ServerStatus) -> Event {
    Event::ServerState {
        server: ServerId::new(server).unwrap(),
        state,
        detail: None,
    }
}

fn pool(
    server: &str,
    action: mwdeploy_core::event::PoolAction,
    phase: mwdeploy_core::event::PoolPhase,
    ok: Option<bool>,
) -> Event {
    Event::Pool {
        server: ServerId::new(server).unwrap(),
        proxy: None,
        backend: None,
        action,
        phase,
        ok,
        detail: None,
    }
}

#[test]
fn a_torn_last_line_is_left_out_and_a_cut_in_place_copy_is_reported() {
    use mwdeploy_core::event::{PoolAction::*, PoolPhase::*};
    use mwdeploy_core::ServerStatus::*;
    let dir = temp_dir("journal-torn");
    let id = "20261122T040000Z-aa";
    let mut j = Journal::create(&dir, id).unwrap();
    for e in [
        pool("mw1", Depool, Intent, None),
        pool("mw1", Depool, Result, Some(true)),
        state("mw1", Transferring),
        pool("mw2", Depool, Intent, None),
        pool("mw2", Depool, Result, Some(true)),
        state("mw2", Transferring),
        state("mw2", Canary),
        pool("mw2", Repool, Intent, None),
        pool("mw2", Repool, Result, Some(true)),
        pool("mw3", Depool, Intent, None),
        pool("mw3", Depool, Result, Some(true)),
        state("mw3", Canary),
        pool("mw3", Repool, Intent, None),
    ] {
        j.append(&record(id, e)).unwrap();
    }
    drop(j);
    // The process died mid-write.
    let path = journal::path(&dir, id);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"{\"ts\":\"2026-11-22T04:00:00.000Z\",\"deploy\":\"20261122T0")
        .unwrap();
    drop(f);

    let read = journal::read(&path).unwrap();
    assert!(read.torn_tail);
    assert_eq!(read.records.len(), 13);
    let left = journal::left_out(&read);
    let names: Vec<(&str, bool)> = left
        .iter()
        .map(|l| (l.server.as_str(), l.copy_finished))
        .collect();
    // mw1: copy cut; mw2: back; mw3: repool sent but never confirmed.
    assert_eq!(names, vec![("mw1", false), ("mw3", true)]);

    // Recovery cuts the torn line off before it appends: every line reads back.
    assert!(journal::cut_torn_tail(&path).unwrap());
    assert!(!journal::cut_torn_tail(&path).unwrap(), "once");
    let mut j = Journal::create(&dir, id).unwrap();
    j.append(&record(id, pool("mw3", Repool, Result, Some(true))))
        .unwrap();
    let read = journal::read(&path).unwrap();
    assert!(!read.torn_tail);
    assert_eq!(read.records.len(), 14);
    let left: Vec<String> = journal::left_out(&read)
        .iter()
        .map(|l| l.server.to_string())
        .collect();
    assert_eq!(left, ["mw1"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_damaged_line_in_the_middle_is_an_error_naming_the_line() {
    let dir = temp_dir("journal-corrupt");
    let id = "20261122T040000Z-bb";
    let mut j = Journal::create(&dir, id).unwrap();
    j.append(&record(id, Event::StageFinished { stage: 1 }))
        .unwrap();
    drop(j);
    let path = journal::path(&dir, id);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"garbage\n").unwrap();
    drop(f);
    let mut j = Journal::create(&dir, id).unwrap();
    j.append(&record(id, Event::StageFinished { stage: 2 }))
        .unwrap();
    match journal::read(&path) {
        Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a corrupt line 2, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pruning_keeps_the_newest_and_every_unfinished_journal() {
    let dir = temp_dir("journal-prune");
    let finished = Event::DeployFinished {
        summary: Summary::default(),
        duration_s: 1.0,
        verdict: mwdeploy_core::Verdict::Done,
    };
    for n in 1..=5 {
        let id = format!("2026112{n}T000000Z-aa");
        let mut j = Journal::create(&dir, &id).unwrap();
        // The second deploy never finished.
        if n != 2 {
            j.append(&record(&id, finished.clone())).unwrap();
        } else {
            j.append(&record(&id, Event::StageFinished { stage: 1 }))
                .unwrap();
        }
    }
    let deleted = journal::prune(&dir, 2).unwrap();
    assert_eq!(deleted, vec!["20261121T000000Z-aa", "20261123T000000Z-aa"]);
    assert_eq!(
        journal::list(&dir).unwrap(),
        vec![
            "20261122T000000Z-aa",
            "20261124T000000Z-aa",
            "20261125T000000Z-aa"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_deploy_id_that_could_escape_the_folder_is_refused() {
    let dir = temp_dir("journal-badid");
    assert!(matches!(
        Journal::create(&dir, "../etc/passwd"),
        Err(JournalError::BadId { .. })
    ));
}
