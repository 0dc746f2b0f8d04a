//! `mwdeploy log [ID|--latest] [--follow] [--json]`: a deploy's journal, rendered.
//!
//! ```text
//!  <state_dir>/deploys/<id>.jsonl ──> Lines (whole lines only; a torn tail waits)
//!        ──> --json: each line as it is
//!        └─> plain:  Record ──> render::PlainLines, time relative to the first record
//!  --follow: poll every 200 ms until deploy_finished, or until the lock is free and
//!            nothing came for a few seconds (the deploy died)
//! ```
//!
//! The id is checked as a name before it becomes a path. The journal is only read.
//! SIGINT or SIGTERM ends a `--follow` with what was read shown, exit 130.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mwdeploy_core::event::{Event, Record};
use mwdeploy_core::model::validate_name;
use mwdeploy_runtime::journal;
use mwdeploy_runtime::lock::{DeployLock, LockStatus};

use crate::cli::LogArgs;
use crate::error::CliError;
use crate::exit;
use crate::output::Output;
use crate::render::PlainLines;

/// The longest deploy id (as the journal accepts).
const ID_MAX: usize = 128;

/// How many ids an unknown id's message lists.
const SHOWN_IDS: usize = 5;

/// How `--follow` polls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FollowTiming {
    /// Between reads of the journal.
    pub(crate) poll: Duration,
    /// Without new lines this long, the lock is checked: free means the deploy is gone.
    pub(crate) quiet: Duration,
}

impl Default for FollowTiming {
    fn default() -> Self {
        FollowTiming {
            poll: Duration::from_millis(200),
            quiet: Duration::from_secs(3),
        }
    }
}

/// Runs `mwdeploy log`; returns the exit code.
pub(crate) fn run<W: Write>(
    config_file: Option<&Path>,
    args: &LogArgs,
    out: &mut Output<W>,
) -> Result<i32, CliError> {
    // The id is a name before anything else: it becomes a file name.
    if let Some(id) = &args.id {
        validate_name("deploy id", id, ID_MAX)
            .map_err(|e| CliError::Usage(format!("mwdeploy log: {e}")))?;
    }
    let config = super::load_config(config_file)?;
    let state_dir = &config.state_dir;
    let ids = match journal::list(state_dir) {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("mwdeploy: cannot list the journals: {e}");
            return Ok(exit::FAILED);
        }
    };
    let id = match &args.id {
        Some(id) if ids.contains(id) => id.clone(),
        Some(id) => return Err(CliError::Usage(unknown_id(id, state_dir, &ids))),
        None => match ids.last() {
            Some(id) => id.clone(),
            None => {
                eprintln!(
                    "mwdeploy: no deploy has been journaled in {} yet",
                    journal::dir(state_dir).display()
                );
                return Ok(exit::FAILED);
            }
        },
    };
    let path = journal::path(state_dir, &id);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("mwdeploy: {}: {e}", path.display());
            return Ok(exit::FAILED);
        }
    };
    let mut view = View::new(args.json, path);
    if args.follow {
        let lock_free = || {
            matches!(
                DeployLock::status(state_dir),
                Ok(LockStatus::Free | LockStatus::Stale(_))
            )
        };
        let interrupted = interrupt_flag();
        let end = follow(
            &mut file,
            &mut view,
            out,
            FollowTiming::default(),
            lock_free,
            &interrupted,
        )
        .map_err(CliError::Output)?;
        match end {
            FollowEnd::Interrupted => return Ok(exit::INTERRUPTED),
            FollowEnd::Abandoned => eprintln!(
                "mwdeploy: deploy {id} did not finish: nothing was written for a while and no \
                 deploy holds the lock (it was killed?); `mwdeploy recover` finishes its work"
            ),
            FollowEnd::Finished | FollowEnd::Closed => {}
        }
    } else {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(CliError::Output)?;
        view.feed(&bytes, out);
        view.finish(out);
    }
    Ok(if view.bad_lines > 0 {
        exit::FAILED
    } else {
        exit::OK
    })
}

/// `deploy "x" has no journal ...; the latest: ...`
fn unknown_id(id: &str, state_dir: &Path, ids: &[String]) -> String {
    let dir = journal::dir(state_dir);
    if ids.is_empty() {
        return format!(
            "deploy {id:?} has no journal in {}: no deploy has been journaled there yet",
            dir.display()
        );
    }
    let latest: Vec<&str> = ids
        .iter()
        .rev()
        .take(SHOWN_IDS)
        .map(String::as_str)
        .collect();
    format!(
        "deploy {id:?} has no journal in {}; the latest {}: {}",
        dir.display(),
        if latest.len() == 1 { "is" } else { "are" },
        latest.join(", ")
    )
}

/// Why a `--follow` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FollowEnd {
    /// `deploy_finished` was shown.
    Finished,
    /// Nothing came for a while and no deploy holds the lock: the deploy died.
    Abandoned,
    /// SIGINT or SIGTERM.
    Interrupted,
    /// The reader went away (a closed pipe).
    Closed,
}

/// Reads what is appended to `file` every `timing.poll` and shows it, until the deploy
/// finished (its `deploy_finished` was shown), or nothing came for `timing.quiet` and
/// `lock_free` says no deploy holds the lock (the deploy died without finishing), or
/// `interrupted` is set.
///
/// The lock is only asked about after a quiet while: asking takes it for an instant.
pub(crate) fn follow<R: Read, W: Write>(
    file: &mut R,
    view: &mut View,
    out: &mut Output<W>,
    timing: FollowTiming,
    mut lock_free: impl FnMut() -> bool,
    interrupted: &AtomicBool,
) -> io::Result<FollowEnd> {
    let mut chunk = Vec::with_capacity(64 * 1024);
    let mut last_news = Instant::now();
    let end = loop {
        chunk.clear();
        file.read_to_end(&mut chunk)?;
        if !chunk.is_empty() {
            last_news = Instant::now();
            view.feed(&chunk, out);
            out.flush();
        }
        if view.finished {
            break FollowEnd::Finished;
        }
        if out.is_dead() {
            break FollowEnd::Closed;
        }
        if interrupted.load(Ordering::SeqCst) {
            break FollowEnd::Interrupted;
        }
        if last_news.elapsed() >= timing.quiet {
            if lock_free() {
                break FollowEnd::Abandoned;
            }
            // Held: the deploy is only slow (a long copy); ask again after another while.
            last_news = Instant::now();
        }
        std::thread::sleep(timing.poll);
    };
    view.finish(out);
    out.flush();
    Ok(end)
}

/// A flag set by SIGINT or SIGTERM (which then no longer end the process), watched by
/// a thread of its own; returns once the signals are caught.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let (ready, watching) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            let _ = ready.send(());
            return;
        };
        runtime.block_on(async {
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                let _ = ready.send(());
                return;
            };
            let _ = ready.send(());
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            set.store(true, Ordering::SeqCst);
        });
    });
    let _ = watching.recv();
    flag
}

/// A journal shown line by line, as it grows.
#[derive(Debug)]
pub(crate) struct View {
    json: bool,
    path: PathBuf,
    /// Bytes after the last newline: a line still being written.
    partial: Vec<u8>,
    /// Whole lines seen (for messages).
    line_no: usize,
    /// The first record's time: plain lines count from it.
    first: Option<SystemTime>,
    plain: PlainLines,
    /// `deploy_finished` was seen.
    pub(crate) finished: bool,
    /// Lines that are not journal records.
    pub(crate) bad_lines: usize,
}

impl View {
    /// Shows journal lines as they are (`json`) or as the deploy's plain lines; `path`
    /// names the journal in messages.
    pub(crate) fn new(json: bool, path: PathBuf) -> Self {
        View {
            json,
            path,
            partial: Vec::new(),
            line_no: 0,
            first: None,
            plain: PlainLines,
            finished: false,
            bad_lines: 0,
        }
    }

    /// Takes the next bytes of the journal: every line they complete is shown; the rest
    /// waits for its newline.
    pub(crate) fn feed<W: Write>(&mut self, bytes: &[u8], out: &mut Output<W>) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let line = if self.partial.is_empty() {
                rest[..i].to_vec()
            } else {
                let mut l = std::mem::take(&mut self.partial);
                l.extend_from_slice(&rest[..i]);
                l
            };
            self.line(&line, out);
            rest = &rest[i + 1..];
        }
        self.partial.extend_from_slice(rest);
    }

    /// The journal ends here: a last line without its newline is shown if it is a whole
    /// record, else said to be torn (a deploy that died mid-write).
    pub(crate) fn finish<W: Write>(&mut self, out: &mut Output<W>) {
        let rest = std::mem::take(&mut self.partial);
        if rest.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        if serde_json::from_slice::<Record>(&rest).is_ok() {
            self.line(&rest, out);
        } else {
            eprintln!(
                "mwdeploy: {}:{}: the last line is torn (its writer stopped mid-line); left out",
                self.path.display(),
                self.line_no + 1
            );
        }
    }

    fn line<W: Write>(&mut self, line: &[u8], out: &mut Output<W>) {
        self.line_no += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let record = match serde_json::from_slice::<Record>(line) {
            Ok(r) => r,
            Err(e) => {
                self.bad_lines += 1;
                eprintln!(
                    "mwdeploy: {}:{}: not a journal record: {e}",
                    self.path.display(),
                    self.line_no
                );
                return;
            }
        };
        if matches!(record.event, Event::DeployFinished { .. }) {
            self.finished = true;
        }
        if self.json {
            out.bytes(line);
            out.bytes(b"\n");
            return;
        }
        let first = *self.first.get_or_insert(record.ts);
        let at = record.ts.duration_since(first).unwrap_or_default();
        self.plain.event(out, &record.event, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use mwdeploy_core::{ServerId, ServerStatus};

    fn record(ms: u64, event: Event) -> String {
        let r = Record {
            ts: SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms),
            deploy: "20270115T080000Z-ab12".into(),
            event,
        };
        serde_json::to_string(&r).unwrap() + "\n"
    }

    fn state(ms: u64, server: &str, state: ServerStatus) -> String {
        record(
            ms,
            Event::ServerState {
                server: ServerId::new(server).unwrap(),
                state,
                detail: None,
            },
        )
    }

    fn finished(ms: u64) -> String {
        let summary = mwdeploy_core::Summary {
            succeeded: 1,
            ..Default::default()
        };
        record(
            ms,
            Event::DeployFinished {
                summary,
                duration_s: 1.5,
                verdict: mwdeploy_core::Verdict::Done,
            },
        )
    }

    fn view(json: bool) -> View {
        View::new(json, PathBuf::from("j.jsonl"))
    }

    fn text(out: Output<Vec<u8>>) -> String {
        String::from_utf8(out.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn plain_lines_count_from_the_first_record_and_json_is_the_line_itself() {
        let journal = [
            state(0, "mw1", ServerStatus::Copying),
            state(2_500, "mw1", ServerStatus::Done),
            finished(3_000),
        ]
        .concat();
        let mut plain = Output::new(Vec::new());
        let mut v = view(false);
        v.feed(journal.as_bytes(), &mut plain);
        v.finish(&mut plain);
        assert!(v.finished);
        let plain = text(plain);
        assert!(
            plain.starts_with("      0.0s  mw1       copying\n"),
            "{plain}"
        );
        assert!(plain.contains("      2.5s  mw1       done\n"), "{plain}");
        assert!(plain.contains("deploy finished: 1 succeeded"), "{plain}");

        let mut json = Output::new(Vec::new());
        let mut v = view(true);
        v.feed(journal.as_bytes(), &mut json);
        assert_eq!(text(json), journal);
    }

    #[test]
    fn a_line_split_anywhere_is_shown_once_whole() {
        let journal = [
            state(0, "mw1", ServerStatus::Copying),
            state(100, "mw2", ServerStatus::Done),
        ]
        .concat();
        for cut in 0..journal.len() {
            let mut out = Output::new(Vec::new());
            let mut v = view(true);
            v.feed(&journal.as_bytes()[..cut], &mut out);
            v.feed(&journal.as_bytes()[cut..], &mut out);
            v.finish(&mut out);
            assert_eq!(v.bad_lines, 0);
            assert_eq!(text(out), journal, "cut at {cut}");
        }
    }

    #[test]
    fn a_torn_tail_is_left_out_and_a_bad_line_is_counted() {
        let mut out = Output::new(Vec::new());
        let mut v = view(true);
        let good = state(0, "mw1", ServerStatus::Copying);
        v.feed(
            format!("{good}not json\n{good}{{\"ts\":").as_bytes(),
            &mut out,
        );
        v.finish(&mut out);
        assert_eq!(v.bad_lines, 1);
        assert_eq!(text(out), format!("{good}{good}"));
    }

    /// A reader over a journal another thread appends to.
    #[derive(Clone, Default)]
    struct Growing(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Growing {
        fn append(&self, s: &str) {
            self.0.lock().unwrap().0.extend_from_slice(s.as_bytes());
        }
    }

    impl Read for Growing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            let (data, at) = &mut *g;
            let n = buf.len().min(data.len() - *at);
            buf[..n].copy_from_slice(&data[*at..*at + n]);
            *at += n;
            Ok(n)
        }
    }

    static NO: AtomicBool = AtomicBool::new(false);

    #[test]
    fn an_interrupt_ends_a_follow() {
        let journal = Growing::default();
        journal.append(&state(0, "mw1", ServerStatus::Copying));
        let stop = AtomicBool::new(true);
        let mut out = Output::new(Vec::new());
        let mut v = view(true);
        let mut reader = journal.clone();
        let end = follow(&mut reader, &mut v, &mut out, FAST, || false, &stop).unwrap();
        assert_eq!(end, FollowEnd::Interrupted);
        assert!(text(out).contains("copying"));
    }

    const FAST: FollowTiming = FollowTiming {
        poll: Duration::from_millis(5),
        quiet: Duration::from_millis(100),
    };

    #[test]
    fn follow_waits_for_torn_lines_and_stops_at_deploy_finished() {
        let journal = Growing::default();
        let first = state(0, "mw1", ServerStatus::Copying);
        journal.append(&first[..10]);
        let writer = {
            let journal = journal.clone();
            let first = first.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                journal.append(&first[10..]);
                std::thread::sleep(Duration::from_millis(30));
                journal.append(&finished(500));
            })
        };
        let mut out = Output::new(Vec::new());
        let mut v = view(true);
        let mut reader = journal.clone();
        // The lock is held throughout: only deploy_finished ends the follow.
        let end = follow(&mut reader, &mut v, &mut out, FAST, || false, &NO).unwrap();
        writer.join().unwrap();
        assert_eq!(end, FollowEnd::Finished);
        assert!(v.finished);
        assert_eq!(v.bad_lines, 0);
        assert_eq!(text(out), format!("{first}{}", finished(500)));
    }

    #[test]
    fn follow_stops_when_the_lock_is_free_and_nothing_comes() {
        let journal = Growing::default();
        journal.append(&state(0, "mw1", ServerStatus::Transferring));
        let mut asked = 0;
        let mut out = Output::new(Vec::new());
        let mut v = view(false);
        let mut reader = journal.clone();
        // Held at the first check, free at the second.
        let end = follow(
            &mut reader,
            &mut v,
            &mut out,
            FAST,
            || {
                asked += 1;
                asked >= 2
            },
            &NO,
        )
        .unwrap();
        assert_eq!(end, FollowEnd::Abandoned);
        assert_eq!(asked, 2);
        assert!(!v.finished);
        assert!(text(out).contains("mw1       transferring"));
    }

    #[test]
    fn unknown_ids_list_the_latest_first() {
        let ids: Vec<String> = (1..=7).map(|n| format!("d{n}")).collect();
        let m = unknown_id("x", Path::new("/s"), &ids);
        assert!(
            m.ends_with("in /s/deploys; the latest are: d7, d6, d5, d4, d3"),
            "{m}"
        );
        assert!(unknown_id("x", Path::new("/s"), &[]).contains("no deploy has been journaled"));
    }
}
