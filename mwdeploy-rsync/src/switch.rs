//! The transfers of the operations that switch releases without copying: a rollback
//! (`mwdeploy rollback`) and a recovery after a killed deploy (`mwdeploy recover`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use async_trait::async_trait;
use mwdeploy_core::ports::{Progress, Transfer};
use mwdeploy_core::{PortError, ReleaseId, Server, ServerId};

use crate::RsyncTransfer;

/// The engine's `Transfer` for a rollback: `activate` switches to the earlier release,
/// `rollback` switches back to the release that was live before.
#[derive(Debug)]
pub struct RollbackTransfer {
    rsync: RsyncTransfer,
    /// `--to`; `None`: each server's previous release.
    to: Option<ReleaseId>,
    /// The release each server served before the rollback.
    before: Mutex<BTreeMap<ServerId, ReleaseId>>,
}

impl RollbackTransfer {
    /// A rollback to `to` (each server's previous release when `None`) with `rsync`.
    pub fn new(rsync: RsyncTransfer, to: Option<ReleaseId>) -> Self {
        RollbackTransfer {
            rsync,
            to,
            before: Mutex::new(BTreeMap::new()),
        }
    }
}

#[async_trait]
impl Transfer for RollbackTransfer {
    /// Nothing is copied: the target must already be on the server. Checked here, while
    /// the server still serves, so a server without it is never depooled.
    async fn copy(&self, server: &Server, _: &ReleaseId, _: &Progress) -> Result<(), PortError> {
        let r = self.rsync.releases(server).await.map_err(PortError::from)?;
        let live = r.live_release().cloned().ok_or_else(|| {
            PortError::misconfigured(format!(
                "{}: no release is live at {} (not the release layout yet)",
                server.id,
                r.paths.prod.display()
            ))
        })?;
        match &self.to {
            Some(to) if !r.releases.iter().any(|e| &e.id == to) => {
                return Err(PortError::misconfigured(format!(
                    "{}: release {to} is not on this server (`mwdeploy releases --servers {}`)",
                    server.id, server.id
                )))
            }
            Some(_) => {}
            None if r.previous.is_none() => {
                return Err(PortError::misconfigured(format!(
                    "{}: no earlier release to go back to from {live}",
                    server.id
                )))
            }
            None => {}
        }
        self.before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server.id.clone(), live);
        Ok(())
    }

    async fn activate(
        &self,
        server: &Server,
        _: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError> {
        self.rsync
            .rollback_to(server, self.to.as_ref(), progress)
            .await
            .map(|_| ())
            .map_err(PortError::from)
    }

    async fn rollback(&self, server: &Server, progress: &Progress) -> Result<ReleaseId, PortError> {
        let before = self
            .before
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&server.id)
            .cloned();
        let Some(before) = before else {
            return Err(PortError::misconfigured(format!(
                "{}: the release live before the rollback is not known",
                server.id
            )));
        };
        self.rsync
            .rollback_to(server, Some(&before), progress)
            .await
            .map_err(PortError::from)
    }

    fn can_rollback(&self) -> bool {
        true
    }
}

/// The transfer of a recovery: copies again only what was cut.
#[derive(Debug)]
pub struct RecoverTransfer {
    rsync: RsyncTransfer,
    /// In place: servers whose copy into the live tree was cut.
    recopy: BTreeSet<ServerId>,
    releases: bool,
}

impl RecoverTransfer {
    /// A recovery with `rsync`: the servers of `recopy` (in place, their copy into the
    /// live tree was cut) are copied again; `releases`: the release layout, where a
    /// canary that fails can roll back.
    pub fn new(rsync: RsyncTransfer, recopy: BTreeSet<ServerId>, releases: bool) -> Self {
        RecoverTransfer {
            rsync,
            recopy,
            releases,
        }
    }
}

#[async_trait]
impl Transfer for RecoverTransfer {
    async fn copy(&self, _: &Server, _: &ReleaseId, _: &Progress) -> Result<(), PortError> {
        Ok(())
    }

    async fn activate(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError> {
        if self.recopy.contains(&server.id) {
            return self.rsync.activate(server, release, progress).await;
        }
        Ok(())
    }

    async fn rollback(&self, server: &Server, progress: &Progress) -> Result<ReleaseId, PortError> {
        self.rsync.rollback(server, progress).await
    }

    fn can_rollback(&self) -> bool {
        self.releases
    }
}
