//! The rsync command line (built as argv, nothing through a local shell), the ssh
//! command rsync uses (the deploy's own ssh options and shared connection), rsync's
//! `--info=progress2` lines, and what its exit codes mean.

use std::path::{Path, PathBuf};

use mwdeploy_core::{PortErrorKind, Server};
use mwdeploy_exec::{Cmd, Hosts};

use crate::config::{RsyncConfig, TreePath};
use crate::error::RsyncError;
use crate::release::MANIFEST_FILE;

/// Where rsync writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dest {
    /// A folder on this host (`local: true`: the deploy host's own live tree).
    Local(PathBuf),
    /// A folder on a server, reached with `rsh` (rsync's `-e`).
    Remote {
        rsh: String,
        host: String,
        path: PathBuf,
    },
}

/// One rsync run: from staging (all of it, or some subtrees) into one folder.
#[derive(Debug, Clone)]
pub(crate) struct Job<'a> {
    pub(crate) config: &'a RsyncConfig,
    /// `None`: the whole tree; else only these subtrees (rsync `--relative`).
    pub(crate) subtrees: Option<&'a [TreePath]>,
    pub(crate) dest: Dest,
    /// Unchanged files are hard links to this tree's files.
    pub(crate) link_dest: Option<PathBuf>,
    /// Into the live tree: deletions wait until the new files are in (`--delete-delay`).
    pub(crate) in_place: bool,
    /// Every new file put in place together at the end (`--delay-updates`), for a live
    /// tree that serves while it is copied. It costs a pass over every folder (about
    /// 0.1 s on 20,000 files), so a server out of the pool goes without.
    pub(crate) delay_updates: bool,
    /// The remote rsync runs through `sudo -n`.
    pub(crate) remote_sudo: bool,
}

impl Job<'_> {
    /// The argv, `rsync` first.
    pub(crate) fn argv(&self) -> Vec<String> {
        let c = self.config;
        let mut v: Vec<String> = vec![
            "rsync".into(),
            // File names and most options reach the remote rsync through its protocol,
            // never through the remote shell.
            "--secluded-args".into(),
            "--archive".into(),
            // The whole file list first: progress percentages are of the whole transfer.
            "--no-inc-recursive".into(),
            "--info=progress2".into(),
            // A file rewritten with the same size within the same second differs in
            // its nanoseconds: compare those too (the default compares whole seconds).
            "--modify-window=-1".into(),
            "--delete".into(),
            format!("--timeout={}", c.io_timeout.as_secs().max(1)),
        ];
        if c.checksum {
            v.push("--checksum".into());
        }
        if c.compress {
            v.push("--compress".into());
        }
        if let Some(owner) = &c.chown {
            v.push(format!("--chown={owner}"));
        }
        if let Some(modes) = &c.chmod {
            v.push(format!("--chmod={modes}"));
        }
        if let Some(kib) = c.bwlimit_kib {
            v.push(format!("--bwlimit={kib}"));
        }
        if let Some(link) = &self.link_dest {
            v.push(format!("--link-dest={}", link.display()));
        }
        if self.delay_updates {
            // New files appear together at the end.
            v.push("--delay-updates".into());
        }
        if self.in_place {
            // Deletions wait for the new files.
            v.push("--delete-delay".into());
        }
        if self.subtrees.is_some() {
            // Each subtree keeps its path under the tree's top (`staging/./a/b` -> `dest/a/b`),
            // so top-anchored excludes still apply; a subtree gone from staging is not an error.
            v.push("--relative".into());
            v.push("--ignore-missing-args".into());
        }
        // The manifest is the transfer's, never staging's; shared folders are links.
        v.push(format!("--exclude=/{MANIFEST_FILE}"));
        for dir in &c.shared_dirs {
            v.push(format!("--exclude=/{dir}"));
        }
        for pattern in &c.excludes {
            v.push(format!("--exclude={pattern}"));
        }
        if let Dest::Remote { rsh, .. } = &self.dest {
            v.push("--rsh".into());
            v.push(rsh.clone());
            if self.remote_sudo {
                v.push("--rsync-path=sudo -n rsync".into());
            }
        }
        v.push("--".into());
        let staging = c.staging_path.display().to_string();
        match self.subtrees {
            None => v.push(format!("{}/", staging.trim_end_matches('/'))),
            Some(paths) => {
                for p in paths {
                    v.push(format!("{}/./{p}", staging.trim_end_matches('/')));
                }
            }
        }
        v.push(match &self.dest {
            Dest::Local(path) => with_slash(path),
            Dest::Remote { host, path, .. } => format!("{host}:{}", with_slash(path)),
        });
        v
    }

    /// The command: on this host, through `sudo -n` when the target is this host and the
    /// deploy uses sudo (a remote target's rsync gets sudo through `--rsync-path`).
    pub(crate) fn cmd(&self, local_sudo: bool) -> Cmd {
        Cmd::new(self.argv()).sudo(matches!(self.dest, Dest::Local(_)) && local_sudo)
    }

    /// The command of a copy ahead, to a server that still serves and that nothing waits
    /// for but the next depool: this host's rsync (and the ssh it starts) at a lower CPU
    /// priority (`nice -n 10`), so the steps of the server that is out of the pool meanwhile
    /// go first. The server's side is left as it is: its command stays `rsync --server`.
    pub(crate) fn cmd_ahead(&self, local_sudo: bool) -> Cmd {
        match self.dest {
            Dest::Remote { .. } => {
                let mut argv: Vec<String> = ["nice", "-n", "10"].map(String::from).into();
                argv.extend(self.argv());
                Cmd::new(argv)
            }
            Dest::Local(_) => self.cmd(local_sudo),
        }
    }
}

fn with_slash(path: &Path) -> String {
    format!("{}/", path.display().to_string().trim_end_matches('/'))
}

/// The ssh command line rsync runs (`-e`), and the host it appends: the same options
/// and control socket as the deploy's runner for `server`, so rsync shares its
/// connection and checks host keys the same way.
pub(crate) fn rsh_for(hosts: &Hosts, server: &Server) -> Result<(String, String), RsyncError> {
    let io = |e: mwdeploy_exec::ExecError| RsyncError::Config {
        setting: "ssh",
        why: format!("server {}: {e}", server.id),
    };
    let ssh = hosts
        .ssh_runner(server)
        .map_err(io)?
        .ok_or_else(|| RsyncError::Config {
            setting: "ssh",
            why: format!("server {} is local: rsync needs no ssh", server.id),
        })?;
    let host = ssh.target().host.clone();
    let mut words = ssh.ssh_argv(&Cmd::new(["true"]));
    // [ssh, options.., "--", host, "true"]: keep everything up to "--"; rsync appends
    // the host and its own command.
    let tail_ok = words.len() >= 3
        && words[words.len() - 1] == "true"
        && words[words.len() - 2] == host
        && words[words.len() - 3] == "--";
    if !tail_ok {
        return Err(RsyncError::Config {
            setting: "ssh",
            why: format!(
                "server {}: unexpected ssh command line {words:?}",
                server.id
            ),
        });
    }
    words.truncate(words.len() - 2);
    Ok((rsh_command(&words), host))
}

/// Joins words into one `-e` value as rsync splits it: at spaces, with single quotes
/// around a word that holds a space or a quote (a quote inside is doubled).
pub(crate) fn rsh_command(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty() && !w.contains([' ', '\'', '"']) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of rsync's `--info=progress2`: the whole transfer so far.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RsyncProgress {
    /// Bytes transferred so far.
    pub bytes: u64,
    /// Percent of the whole transfer.
    pub percent: f32,
    /// Rate as rsync printed it (`12.34MB/s`).
    pub rate: String,
    /// Files still to check, of all files (`to-chk=12/200`), once known.
    pub to_check: Option<(u64, u64)>,
}

/// Parses one line of `--info=progress2` (`\r`-separated in rsync's output):
///
/// ```
/// use mwdeploy_rsync::parse_progress;
/// let p = parse_progress("      1,200,000  10%    1.09GB/s    0:00:00 (xfr#4, to-chk=36/41)").unwrap();
/// assert_eq!((p.bytes, p.percent, p.rate.as_str(), p.to_check), (1_200_000, 10.0, "1.09GB/s", Some((36, 41))));
/// assert!(parse_progress("rsync: connection unexpectedly closed").is_none());
/// ```
pub fn parse_progress(line: &str) -> Option<RsyncProgress> {
    let mut words = line.split_whitespace();
    let bytes: u64 = words.next()?.replace(',', "").parse().ok()?;
    let percent: f32 = words.next()?.strip_suffix('%')?.parse().ok()?;
    let rate = words.next()?;
    if !rate.ends_with("/s") || !(0.0..=100.0).contains(&percent) {
        return None;
    }
    let elapsed = words.next()?;
    if !elapsed.contains(':') {
        return None;
    }
    let rest: String = words.collect::<Vec<_>>().join(" ");
    let to_check = ["to-chk=", "ir-chk="].iter().find_map(|key| {
        let (_, after) = rest.split_once(key)?;
        let (left, total) = after.trim_end_matches(')').split_once('/')?;
        Some((left.parse().ok()?, total.parse().ok()?))
    });
    Some(RsyncProgress {
        bytes,
        percent,
        rate: rate.to_string(),
        to_check,
    })
}

/// What an rsync exit code means (rsync's manual, EXIT VALUES).
pub(crate) fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "syntax or usage error",
        2 => "protocol incompatibility",
        3 => "errors selecting input/output files, dirs",
        4 => "requested action not supported",
        5 => "error starting client-server protocol",
        10 => "error in socket I/O",
        11 => "error in file I/O",
        12 => "error in rsync protocol data stream",
        13 => "errors with program diagnostics",
        14 => "error in IPC code",
        20 => "received SIGUSR1 or SIGINT",
        21 => "some error returned by waitpid()",
        22 => "error allocating core memory buffers",
        23 => "partial transfer due to error",
        24 => "partial transfer due to vanished source files",
        25 => "the --max-delete limit stopped deletions",
        30 => "timeout in data send/receive",
        35 => "timeout waiting for daemon connection",
        255 => "the remote shell failed",
        _ => "unknown exit code",
    }
}

/// Whether trying again may help.
pub(crate) fn exit_kind(code: i32) -> PortErrorKind {
    match code {
        1..=4 => PortErrorKind::Misconfigured,
        5 | 10 | 12 | 14 | 20 | 21 | 24 | 30 | 35 | 255 => PortErrorKind::Transient,
        _ => PortErrorKind::Permanent,
    }
}

/// The lines of rsync's stderr worth showing when it failed (not its progress), the
/// first ones (the cause) and the last one (rsync's summary).
pub(crate) fn failure_detail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty() && parse_progress(l).is_none())
        .collect();
    let mut shown: Vec<&str> = lines.iter().take(3).copied().collect();
    if let Some(last) = lines.last() {
        if !shown.contains(last) {
            shown.push(last);
        }
    }
    if shown.is_empty() {
        "no output".to_string()
    } else {
        shown.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mwdeploy_core::Layout;

    /// Real `rsync --info=progress2` output (rsync 3.x), as captured with `od -c`: the
    /// first line before any file, lines with `to-chk`, and the final line.
    const CAPTURED: &str = "\r         32,768   0%    0.00kB/s    0:00:00  \r        300,000   2%  254.85MB/s    0:00:00 (xfr#1, to-chk=39/41)\r      1,200,000  10%    1.09GB/s    0:00:00 (xfr#4, to-chk=36/41)\r     12,000,000 100%  760.86MB/s    0:00:00 (xfr#40, to-chk=0/41)\r     12,000,000 100%  760.86MB/s    0:00:00 (xfr#40, to-chk=0/41)\n";

    #[test]
    fn progress2_lines_parse_into_percent_rate_and_files_left() {
        let lines: Vec<&str> = CAPTURED
            .split(['\r', '\n'])
            .filter(|l| !l.is_empty())
            .collect();
        let parsed: Vec<RsyncProgress> = lines.iter().filter_map(|l| parse_progress(l)).collect();
        assert_eq!(parsed.len(), 5);
        assert_eq!(parsed[0].bytes, 32_768);
        assert_eq!(parsed[0].percent, 0.0);
        assert_eq!(parsed[0].rate, "0.00kB/s");
        assert_eq!(parsed[0].to_check, None);
        assert_eq!(parsed[1].percent, 2.0);
        assert_eq!(parsed[1].rate, "254.85MB/s");
        assert_eq!(parsed[1].to_check, Some((39, 41)));
        assert_eq!(parsed[2].rate, "1.09GB/s");
        assert_eq!(parsed[4].bytes, 12_000_000);
        assert_eq!(parsed[4].percent, 100.0);
        assert_eq!(parsed[4].to_check, Some((0, 41)));
        // Incremental recursion prints ir-chk; rsync's other output is no progress.
        let ir =
            parse_progress("         20,000   1%    0.00kB/s    0:00:00 (xfr#1, ir-chk=1089/1121)")
                .unwrap();
        assert_eq!(ir.to_check, Some((1089, 1121)));
        for other in [
            "",
            "sending incremental file list",
            "rsync: connection unexpectedly closed (0 bytes received so far) [sender]",
            "rsync error: unexplained error (code 255) at io.c(285) [sender=3.5.0]",
            "sent 1,234 bytes  received 56 bytes  2,580.00 bytes/sec",
            "12 150% 1.0kB/s 0:00:00",
        ] {
            assert!(parse_progress(other).is_none(), "{other:?}");
        }
    }

    fn config() -> RsyncConfig {
        let mut c = RsyncConfig::new("/srv/staging", "/srv/mediawiki", Layout::Releases);
        c.shared_dirs = vec![TreePath::new("images").unwrap()];
        c
    }

    fn remote(path: &str) -> Dest {
        Dest::Remote {
            rsh: "ssh -p 22 --".into(),
            host: "mw1.example.org".into(),
            path: path.into(),
        }
    }

    #[test]
    fn a_release_copy_links_to_the_live_release_and_writes_only_the_new_release() {
        let c = config();
        let job = Job {
            config: &c,
            subtrees: None,
            dest: remote("/srv/mediawiki-releases/.r2.partial"),
            link_dest: Some("/srv/mediawiki-releases/r1".into()),
            in_place: false,
            delay_updates: false,
            remote_sudo: true,
        };
        let argv = job.argv();
        let dashdash = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(
            &argv[dashdash + 1..],
            [
                "/srv/staging/",
                "mw1.example.org:/srv/mediawiki-releases/.r2.partial/"
            ],
            "one source, one destination: the new release"
        );
        for want in [
            "--secluded-args",
            "--delete",
            "--modify-window=-1",
            "--no-inc-recursive",
            "--info=progress2",
            "--link-dest=/srv/mediawiki-releases/r1",
            "--exclude=/.mwdeploy-release.json",
            "--exclude=/images",
            "--exclude=/.git/",
            "--exclude=/cache/",
            "--rsync-path=sudo -n rsync",
        ] {
            assert!(
                argv[..dashdash].contains(&want.to_string()),
                "{want}: {argv:?}"
            );
        }
        assert!(!argv.contains(&"--delay-updates".to_string()));
        assert!(
            !job.cmd(true).sudo,
            "the local rsync of a remote copy runs without sudo"
        );
        // A copy ahead: this host's rsync at a lower priority, the same rsync argv after.
        let ahead = job.cmd_ahead(true);
        assert_eq!(ahead.argv[..4], ["nice", "-n", "10", "rsync"]);
        assert_eq!(ahead.argv[3..], argv[..]);
        assert!(!ahead.sudo);
    }

    #[test]
    fn in_place_delays_updates_and_subtrees_keep_their_paths() {
        let mut c = config();
        c.chown = Some("www-data:www-data".into());
        c.compress = true;
        c.checksum = true;
        let subs = [
            TreePath::new("versions/1.45/extensions/Echo").unwrap(),
            TreePath::new("config").unwrap(),
        ];
        let job = Job {
            config: &c,
            subtrees: Some(&subs),
            dest: Dest::Local("/srv/mediawiki".into()),
            link_dest: None,
            in_place: true,
            delay_updates: true,
            remote_sudo: false,
        };
        let argv = job.argv();
        let dashdash = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(
            &argv[dashdash + 1..],
            [
                "/srv/staging/./versions/1.45/extensions/Echo",
                "/srv/staging/./config",
                "/srv/mediawiki/"
            ]
        );
        for want in [
            "--delay-updates",
            "--delete-delay",
            "--relative",
            "--ignore-missing-args",
            "--chown=www-data:www-data",
            "--compress",
            "--checksum",
        ] {
            assert!(argv.contains(&want.to_string()), "{want}: {argv:?}");
        }
        assert!(!argv
            .iter()
            .any(|a| a.starts_with("--rsh") || a.starts_with("--rsync-path")));
        assert!(
            job.cmd(true).sudo,
            "a local target runs rsync itself through sudo"
        );
    }

    #[test]
    fn the_rsh_value_survives_rsyncs_own_splitting() {
        let words: Vec<String> = [
            "ssh",
            "-o",
            "ControlPath=/tmp/my dir/%C",
            "-i",
            "/home/o'brien/key",
            "--",
        ]
        .map(String::from)
        .to_vec();
        let s = rsh_command(&words);
        assert_eq!(
            s,
            "ssh -o 'ControlPath=/tmp/my dir/%C' -i '/home/o''brien/key' --"
        );
        assert_eq!(split_like_rsync(&s), words);
    }

    /// rsync's own splitting of `-e` (main.c, do_cmd): spaces separate, quotes group, a
    /// doubled quote inside quotes is one quote.
    fn split_like_rsync(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == ' ' {
                i += 1;
                continue;
            }
            let mut word = String::new();
            let mut quote: Option<char> = None;
            while i < chars.len() && (chars[i] != ' ' || quote.is_some()) {
                let c = chars[i];
                if c == '\'' || c == '"' {
                    match quote {
                        None => {
                            quote = Some(c);
                            i += 1;
                            continue;
                        }
                        Some(q) if q == c => {
                            if chars.get(i + 1) == Some(&c) {
                                word.push(c);
                                i += 2;
                            } else {
                                quote = None;
                                i += 1;
                            }
                            continue;
                        }
                        _ => {}
                    }
                }
                word.push(c);
                i += 1;
            }
            out.push(word);
        }
        out
    }

    #[test]
    fn exit_codes_say_whether_a_retry_may_help() {
        assert_eq!(exit_kind(255), PortErrorKind::Transient);
        assert_eq!(exit_kind(12), PortErrorKind::Transient);
        assert_eq!(exit_kind(23), PortErrorKind::Permanent);
        assert_eq!(exit_kind(11), PortErrorKind::Permanent);
        assert_eq!(exit_kind(1), PortErrorKind::Misconfigured);
        assert_eq!(exit_meaning(23), "partial transfer due to error");
    }

    #[test]
    fn failure_details_keep_the_cause_and_drop_progress() {
        let stderr = "ssh: connect to host 127.0.0.1 port 2298: Connection refused\r\n\
                      rsync: connection unexpectedly closed (0 bytes received so far) [sender]\n\
                      rsync error: unexplained error (code 255) at io.c(285) [sender=3.5.0]\n";
        let d = failure_detail(stderr);
        assert!(d.starts_with("ssh: connect to host"), "{d}");
        assert!(d.ends_with("[sender=3.5.0]"), "{d}");
        assert_eq!(failure_detail("   \n"), "no output");
    }
}
