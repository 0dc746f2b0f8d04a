//! The engine's ports built from the config (the library's [`mwdeploy::ports`]), with
//! the command's way of telling an unreachable proxy: one line per proxy on stderr.

pub(crate) use mwdeploy::ports::*;

use mwdeploy_exec::Hosts;
use mwdeploy_haproxy::HaproxyPool;

use crate::config::Config;

/// [`mwdeploy::ports::reachable_haproxy`], each unreachable proxy's error printed.
pub(crate) async fn reachable_haproxy(
    config: &Config,
    hosts: &Hosts,
) -> Result<HaproxyPool, Vec<String>> {
    mwdeploy::ports::reachable_haproxy(config, hosts)
        .await
        .inspect_err(|unreachable| {
            for e in unreachable {
                eprintln!("mwdeploy: {e}");
            }
        })
}
