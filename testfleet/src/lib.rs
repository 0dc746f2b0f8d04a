//! A real fleet on loopback (haproxy + nginx + php-fpm + sshd) for tests and benches.
//!
//! A shell for now: it is built by the "testfleet and exec" issue.
#![warn(missing_docs)]
