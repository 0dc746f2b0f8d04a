//! `Transfer` over rsync: release directories, an atomic switch, instant rollback.
//!
//! This crate is a shell for now: the adapter arrives with its own issue
//! ("mwdeploy-rsync: release directories with an atomic switch"). It will
//! implement [`mwdeploy_core::ports::Transfer`] and pass the conformance suite
//! in [`mwdeploy_core::conformance`].
#![warn(missing_docs)]
