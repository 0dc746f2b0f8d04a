//! One conformance suite for every implementation of a port.
//!
//! The fake fleet passes it here; each adapter crate runs the same functions against
//! the real programs (HAProxy, rsync, curl), so the fake cannot drift from reality.
//! Each check takes a port and a server the caller has prepared as the check says,
//! and returns `Err` with what was wrong.

use std::time::Duration;

use mwdeploy_core::event::Summary;
use mwdeploy_core::model::{Health, HookPoint, PoolState, ReleaseId, Server};
use mwdeploy_core::ports::{HealthCheck, Hook, Note, Notifier, PoolControl, Progress, Transfer};

/// A broken promise of a port.
pub type Failure = String;

/// `server` is UP: after `depool` it is not served, after `repool` it is served again,
/// and `states()` lists it with the same state as `state()`.
pub async fn pool_round_trip(pool: &dyn PoolControl, server: &Server) -> Result<(), Failure> {
    let progress = Progress::discard(server.id.clone());
    let before = pool
        .state(server)
        .await
        .map_err(|e| format!("state: {e}"))?;
    if before != PoolState::Up {
        return Err(format!("{} should start UP, is {before}", server.id));
    }
    pool.depool(server, &progress)
        .await
        .map_err(|e| format!("depool: {e}"))?;
    let out = pool
        .state(server)
        .await
        .map_err(|e| format!("state: {e}"))?;
    if out.is_serving() {
        return Err(format!("{} still served after depool ({out})", server.id));
    }
    let all = pool.states().await.map_err(|e| format!("states: {e}"))?;
    match all.iter().find(|(id, _)| id == server.backend_name()) {
        Some((_, s)) if *s == out => {}
        Some((_, s)) => return Err(format!("states() says {s}, state() says {out}")),
        None => return Err(format!("states() does not list {}", server.id)),
    }
    pool.repool(server, &progress)
        .await
        .map_err(|e| format!("repool: {e}"))?;
    let back = pool
        .state(server)
        .await
        .map_err(|e| format!("state: {e}"))?;
    if back != PoolState::Up {
        return Err(format!("{} not UP after repool ({back})", server.id));
    }
    Ok(())
}

/// A server the balancer does not know: depool must fail (never report success).
pub async fn pool_unknown_server_fails(
    pool: &dyn PoolControl,
    unknown: &Server,
) -> Result<(), Failure> {
    let progress = Progress::discard(unknown.id.clone());
    match pool.depool(unknown, &progress).await {
        Ok(()) => Err(format!(
            "depool of unknown server {} reported success",
            unknown.id
        )),
        Err(_) => Ok(()),
    }
}

/// `server` serves working code: one check is healthy.
pub async fn health_healthy(check: &dyn HealthCheck, server: &Server) -> Result<(), Failure> {
    let progress = Progress::discard(server.id.clone());
    match check.check(server, &progress).await {
        Health::Healthy => Ok(()),
        other => Err(format!("{} should be healthy, got {other:?}", server.id)),
    }
}

/// `server` serves broken code: one check is unhealthy with a reason.
pub async fn health_unhealthy(check: &dyn HealthCheck, server: &Server) -> Result<(), Failure> {
    let progress = Progress::discard(server.id.clone());
    match check.check(server, &progress).await {
        Health::Unhealthy { reason, .. } if !reason.is_empty() => Ok(()),
        other => Err(format!(
            "{} should be unhealthy with a reason, got {other:?}",
            server.id
        )),
    }
}

/// With a transfer that keeps releases: copy, activate, then rollback returns a release
/// other than the new one.
pub async fn transfer_copy_activate_rollback(
    transfer: &dyn Transfer,
    server: &Server,
    release: &ReleaseId,
) -> Result<(), Failure> {
    let progress = Progress::discard(server.id.clone());
    transfer
        .copy(server, release, &progress)
        .await
        .map_err(|e| format!("copy: {e}"))?;
    transfer
        .activate(server, release, &progress)
        .await
        .map_err(|e| format!("activate: {e}"))?;
    if !transfer.can_rollback() {
        return Ok(());
    }
    let back = transfer
        .rollback(server, &progress)
        .await
        .map_err(|e| format!("rollback: {e}"))?;
    if &back == release {
        return Err(format!("rollback on {} left {release} live", server.id));
    }
    Ok(())
}

/// A hook at a point `server` has no command for does nothing, and succeeds: the machine
/// asks only where the server's hooks say, but a call anyway must not fail a server.
pub async fn hook_without_commands_is_a_no_op(
    hook: &dyn Hook,
    server: &Server,
    point: HookPoint,
    release: &ReleaseId,
) -> Result<(), Failure> {
    let progress = Progress::discard(server.id.clone());
    hook.run(server, point, release, &progress)
        .await
        .map_err(|e| format!("{point} on {} with no command: {e}", server.id))
}

/// A hook whose command fails at `point` is an error, and says which point.
pub async fn hook_failure_names_its_point(
    hook: &dyn Hook,
    server: &Server,
    point: HookPoint,
    release: &ReleaseId,
) -> Result<(), Failure> {
    let progress = Progress::discard(server.id.clone());
    match hook.run(server, point, release, &progress).await {
        Ok(()) => Err(format!(
            "{point} on {}: a failing hook succeeded",
            server.id
        )),
        Err(e) if e.to_string().contains(point.as_str()) => Ok(()),
        Err(e) => Err(format!(
            "{point} on {}: the error does not name the point: {e}",
            server.id
        )),
    }
}

/// A deploy's notes, each of which a notifier takes within `within` (the driver's
/// deadline for a note), failing or not; and when it fails, its error never holds
/// `secret` (a webhook's URL, or any part of it that may not be shown).
pub async fn notifier_is_bounded_and_discreet(
    notifier: &dyn Notifier,
    server: &Server,
    within: Duration,
    secret: &str,
) -> Result<(), Failure> {
    let notes = [
        Note::Started {
            deploy: "conformance".into(),
            servers: 1,
        },
        Note::ServerFailed {
            server: server.id.clone(),
            detail: "canary failed: HTTP 500".into(),
        },
        Note::Finished {
            deploy: "conformance".into(),
            summary: Summary {
                failed: 1,
                ..Summary::default()
            },
        },
    ];
    for note in &notes {
        match tokio::time::timeout(within, notifier.notify(note)).await {
            Err(_) => return Err(format!("a note took longer than {within:?}: {note:?}")),
            Ok(Err(e)) if !secret.is_empty() && e.to_string().contains(secret) => {
                return Err(format!("its error shows what it may not: {e}"))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
