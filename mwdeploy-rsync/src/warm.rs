//! Opening the next servers' ssh connections ahead of their turn.
//!
//! In the in-place layout a server's first remote command comes right after its depool:
//! without this, the ssh handshake (a tenth of a second or more) is paid while the server
//! is out of the pool. [`WarmAhead`] wraps the transfer: when one server's copy into its
//! live tree starts, the connections of the next `parallel` servers in deploy order are
//! opened in the background. A connection that cannot be opened is left to the server's
//! own first command, which reports it.
//!
//! ```text
//!  activate(mw3) ──> connect mw4 (background) ──> rsync into mw3's live tree
//!                    mw4: depool, then its first command on an open connection
//! ```

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mwdeploy_core::ports::{Progress, Transfer};
use mwdeploy_core::{Plan, PortError, ReleaseId, Server};
use mwdeploy_exec::Hosts;

/// A transfer that opens the next servers' connections while one is activated.
///
/// Call [`WarmAhead::new`] inside a tokio runtime: the connections open on tasks of it.
#[allow(missing_debug_implementations)] // holds a dyn Transfer
pub struct WarmAhead {
    inner: Arc<dyn Transfer>,
    hosts: Arc<Hosts>,
    /// The servers in the order the deploy reaches them.
    order: Vec<Server>,
    /// How many servers past the one being activated are opened.
    ahead: usize,
    /// Which of `order` were opened (or are being opened).
    opened: Mutex<Vec<bool>>,
}

impl WarmAhead {
    /// Wraps `inner` for `plan`'s servers, and opens the first ones' connections now.
    pub fn new(inner: Arc<dyn Transfer>, hosts: Arc<Hosts>, plan: &Plan) -> Self {
        let order: Vec<Server> = match plan.stages() {
            Ok(stages) => stages
                .iter()
                .flatten()
                .map(|&i| plan.servers[i as usize].clone())
                .collect(),
            Err(_) => plan.servers.clone(),
        };
        let ahead = plan.policy.parallel.max(1) as usize;
        let w = WarmAhead {
            inner,
            hosts,
            opened: Mutex::new(vec![false; order.len()]),
            order,
            ahead,
        };
        w.open_from(0);
        w
    }

    /// Opens, in the background, the connections of `order[from..from + ahead]` that
    /// were not opened yet.
    fn open_from(&self, from: usize) {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        let end = (from + self.ahead).min(self.order.len());
        for i in from..end {
            if std::mem::replace(&mut opened[i], true) {
                continue;
            }
            let Ok(Some(runner)) = self.hosts.ssh_runner(&self.order[i]) else {
                continue;
            };
            tokio::spawn(async move {
                let _ = runner.connect().await;
            });
        }
    }
}

#[async_trait]
impl Transfer for WarmAhead {
    async fn copy(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError> {
        self.inner.copy(server, release, progress).await
    }

    async fn activate(
        &self,
        server: &Server,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError> {
        if let Some(i) = self.order.iter().position(|s| s.id == server.id) {
            self.open_from(i + 1);
        }
        self.inner.activate(server, release, progress).await
    }

    async fn rollback(&self, server: &Server, progress: &Progress) -> Result<ReleaseId, PortError> {
        self.inner.rollback(server, progress).await
    }

    fn can_rollback(&self) -> bool {
        self.inner.can_rollback()
    }
}
