//! Which faults a simulated fleet injects, each a probability per step.

/// Fault probabilities, each per step (0.0..=1.0). Zero rates draw nothing.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Faults {
    /// A server's new release is broken: every canary attempt on it fails.
    pub canary_fail: f64,
    /// A copy (or in-place transfer) fails; an in-place one leaves a half-copied tree.
    pub transfer_fail: f64,
    /// A healthy server fails one canary attempt anyway (flapping).
    pub flap: f64,
    /// A step never answers (it hangs past its deadline).
    pub hang: f64,
    /// A step takes ten times as long.
    pub slow: f64,
    /// A proxy cannot be reached during a pool read or change.
    pub proxy_down: f64,
    /// The balancer reloads and forgets runtime state: servers in maintenance come back UP.
    pub reload: f64,
    /// A hook fails.
    pub hook_fail: f64,
    /// The error gate sees too many errors after the repool.
    pub gate_fail: f64,
    /// A rollback fails.
    pub rollback_fail: f64,
    /// The staging canary fails (every attempt).
    pub staging_fail: f64,
    /// A server of the backend that is not deployed goes DOWN on its own, or one that did
    /// comes back UP: what the pool read before each depool is there to see.
    pub outage: f64,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults::default()
    }

    /// Only broken releases, at rate `p`.
    pub fn canary(p: f64) -> Self {
        Faults {
            canary_fail: p,
            ..Faults::default()
        }
    }

    /// Only failed transfers, at rate `p`.
    pub fn transfer(p: f64) -> Self {
        Faults {
            transfer_fail: p,
            ..Faults::default()
        }
    }

    /// Every kind of fault at rate `p` (reloads and hangs at a tenth of it).
    pub fn chaos(p: f64) -> Self {
        Faults {
            canary_fail: p,
            transfer_fail: p,
            flap: p,
            hang: p / 10.0,
            slow: p,
            proxy_down: p,
            reload: p / 10.0,
            hook_fail: p,
            gate_fail: p,
            rollback_fail: p,
            staging_fail: 0.0,
            outage: 0.0,
        }
    }
}
