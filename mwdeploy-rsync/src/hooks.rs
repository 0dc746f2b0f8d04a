//! [`Hooks`]: core's `Hook` port. Argv lists per hook point, run on the server through
//! core's exec, with `{server}`, `{release}`, `{release_path}` and `{prod_path}`
//! replaced in each argument.
//!
//! It lives beside the transfer because `{release_path}` is the transfer's business:
//! the new release's folder for `post_copy` (the server still serves the old one), the
//! live release's folder afterwards, the live tree in place.
//!
//! # Hooks write new files
//!
//! A new release's unchanged files are hard links to the previous release's: a hook
//! that rewrites such a file in place (open, truncate, write) changes the previous
//! release too, and a rollback would bring back the rewritten file. Hooks must write a
//! new file and rename it over the old one (MediaWiki's l10n rebuild does). A `post_copy`
//! hook that cannot is declared with [`Hooks::unshare_before_post_copy`]: those paths are
//! copied to new files (new inodes) in the new release before the hooks run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use mwdeploy_core::ports::{Hook, Progress, ProgressUpdate};
use mwdeploy_core::{HookPoint, HookPoints, Layout, PortError, ReleaseId, Server, ServerId};
use mwdeploy_exec::{Cmd, Hosts};

use crate::config::{RsyncConfig, ServerPaths, TreePath};
use crate::error::RsyncError;
use crate::remote::{sibling, Remote};

/// The placeholders replaced in every argument of a hook.
pub const PLACEHOLDERS: [&str; 4] = ["{server}", "{release}", "{release_path}", "{prod_path}"];

type Commands = BTreeMap<HookPoint, Vec<Vec<String>>>;

/// The configured hooks of a deploy (config `hooks:` and each server's `hooks:`).
///
/// Hooks run as the deploy user, not through `remote_sudo`: a hook that needs root says
/// `sudo` itself (`["sudo", "systemctl", "reload", "php8.2-fpm"]`).
///
/// ```
/// use std::sync::Arc;
/// use mwdeploy_exec::{Hosts, SshDefaults};
/// use mwdeploy_core::{HookPoint, Layout, ServerId};
/// use mwdeploy_rsync::{Hooks, RsyncConfig};
/// let hosts = Arc::new(Hosts::new(SshDefaults::new("mwdeploy")).unwrap());
/// let config = RsyncConfig::new("/srv/mediawiki-staging", "/srv/mediawiki", Layout::Releases);
/// let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
/// let mw2 = ServerId::new("mw2").unwrap();
/// let hooks = Hooks::new(hosts, &config).unwrap()
///     .global(HookPoint::PostActivate, vec![argv(&["sudo", "systemctl", "reload", "php8.2-fpm"])]).unwrap()
///     .server(mw2.clone(), HookPoint::PostActivate, vec![]).unwrap();
/// assert!(hooks.points(&ServerId::new("mw1").unwrap()).contains(HookPoint::PostActivate));
/// assert!(!hooks.points(&mw2).contains(HookPoint::PostActivate), "mw2's own (empty) list replaces it");
/// ```
#[derive(Debug, Clone)]
pub struct Hooks {
    hosts: Arc<Hosts>,
    config: RsyncConfig,
    global: Commands,
    servers: BTreeMap<ServerId, Commands>,
    unshare: Vec<TreePath>,
}

impl Hooks {
    /// No hooks yet; paths come from `config` (its layout, `prod_path`, `releases_dir`).
    pub fn new(hosts: Arc<Hosts>, config: &RsyncConfig) -> Result<Self, RsyncError> {
        config.validate()?;
        Ok(Hooks {
            hosts,
            config: config.clone(),
            global: BTreeMap::new(),
            servers: BTreeMap::new(),
            unshare: Vec::new(),
        })
    }

    /// `commands` run, in order, at `point` on every server without its own list.
    pub fn global(
        mut self,
        point: HookPoint,
        commands: Vec<Vec<String>>,
    ) -> Result<Self, RsyncError> {
        check(&commands)?;
        self.global.insert(point, commands);
        Ok(self)
    }

    /// `server`'s own list for `point`, replacing the global one (an empty list: none).
    pub fn server(
        mut self,
        server: ServerId,
        point: HookPoint,
        commands: Vec<Vec<String>>,
    ) -> Result<Self, RsyncError> {
        check(&commands)?;
        self.servers
            .entry(server)
            .or_default()
            .insert(point, commands);
        Ok(self)
    }

    /// Paths (in the tree) that `post_copy` hooks rewrite in place: in the new release
    /// they are copied to new files before the hooks run, so the previous release,
    /// which shares their inodes, keeps its bytes.
    pub fn unshare_before_post_copy(mut self, paths: Vec<TreePath>) -> Self {
        self.unshare = paths;
        self
    }

    /// The commands `server` runs at `point`.
    pub fn commands(&self, server: &ServerId, point: HookPoint) -> &[Vec<String>] {
        self.servers
            .get(server)
            .and_then(|own| own.get(&point))
            .or_else(|| self.global.get(&point))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The points where `server` has hooks: for [`Server::hooks`], so the engine asks only
    /// for those.
    pub fn points(&self, server: &ServerId) -> HookPoints {
        HookPoint::ALL
            .iter()
            .filter(|p| !self.commands(server, **p).is_empty())
            .fold(HookPoints::NONE, |set, p| set.with(*p))
    }

    async fn run_hooks(
        &self,
        server: &Server,
        point: HookPoint,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let commands = self.commands(&server.id, point);
        let releases = self.config.layout == Layout::Releases;
        let unshare = releases && point == HookPoint::PostCopy && !self.unshare.is_empty();
        if commands.is_empty() && !unshare {
            return Ok(());
        }
        let paths = self.config.paths(server)?;
        let remote = Remote::new(&self.hosts, server)?;
        if unshare {
            self.unshare(&remote, &paths.release(release), progress)
                .await?;
        }
        let (id, release_path) = self
            .release_for(&remote, &paths, point, release, commands)
            .await?;
        let values = [
            server.id.to_string(),
            id.to_string(),
            release_path.display().to_string(),
            paths.prod.display().to_string(),
        ];
        let vars: Vec<(&str, String)> = PLACEHOLDERS.into_iter().zip(values).collect();
        for argv in commands {
            let cmd = Cmd::new(argv.iter().map(|a| expand(a, &vars)));
            progress.report(ProgressUpdate::line(format!("$ {cmd}")));
            let out = remote
                .exec(&cmd, &mut |_, line| {
                    if !line.trim().is_empty() {
                        progress.report(ProgressUpdate::line(line));
                    }
                })
                .await?;
            if !out.success() {
                return Err(RsyncError::Hook {
                    server: server.id.clone(),
                    point,
                    cmd: cmd.to_string(),
                    code: out.code,
                    detail: out.last_words().to_string(),
                });
            }
        }
        Ok(())
    }

    /// The release a hook acts on. `post_copy`: the new one. Later points, in the release
    /// layout: the live one (after a rollback, that is not the deploy's release). In place:
    /// the live tree.
    async fn release_for(
        &self,
        remote: &Remote,
        paths: &ServerPaths,
        point: HookPoint,
        release: &ReleaseId,
        commands: &[Vec<String>],
    ) -> Result<(ReleaseId, PathBuf), RsyncError> {
        if self.config.layout == Layout::Inplace {
            return Ok((release.clone(), paths.prod.clone()));
        }
        let asks = commands
            .iter()
            .flatten()
            .any(|a| a.contains("{release}") || a.contains("{release_path}"));
        if point == HookPoint::PostCopy || !asks {
            return Ok((release.clone(), paths.release(release)));
        }
        Ok(match remote.read_link(&paths.prod).await? {
            Some(target) => match paths.release_of(&target) {
                Some(live) => {
                    let path = paths.release(&live);
                    (live, path)
                }
                None => (release.clone(), paths.resolve(&target)),
            },
            None => (release.clone(), paths.prod.clone()),
        })
    }

    async fn unshare(
        &self,
        remote: &Remote,
        base: &Path,
        progress: &Progress,
    ) -> Result<(), RsyncError> {
        let targets: Vec<String> = self
            .unshare
            .iter()
            .map(|p| base.join(p.as_str()).display().to_string())
            .collect();
        let mut argv = vec!["find".to_string()];
        argv.extend(targets.iter().cloned());
        argv.extend(["-maxdepth", "0", "-printf", "%p\\0"].map(String::from));
        // A path a hook will create is not there yet: find exits 1, lists the others.
        let (_, out) = remote.run(argv).await?;
        let present: BTreeSet<&str> = out.stdout.split('\0').collect();
        for target in targets.iter().filter(|t| present.contains(t.as_str())) {
            let tmp = sibling(Path::new(target), ".mwdeploy-unshare")
                .display()
                .to_string();
            remote.ok(["rm", "-rf", "--", &tmp]).await?;
            // cp without -l: new inodes, same bytes, modes and times.
            remote.ok(["cp", "-a", "--", target, &tmp]).await?;
            remote.ok(["rm", "-rf", "--", target]).await?;
            remote.ok(["mv", "-T", "--", &tmp, target]).await?;
            progress.report(ProgressUpdate::line(format!(
                "{target}: own copy in the new release, for the post_copy hooks to rewrite"
            )));
        }
        Ok(())
    }
}

fn check(commands: &[Vec<String>]) -> Result<(), RsyncError> {
    for argv in commands {
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(RsyncError::Config {
                setting: "hooks",
                why: format!("{argv:?} is not a command: an argv list starts with the program"),
            });
        }
    }
    Ok(())
}

/// Replaces each placeholder of `vars` in `arg`, in one pass: a value that happens to
/// contain a placeholder's text is left as it is.
pub(crate) fn expand(arg: &str, vars: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    'scan: while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        for (name, value) in vars {
            if let Some(after) = tail.strip_prefix(name) {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        out.push('{');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

#[async_trait]
impl Hook for Hooks {
    async fn run(
        &self,
        server: &Server,
        point: HookPoint,
        release: &ReleaseId,
        progress: &Progress,
    ) -> Result<(), PortError> {
        self.run_hooks(server, point, release, progress)
            .await
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mwdeploy_exec::SshDefaults;

    #[test]
    fn placeholders_are_replaced_per_argument_in_one_pass() {
        let vars = [
            ("{server}", "mw1".to_string()),
            ("{release}", "r2".to_string()),
            ("{release_path}", "/srv/rel/{server}".to_string()),
            ("{prod_path}", "/srv/mediawiki".to_string()),
        ];
        assert_eq!(
            expand("{release_path}/scripts/mwscript.php", &vars),
            "/srv/rel/{server}/scripts/mwscript.php"
        );
        assert_eq!(expand("--wiki={server}-{release}", &vars), "--wiki=mw1-r2");
        assert_eq!(expand("{unknown} {", &vars), "{unknown} {");
        assert_eq!(expand("{prod_path}", &vars), "/srv/mediawiki");
    }

    #[test]
    fn per_server_lists_replace_the_global_ones_of_the_same_point() {
        let hosts = Arc::new(Hosts::new(SshDefaults::new("u")).unwrap());
        let config = RsyncConfig::new("/s", "/srv/mw", Layout::Releases);
        let argv = |s: &str| vec![s.to_string()];
        let mw1 = ServerId::new("mw1").unwrap();
        let mw2 = ServerId::new("mw2").unwrap();
        let hooks = Hooks::new(hosts, &config)
            .unwrap()
            .global(HookPoint::PostActivate, vec![argv("reload")])
            .unwrap()
            .global(HookPoint::PostCopy, vec![argv("l10n")])
            .unwrap()
            .server(
                mw2.clone(),
                HookPoint::PostActivate,
                vec![argv("own"), argv("more")],
            )
            .unwrap();
        assert_eq!(
            hooks.commands(&mw1, HookPoint::PostActivate),
            [argv("reload")]
        );
        assert_eq!(
            hooks.commands(&mw2, HookPoint::PostActivate),
            [argv("own"), argv("more")]
        );
        assert_eq!(hooks.commands(&mw2, HookPoint::PostCopy), [argv("l10n")]);
        assert_eq!(
            hooks.points(&mw1),
            HookPoints::of(&[HookPoint::PostActivate, HookPoint::PostCopy])
        );
        assert!(hooks
            .clone()
            .global(HookPoint::PreDepool, vec![vec![]])
            .is_err());
        assert!(hooks.global(HookPoint::PreDepool, vec![argv("")]).is_err());
    }
}
