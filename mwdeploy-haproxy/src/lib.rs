//! `PoolControl` over the HAProxy runtime API.
//!
//! This crate is a shell for now: the adapter arrives with its own issue
//! ("mwdeploy-haproxy: depool and repool through the HAProxy runtime API").
//! It will implement [`mwdeploy_core::ports::PoolControl`] and pass the
//! conformance suite in [`mwdeploy_core::conformance`].
#![warn(missing_docs)]
