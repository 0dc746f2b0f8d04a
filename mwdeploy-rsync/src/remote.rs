//! Commands on a server, through core's exec (argv only; over ssh every argument is
//! quoted for the remote shell), and what their output says.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mwdeploy_core::{ReleaseId, Server, ServerId};
use mwdeploy_exec::{Cmd, CommandRunner, ExecError, Hosts, OnLine, Output};

use crate::config::ServerPaths;
use crate::error::RsyncError;
use crate::release::Manifest;

/// Every program this crate runs on a server, for a sudoers entry of a non-root deploy
/// user with `remote_sudo` (plus the hooks' own commands).
pub const REMOTE_COMMANDS: [&str; 11] = [
    "cp", "dd", "df", "find", "head", "ln", "mkdir", "mv", "readlink", "rm", "rsync",
];

/// One server's command runner, with the deploy's sudo setting.
pub(crate) struct Remote {
    pub(crate) server: ServerId,
    runner: Arc<dyn CommandRunner>,
    sudo: bool,
    local: bool,
}

impl Remote {
    pub(crate) fn new(hosts: &Hosts, server: &Server) -> Result<Self, RsyncError> {
        let runner = hosts.runner(server).map_err(|e| RsyncError::Config {
            setting: "ssh",
            why: format!("server {}: {e}", server.id),
        })?;
        Ok(Remote {
            server: server.id.clone(),
            runner,
            sudo: hosts.sudo(),
            local: server.local,
        })
    }

    /// Where its commands run (`local`, or `user@host:port`).
    pub(crate) fn host(&self) -> String {
        self.runner.host()
    }

    /// `argv` as the deploy runs file operations: through `sudo -n` with `remote_sudo`.
    pub(crate) fn cmd<I, S>(&self, argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd::new(argv).sudo(self.sudo)
    }

    /// Runs `cmd`; an ssh failure (status 255 from ssh) is [`RsyncError::Unreachable`].
    pub(crate) async fn exec(
        &self,
        cmd: &Cmd,
        on_line: &mut OnLine<'_>,
    ) -> Result<Output, RsyncError> {
        let out = self
            .runner
            .run(cmd, on_line)
            .await
            .map_err(|e| self.exec_error(cmd, e))?;
        if !self.local && out.code == Some(255) {
            return Err(RsyncError::Unreachable {
                server: self.server.clone(),
                host: self.runner.host(),
                detail: out.last_words().to_string(),
            });
        }
        Ok(out)
    }

    fn exec_error(&self, cmd: &Cmd, e: ExecError) -> RsyncError {
        match e {
            ExecError::Spawn {
                program, source, ..
            } => RsyncError::Spawn {
                server: self.server.clone(),
                program,
                detail: source.to_string(),
            },
            ExecError::Io { source, .. } if !self.local => RsyncError::Unreachable {
                server: self.server.clone(),
                host: self.runner.host(),
                detail: source.to_string(),
            },
            other => RsyncError::Command {
                server: self.server.clone(),
                cmd: cmd.to_string(),
                code: None,
                detail: other.to_string(),
            },
        }
    }

    /// Runs `argv` (with sudo as configured); its exit status is the caller's to read.
    pub(crate) async fn run<I, S>(&self, argv: I) -> Result<(Cmd, Output), RsyncError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let cmd = self.cmd(argv);
        let out = self.exec(&cmd, &mut |_, _| {}).await?;
        Ok((cmd, out))
    }

    /// Runs `argv` and fails unless it exits with status 0.
    pub(crate) async fn ok<I, S>(&self, argv: I) -> Result<Output, RsyncError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let (cmd, out) = self.run(argv).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failed(&cmd, &out))
        }
    }

    pub(crate) fn failed(&self, cmd: &Cmd, out: &Output) -> RsyncError {
        RsyncError::Command {
            server: self.server.clone(),
            cmd: cmd.to_string(),
            code: out.code,
            detail: out.last_words().to_string(),
        }
    }

    /// What is at the live path, in the releases folder and beside the live path (the
    /// prepared switch links), in one command.
    pub(crate) async fn inspect(&self, paths: &ServerPaths) -> Result<Inspection, RsyncError> {
        let prod = paths.prod.display().to_string();
        // Trailing slashes follow folders that are themselves symlinks.
        let releases = format!("{}/", paths.releases.display());
        let parent = format!("{}/", paths.parent().display());
        let (cmd, out) = self
            .run([
                "find".to_string(),
                prod.clone(),
                releases.clone(),
                parent.clone(),
                "-maxdepth".into(),
                "1".into(),
                "-printf".into(),
                "%H\\0%d\\0%y\\0%f\\0%l\\0%T@\\0".into(),
            ])
            .await?;
        // A missing start point is an answer ("not there"), not a failure: find says so
        // on stderr and exits 1, and still lists the others.
        let starts = Starts {
            prod: &prod,
            releases: &releases,
            parent: &parent,
            switch_prefix: &paths.switch_prefix(),
        };
        Inspection::parse(&out.stdout, &starts, out.stderr.trim()).map_err(|detail| {
            RsyncError::Output {
                server: self.server.clone(),
                cmd: cmd.to_string(),
                detail,
            }
        })
    }

    /// Free bytes on the file system of `dir` (`df -Pk`).
    pub(crate) async fn free_bytes(&self, dir: &Path) -> Result<u64, RsyncError> {
        let dir = dir.display().to_string();
        let (cmd, out) = self.run(["df", "-Pk", "--", &dir]).await?;
        if !out.success() {
            return Err(self.failed(&cmd, &out));
        }
        parse_df(&out.stdout).ok_or_else(|| RsyncError::Output {
            server: self.server.clone(),
            cmd: cmd.to_string(),
            detail: format!("no free space in {:?}", out.stdout.trim()),
        })
    }

    /// Writes `bytes` to `path`, which must not exist yet (a fresh name: nothing else can
    /// share its inode).
    pub(crate) async fn write_fresh(&self, path: &Path, bytes: &[u8]) -> Result<(), RsyncError> {
        let cmd = self
            .cmd([
                "dd".to_string(),
                format!("of={}", path.display()),
                "conv=excl".into(),
                "status=none".into(),
            ])
            .stdin(bytes.to_vec());
        let out = self.exec(&cmd, &mut |_, _| {}).await?;
        if out.success() {
            Ok(())
        } else {
            Err(self.failed(&cmd, &out))
        }
    }

    /// Replaces `path` with a new file holding `bytes` (written beside it, then renamed
    /// over it): a file in a release is never rewritten, since older releases may share it.
    pub(crate) async fn replace(&self, path: &Path, bytes: &[u8]) -> Result<(), RsyncError> {
        let tmp = sibling(path, ".mwdeploy-new");
        self.ok(["rm", "-f", "--", &tmp.display().to_string()])
            .await?;
        self.write_fresh(&tmp, bytes).await?;
        self.ok([
            "mv",
            "-T",
            "--",
            &tmp.display().to_string(),
            &path.display().to_string(),
        ])
        .await?;
        Ok(())
    }

    /// Reads small files at once (`head -v`): each one's text, or `None` when it could
    /// not be read (missing).
    pub(crate) async fn read_files(
        &self,
        files: &[PathBuf],
    ) -> Result<Vec<Option<String>>, RsyncError> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let mut argv: Vec<String> = vec!["head".into(), "-v".into(), "-c".into(), "1048576".into()];
        argv.push("--".into());
        argv.extend(files.iter().map(|f| f.display().to_string()));
        let (_, out) = self.run(argv).await?;
        Ok(split_head(&out.stdout, files))
    }

    /// The manifests of `releases`, those that exist and parse.
    pub(crate) async fn manifests(
        &self,
        paths: &ServerPaths,
        releases: &[ReleaseId],
    ) -> Result<Vec<Option<Manifest>>, RsyncError> {
        let files: Vec<PathBuf> = releases
            .iter()
            .map(|id| paths.release(id).join(crate::release::MANIFEST_FILE))
            .collect();
        let texts = self.read_files(&files).await?;
        Ok(texts
            .into_iter()
            .zip(releases)
            .map(|(t, id)| {
                t.and_then(|t| serde_json::from_str::<Manifest>(t.trim()).ok())
                    .filter(|m| &m.id == id)
            })
            .collect())
    }

    /// Where the live path's symlink points (`None`: not a symlink).
    pub(crate) async fn read_link(&self, path: &Path) -> Result<Option<PathBuf>, RsyncError> {
        let (_, out) = self
            .run(["readlink", "--", &path.display().to_string()])
            .await?;
        Ok(out
            .success()
            .then(|| PathBuf::from(out.stdout.trim_end_matches('\n'))))
    }
}

/// `path` with `suffix` added to its name.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The live path as found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LiveState {
    Missing,
    Directory { mtime: f64 },
    Link(PathBuf),
    Other(String),
}

/// The start points of [`Remote::inspect`], as given to find.
pub(crate) struct Starts<'a> {
    pub(crate) prod: &'a str,
    pub(crate) releases: &'a str,
    pub(crate) parent: &'a str,
    pub(crate) switch_prefix: &'a str,
}

/// The live path, the releases folder and the prepared switches as `find` listed them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Inspection {
    pub(crate) live: LiveState,
    /// Complete releases: folders named as a release id.
    pub(crate) releases: BTreeSet<ReleaseId>,
    /// Copies in progress or cut short: `.<id>.partial` folders.
    pub(crate) partials: Vec<String>,
    /// Switch links prepared beside the live path (names).
    pub(crate) switch_links: Vec<String>,
    /// What find said on stderr (a missing folder, a permission problem).
    pub(crate) notes: String,
}

impl Inspection {
    pub(crate) fn parse(stdout: &str, at: &Starts<'_>, notes: &str) -> Result<Inspection, String> {
        let fields: Vec<&str> = stdout.split('\0').collect();
        // Six fields per entry, each ended by NUL: the last split is empty.
        if fields.len() % 6 != 1 || !fields[fields.len() - 1].is_empty() {
            return Err(format!("{} fields", fields.len() - 1));
        }
        let mut ins = Inspection {
            live: LiveState::Missing,
            releases: BTreeSet::new(),
            partials: Vec::new(),
            switch_links: Vec::new(),
            notes: notes.to_string(),
        };
        for e in fields[..fields.len() - 1].chunks(6) {
            let (start, depth, kind, name, link, mtime) = (e[0], e[1], e[2], e[3], e[4], e[5]);
            if start == at.prod && depth == "0" {
                ins.live = match kind {
                    "l" => LiveState::Link(PathBuf::from(link)),
                    "d" => LiveState::Directory {
                        mtime: mtime.parse().unwrap_or(0.0),
                    },
                    other => LiveState::Other(other.to_string()),
                };
            } else if start == at.releases && depth == "1" && kind == "d" {
                if let Ok(id) = ReleaseId::parse(name) {
                    ins.releases.insert(id);
                } else if name.starts_with('.') && name.ends_with(".partial") {
                    ins.partials.push(name.to_string());
                }
            } else if start == at.parent
                && depth == "1"
                && kind == "l"
                && name.starts_with(at.switch_prefix)
            {
                ins.switch_links.push(name.to_string());
            }
            // Anything else (the top of a plain live folder, other neighbours): not ours.
        }
        Ok(ins)
    }
}

/// Free bytes from `df -Pk` output (the "Available" column of the data line).
pub(crate) fn parse_df(text: &str) -> Option<u64> {
    let line = text.lines().nth(1)?;
    let words: Vec<&str> = line.split_whitespace().collect();
    // From the capacity column (`18%`) back: a file system name may hold spaces.
    let cap = (4..words.len()).find(|&i| {
        words[i].ends_with('%')
            && words[i - 3..i]
                .iter()
                .all(|w| w.bytes().all(|b| b.is_ascii_digit()))
    })?;
    words[cap - 1].parse::<u64>().ok().map(|k| k * 1024)
}

/// Splits `head -v` output (`==> path <==` before each file) back into files.
fn split_head(stdout: &str, files: &[PathBuf]) -> Vec<Option<String>> {
    let mut found: Vec<Option<String>> = vec![None; files.len()];
    let mut current: Option<usize> = None;
    for line in stdout.split_inclusive('\n') {
        let header = line
            .strip_prefix("==> ")
            .and_then(|l| l.trim_end_matches('\n').strip_suffix(" <=="));
        if let Some(name) = header {
            current = files.iter().position(|f| f.display().to_string() == name);
            if let Some(i) = current {
                found[i] = Some(String::new());
            }
            continue;
        }
        if let Some(text) = current.and_then(|i| found[i].as_mut()) {
            text.push_str(line);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::partial_name;

    #[test]
    fn df_output_gives_free_bytes() {
        let out = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                   /dev/vda         264212084 16384316  78901572      18% /\n";
        assert_eq!(parse_df(out), Some(78_901_572 * 1024));
        let spaced = "Filesystem 1024-blocks Used Available Capacity Mounted on\n\
                      my disk 100 40 60 40% /mnt/my disk\n";
        assert_eq!(parse_df(spaced), Some(60 * 1024));
        assert_eq!(parse_df("garbage"), None);
    }

    #[test]
    fn find_output_tells_the_live_state_the_releases_and_the_prepared_switches() {
        let (p, r, up) = ("/srv/mediawiki", "/srv/mediawiki-releases/", "/srv/");
        let at = Starts {
            prod: p,
            releases: r,
            parent: up,
            switch_prefix: ".mediawiki.mwdeploy-switch.",
        };
        let out = format!(
            "{p}\x000\0l\0mediawiki\0mediawiki-releases/20260101T000000Z-a\x001.5\0\
             {r}\x000\0d\0mediawiki-releases\0\x001.0\0\
             {r}\x001\0d\x0020260101T000000Z-a\0\x001.0\0\
             {r}\x001\0d\0.20260102T000000Z-b.partial\0\x001.0\0\
             {r}\x001\0d\0not a release\0\x001.0\0\
             {r}\x001\0f\x0020260103T000000Z-c\0\x001.0\0\
             {up}\x001\0l\0.mediawiki.mwdeploy-switch.20260102T000000Z-b\0mediawiki-releases/20260102T000000Z-b\x001.0\0\
             {up}\x001\0l\0mediawiki\0mediawiki-releases/20260101T000000Z-a\x001.0\0\
             {up}\x001\0d\0mediawiki-releases\0\x001.0\0"
        );
        let ins = Inspection::parse(&out, &at, "").unwrap();
        assert_eq!(
            ins.live,
            LiveState::Link("mediawiki-releases/20260101T000000Z-a".into())
        );
        assert_eq!(ins.releases.len(), 1);
        let b = ReleaseId::parse("20260102T000000Z-b").unwrap();
        assert_eq!(ins.partials, [partial_name(&b)]);
        assert_eq!(
            ins.switch_links,
            [".mediawiki.mwdeploy-switch.20260102T000000Z-b"]
        );

        // A plain live folder, no releases folder: its children are not releases.
        let out =
            format!("{p}\x000\0d\0mediawiki\0\x001700000000.25\0{p}\x001\0d\0includes\0\x001.0\0");
        let ins = Inspection::parse(&out, &at, "find: no such file").unwrap();
        assert_eq!(
            ins.live,
            LiveState::Directory {
                mtime: 1_700_000_000.25
            }
        );
        assert!(ins.releases.is_empty());
        assert_eq!(ins.notes, "find: no such file");
        assert_eq!(
            Inspection::parse("", &at, "").unwrap().live,
            LiveState::Missing
        );
        assert!(Inspection::parse("a\0b\0", &at, "").is_err());
    }

    #[test]
    fn head_output_is_split_back_into_files() {
        let files = [PathBuf::from("/r/a/m.json"), PathBuf::from("/r/b/m.json")];
        let out = "==> /r/b/m.json <==\n{\"id\":\"b\"}\n";
        assert_eq!(
            split_head(out, &files),
            vec![None, Some("{\"id\":\"b\"}\n".to_string())]
        );
        let out = "==> /r/a/m.json <==\n{}\n\n==> /r/b/m.json <==\n{\"x\":1}\n";
        let got = split_head(out, &files);
        assert_eq!(got[0].as_deref().map(str::trim), Some("{}"));
        assert_eq!(got[1].as_deref().map(str::trim), Some("{\"x\":1}"));
    }
}
