//! The journal: every event of a deploy, one JSON object per line, in
//! `<state_dir>/deploys/<deploy-id>.jsonl`.
//!
//! It is what `mwdeploy log`, the dashboard and `mwdeploy recover` read. Pool changes
//! are written ahead: the intent is on disk (fsync) before the command goes to the
//! balancer, and the result after. A process killed between the two leaves the intent
//! without a result, and [`left_out`] finds it.
//!
//! ```
//! use std::time::SystemTime;
//! use mwdeploy_runtime::driver::Subscriber;
//! use mwdeploy_core::event::{Event, Record};
//! use mwdeploy_runtime::journal::{self, Journal};
//!
//! let dir = std::env::temp_dir().join(format!("mwdeploy-doc-{}", std::process::id()));
//! let mut j = Journal::create(&dir, "20261122T040000Z-ab12").unwrap();
//! j.record(&Record { ts: SystemTime::now(), deploy: "20261122T040000Z-ab12".into(),
//!                    event: Event::StageFinished { stage: 1 } }).unwrap();
//! let read = journal::read(&journal::path(&dir, "20261122T040000Z-ab12")).unwrap();
//! assert_eq!(read.records.len(), 1);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::driver::{Subscriber, SubscriberError};
use mwdeploy_core::event::{Event, PoolAction, PoolPhase, Record, ServerStatus};
use mwdeploy_core::model::{validate_name, Layout, ServerId};

/// A journal could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// A file or folder could not be created, written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A line that is not the last one does not parse: the file was damaged.
    #[error("{path}:{line}: not a journal record: {detail}")]
    Corrupt {
        /// The journal.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What the parser said.
        detail: String,
    },
    /// The deploy id cannot name a file.
    #[error("deploy id {id:?} cannot name a journal: {detail}")]
    BadId {
        /// The id given.
        id: String,
        /// Why.
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The folder holding every journal of `state_dir`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("deploys")
}

/// The journal file of deploy `id`.
pub fn path(state_dir: &Path, id: &str) -> PathBuf {
    dir(state_dir).join(format!("{id}.jsonl"))
}

/// Appends a deploy's records to its journal. A [`Subscriber`] for the driver, and a
/// critical one: if it cannot write, no pool change is sent.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Creates (or continues) the journal of deploy `id` under `state_dir`.
    pub fn create(state_dir: &Path, id: &str) -> Result<Journal, JournalError> {
        validate_name("deploy", id, 128).map_err(|e| JournalError::BadId {
            id: id.to_string(),
            detail: e.to_string(),
        })?;
        let folder = dir(state_dir);
        fs::create_dir_all(&folder).map_err(io_err(&folder))?;
        let path = path(state_dir, id);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // The folder entry itself must survive a crash, or the file may vanish with it.
        if let Ok(d) = File::open(&folder) {
            let _ = d.sync_all();
        }
        Ok(Journal { path, file })
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` as one line; pool changes and the end of a deploy are fsynced
    /// before this returns.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        // One write per line: a crash tears at most the last line.
        self.file.write_all(&line).map_err(io_err(&self.path))?;
        if must_sync(&record.event) {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        Ok(())
    }
}

/// Events that recovery depends on: on disk before the deploy moves on.
fn must_sync(event: &Event) -> bool {
    matches!(
        event,
        // A proxy's own answer (`proxy` set) is not needed to recover: no sync for it.
        Event::Pool { proxy: None, .. }
            | Event::DeployStarted { .. }
            | Event::DeployFinished { .. }
    ) || matches!(
        event,
        Event::ServerState { state, .. } if state.is_final() || *state == ServerStatus::Transferring
    )
}

impl Subscriber for Journal {
    fn record(&mut self, record: &Record) -> Result<(), SubscriberError> {
        self.append(record).map_err(|e| SubscriberError {
            subscriber: "journal".into(),
            detail: e.to_string(),
        })
    }

    fn is_critical(&self) -> bool {
        true
    }
}

/// A journal as read back.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Read {
    /// Every whole record, in order.
    pub records: Vec<Record>,
    /// Whether the last line was torn (a crash mid-write) and left out.
    pub torn_tail: bool,
}

/// Reads a journal. A torn last line (the process died mid-write) is left out; a bad
/// line anywhere else is an error naming its line.
pub fn read(path: &Path) -> Result<Read, JournalError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut records = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(io_err(path))?;
        if let Some((at, detail)) = pending.take() {
            return Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                line: at,
                detail,
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(r) => records.push(r),
            // Only an error if another line follows.
            Err(e) => pending = Some((n + 1, e.to_string())),
        }
    }
    Ok(Read {
        records,
        torn_tail: pending.is_some(),
    })
}

/// Cuts a torn last line (the process died mid-write) off the journal at `path`, so
/// records can be appended after it; returns whether there was one. A journal that ends
/// with a whole line is left as it is.
pub fn cut_torn_tail(path: &Path) -> Result<bool, JournalError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(false);
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.set_len(keep as u64).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(true)
}

/// The ids of every journal in `state_dir`, oldest first (ids start with their UTC time).
pub fn list(state_dir: &Path) -> Result<Vec<String>, JournalError> {
    let folder = dir(state_dir);
    let entries = match fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(&folder)(e)),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(&folder))?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    Ok(ids)
}

/// Whether a journal's deploy ended (it holds `deploy_finished`).
pub fn is_finished(read: &Read) -> bool {
    read.records
        .iter()
        .any(|r| matches!(r.event, Event::DeployFinished { .. }))
}

/// Deletes the oldest journals beyond the newest `keep`, never one of an unfinished
/// deploy (recovery needs it). Returns the ids deleted.
pub fn prune(state_dir: &Path, keep: usize) -> Result<Vec<String>, JournalError> {
    let ids = list(state_dir)?;
    let excess = ids.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for id in ids.into_iter().take(excess) {
        let p = path(state_dir, &id);
        let finished = read(&p).map(|r| is_finished(&r)).unwrap_or(false);
        if finished {
            fs::remove_file(&p).map_err(io_err(&p))?;
            deleted.push(id);
        }
    }
    Ok(deleted)
}

/// A server an unfinished deploy took out of the pool and did not put back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeftOut {
    /// The deploy.
    pub deploy: String,
    /// The server.
    pub server: ServerId,
    /// Whether the result of the last depool was recorded (else only its intent was:
    /// the process died while the balancer was being told).
    pub depool_confirmed: bool,
    /// Whether its copy finished: in place, the rsync into the live tree completed; in
    /// the release layout always, since the switch is atomic.
    pub copy_finished: bool,
    /// Its last state in the journal.
    pub last_state: Option<ServerStatus>,
}

/// The servers left out of the pool by the unfinished deploy whose journal is `read`.
///
/// A server counts as left out when its last pool record is a depool (intent or
/// result) or a repool that was not confirmed. A finished deploy reports its kept-out
/// servers itself and yields nothing here.
pub fn left_out(read: &Read) -> Vec<LeftOut> {
    if is_finished(read) {
        return Vec::new();
    }
    let mut deploy = String::new();
    let mut layout = Layout::Inplace;
    // Per server: last pool record, whether its in-place copy is under way, last state.
    let mut pool: BTreeMap<ServerId, (PoolAction, PoolPhase, Option<bool>)> = BTreeMap::new();
    let mut copying: HashMap<ServerId, bool> = HashMap::new();
    let mut last: HashMap<ServerId, ServerStatus> = HashMap::new();
    for r in &read.records {
        deploy.clone_from(&r.deploy);
        match &r.event {
            Event::DeployStarted { layout: l, .. } => layout = *l,
            // One proxy's answer is for the record; the server's own result counts.
            Event::Pool {
                server,
                proxy: None,
                action,
                phase,
                ok,
                ..
            } => {
                pool.insert(server.clone(), (*action, *phase, *ok));
            }
            Event::ServerState { server, state, .. } => {
                // The in-place copy runs in `transferring`; any later state means it ended.
                copying.insert(server.clone(), *state == ServerStatus::Transferring);
                last.insert(server.clone(), *state);
            }
            _ => {}
        }
    }
    pool.into_iter()
        .filter_map(|(server, (action, phase, ok))| {
            let out = match (action, phase) {
                (PoolAction::Depool, _) => true,
                // Repool sent but never confirmed: it may be out.
                (PoolAction::Repool, PoolPhase::Intent) => true,
                (PoolAction::Repool, PoolPhase::Result) => ok != Some(true),
            };
            out.then(|| LeftOut {
                deploy: deploy.clone(),
                depool_confirmed: action == PoolAction::Depool
                    && phase == PoolPhase::Result
                    && ok == Some(true)
                    || action == PoolAction::Repool,
                copy_finished: layout == Layout::Releases
                    || !copying.get(&server).copied().unwrap_or(false),
                last_state: last.get(&server).copied(),
                server,
            })
        })
        .collect()
}
