//! The deploy lock: one deploy (or manual pool change, or recovery) at a time per
//! state dir.
//!
//! It is an `flock` on `<state_dir>/lock`, so the kernel releases it when its holder
//! dies, however it dies. The file also holds a record of the holder (user, host, pid,
//! start time, message), readable by anyone, so a refused operator learns who holds it.
//! A record whose holder is gone is stale and can be cleared; a live one cannot.
//!
//! ```
//! use mwdeploy_runtime::lock::{DeployLock, Holder, LockError};
//! let dir = std::env::temp_dir().join(format!("mwdeploy-lock-doc-{}", std::process::id()));
//! let held = DeployLock::acquire(&dir, Holder::current("deploying 1.45")).unwrap();
//! match DeployLock::acquire(&dir, Holder::current("a second deploy")) {
//!     Err(LockError::Held { holder, .. }) => assert_eq!(holder.unwrap().message, "deploying 1.45"),
//!     other => panic!("{other:?}"),
//! }
//! drop(held);
//! assert!(DeployLock::acquire(&dir, Holder::current("now it is free")).is_ok());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Who holds (or held) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Holder {
    /// User name.
    pub user: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it took the lock (RFC 3339, UTC).
    pub started: String,
    /// Why (`-m`).
    pub message: String,
}

impl Holder {
    /// This process, now, for `message`.
    pub fn current(message: impl Into<String>) -> Self {
        Holder {
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".into()),
            host: host_name(),
            pid: std::process::id(),
            started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} (pid {}) since {}",
            self.user, self.host, self.pid, self.started
        )?;
        if !self.message.is_empty() {
            write!(f, ": {:?}", self.message)?;
        }
        Ok(())
    }
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The lock could not be taken or cleared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Someone holds it.
    #[error("{path} is held by {}", holder.as_ref().map(|h| h.to_string()).unwrap_or_else(|| "another process (no record)".into()))]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Its record, if readable.
        holder: Option<Box<Holder>>,
    },
    /// The lock file could not be opened, locked or written.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// The state of the lock, as `mwdeploy lock status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockStatus {
    /// Nobody holds it and no record is left.
    Free,
    /// Nobody holds it, but a record of a holder that is gone remains.
    Stale(Holder),
    /// Held; the record says by whom, if it could be read.
    Held(Option<Holder>),
}

/// The held lock. Dropping it releases the lock and clears the record.
#[derive(Debug)]
pub struct DeployLock {
    path: PathBuf,
    file: File,
}

/// The lock file of `state_dir`.
pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

fn open(state_dir: &Path) -> Result<(PathBuf, File), LockError> {
    let path = lock_path(state_dir);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(state_dir).map_err(io)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    Ok((path, file))
}

fn read_record(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

fn read_record_at(path: &Path) -> Option<Holder> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(text.trim()).ok()
}

impl DeployLock {
    /// Takes the lock at once, or fails naming its holder. Never waits.
    pub fn acquire(state_dir: &Path, holder: Holder) -> Result<DeployLock, LockError> {
        let (path, mut file) = open(state_dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_record_at(&path).map(Box::new);
                return Err(LockError::Held { path, holder });
            }
            Err(TryLockError::Error(source)) => return Err(LockError::Io { path, source }),
        }
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut line = serde_json::to_string(&holder).map_err(|e| io(io::Error::other(e)))?;
        line.push('\n');
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(DeployLock { path, file })
    }

    /// Who holds the lock of `state_dir`, if anyone; a record left by a holder that is
    /// gone shows as stale.
    pub fn status(state_dir: &Path) -> Result<LockStatus, LockError> {
        let (path, mut file) = open(state_dir)?;
        match file.try_lock() {
            Ok(()) => {
                let record = read_record(&mut file);
                let _ = file.unlock();
                Ok(match record {
                    Some(h) => LockStatus::Stale(h),
                    None => LockStatus::Free,
                })
            }
            Err(TryLockError::WouldBlock) => Ok(LockStatus::Held(read_record_at(&path))),
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    /// Clears a stale record (`mwdeploy lock release`); refuses while the holder lives.
    /// Returns the record cleared, if there was one.
    pub fn clear_stale(state_dir: &Path) -> Result<Option<Holder>, LockError> {
        let (path, mut file) = open(state_dir)?;
        match file.try_lock() {
            Ok(()) => {
                let record = read_record(&mut file);
                let io = |source| LockError::Io {
                    path: path.clone(),
                    source,
                };
                file.set_len(0).map_err(io)?;
                file.sync_data().map_err(io)?;
                let _ = file.unlock();
                Ok(record)
            }
            Err(TryLockError::WouldBlock) => {
                let holder = read_record_at(&path).map(Box::new);
                Err(LockError::Held { path, holder })
            }
            Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        // Clear the record first, so nobody reads us as the holder after we let go.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}
