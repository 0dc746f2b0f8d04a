//! Where the command's output goes: a locked, buffered stdout that survives a closed pipe.
//!
//! A simulation of 100,000 servers prints millions of JSON lines, so nothing here
//! flushes per line. A reader that goes away (`mwdeploy simulate --json | head`) closes
//! the pipe: the first `EPIPE` turns every later write into a no-op, and the command
//! ends quietly instead of panicking the way `println!` would. A terminal that goes
//! away (EIO) is the same: the deploy runs on and its output is dropped.

use std::io::{self, BufWriter, ErrorKind, Write};

/// A buffered writer that remembers its first error instead of returning it per write.
#[derive(Debug)]
pub(crate) struct Output<W: Write> {
    inner: BufWriter<W>,
    /// The reader closed the pipe: drop everything from here on.
    closed: bool,
    /// The first error other than a closed pipe.
    error: Option<io::Error>,
    /// It writes to a terminal: EIO means the terminal went away, which ends nothing.
    tty: bool,
}

impl Output<io::StdoutLock<'static>> {
    /// The process's stdout, locked for the whole command.
    pub(crate) fn stdout() -> Self {
        use std::io::IsTerminal;
        let mut out = Output::new(io::stdout().lock());
        out.tty = io::stdout().is_terminal();
        out
    }
}

impl<W: Write> Output<W> {
    /// Wraps `w` in a large buffer.
    pub(crate) fn new(w: W) -> Self {
        Output {
            inner: BufWriter::with_capacity(64 * 1024, w),
            closed: false,
            error: None,
            tty: false,
        }
    }

    /// Whether writing is pointless: the pipe is closed or a write failed.
    pub(crate) fn is_dead(&self) -> bool {
        self.closed || self.error.is_some() || (self.tty && crate::tty::is_gone())
    }

    /// Writes `bytes` as they are.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        if !self.is_dead() {
            let r = self.inner.write_all(bytes);
            self.note(r);
        }
    }

    /// Writes formatted text (use with `format_args!`).
    pub(crate) fn fmt(&mut self, args: std::fmt::Arguments<'_>) {
        if !self.is_dead() {
            let r = self.inner.write_fmt(args);
            self.note(r);
        }
    }

    /// Flushes what is buffered so far (a live deploy shows each line as it comes).
    pub(crate) fn flush(&mut self) {
        if !self.is_dead() {
            let r = self.inner.flush();
            self.note(r);
        }
    }

    /// Flushes; `Ok` also when the reader closed the pipe.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if !self.is_dead() {
            let r = self.inner.flush();
            self.note(r);
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Records an error that happened while preparing output (serializing, say).
    pub(crate) fn fail(&mut self, e: io::Error) {
        self.note(Err(e));
    }

    /// The writer, flushed (tests, and the log file, read what was written).
    #[cfg(test)]
    pub(crate) fn into_inner(self) -> io::Result<W> {
        self.inner.into_inner().map_err(|e| e.into_error())
    }

    fn note(&mut self, r: io::Result<()>) {
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => self.closed = true,
            Err(e) if self.tty && crate::tty::is_hangup(&e) => {
                crate::tty::hang_up();
                self.closed = true;
            }
            Err(e) => self.error = Some(e),
        }
    }
}

impl<W: Write> mwdeploy_runtime::render::Sink for Output<W> {
    fn bytes(&mut self, bytes: &[u8]) {
        Output::bytes(self, bytes);
    }

    fn fmt(&mut self, args: std::fmt::Arguments<'_>) {
        Output::fmt(self, args);
    }

    fn fail(&mut self, e: io::Error) {
        Output::fail(self, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then fails every write with `kind`.
    struct Pipe {
        room: usize,
        kind: ErrorKind,
        got: Vec<u8>,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got.len() >= self.room {
                return Err(io::Error::from(self.kind));
            }
            let n = buf.len().min(self.room - self.got.len());
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pipe(room: usize, kind: ErrorKind) -> Output<Pipe> {
        Output::new(Pipe {
            room,
            kind,
            got: Vec::new(),
        })
    }

    #[test]
    fn a_closed_pipe_is_quiet() {
        let mut out = pipe(10, ErrorKind::BrokenPipe);
        for _ in 0..100_000 {
            out.bytes(b"0123456789\n");
        }
        assert!(out.is_dead());
        assert!(out.finish().is_ok());
    }

    #[test]
    fn other_errors_are_kept() {
        let mut out = pipe(10, ErrorKind::StorageFull);
        for _ in 0..100_000 {
            out.fmt(format_args!("{}\n", "0123456789"));
        }
        let err = out.finish().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StorageFull);
    }

    #[test]
    fn everything_arrives_when_nothing_fails() {
        let mut out = pipe(usize::MAX, ErrorKind::BrokenPipe);
        out.bytes(b"a\n");
        out.fmt(format_args!("{}\n", 42));
        assert!(!out.is_dead());
        let inner = out.into_inner().unwrap();
        assert_eq!(inner.got, b"a\n42\n");
    }
}
