//! `HealthCheck` for mwdeploy: curl run on the target, a command check, an error-rate gate.
//!
//! This crate is a shell for now: the adapter arrives with its own issue
//! ("mwdeploy-canary: the canary check on the server itself"). It will
//! implement [`mwdeploy_core::ports::HealthCheck`] and pass the conformance
//! suite in [`mwdeploy_core::conformance`].
#![warn(missing_docs)]
