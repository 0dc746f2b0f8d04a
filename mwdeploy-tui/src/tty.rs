//! When the terminal goes away: a deploy whose terminal was closed (SSH dropped, tmux
//! pane killed) runs on to its end, as without a terminal.
//!
//! A hung-up terminal fails every write with EIO and reads as end of file. std's
//! `eprintln!` panics on such a write, and ratatui's `Terminal` prints with it when it
//! cannot show the cursor on drop: either ended a deploy half way. So, once the terminal
//! is known to be gone (SIGHUP, a write to it failing with EIO, or stdin no longer a
//! terminal), output meant for it is dropped; the journal and the log file still get
//! every record.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// The terminal went away.
static GONE: AtomicBool = AtomicBool::new(false);

/// EIO: what a write to a hung-up terminal fails with (the same number on every Unix).
const EIO: i32 = 5;

/// Notes that the terminal went away (SIGHUP, or it failed).
pub fn hang_up() {
    GONE.store(true, Ordering::SeqCst);
}

/// Whether the terminal went away.
pub fn is_gone() -> bool {
    GONE.load(Ordering::SeqCst)
}

/// Whether `e`, from a write to what was a terminal, says that it went away.
pub fn is_hangup(e: &io::Error) -> bool {
    e.raw_os_error() == Some(EIO)
}

/// Looks whether stdin is still a terminal (a hung-up one fails the test) and notes a
/// hangup when it is not; returns whether the terminal is gone.
pub fn check_stdin() -> bool {
    if !is_gone() && !io::stdin().is_terminal() {
        hang_up();
    }
    is_gone()
}

/// A line on stderr, dropped when it cannot be written (what the crate's `eprintln!`
/// does).
pub fn stderr_line(args: std::fmt::Arguments<'_>) {
    if !is_gone() {
        let _ = writeln!(io::stderr().lock(), "{args}");
    }
}

/// A writer to the terminal that drops what it is given once the terminal went away
/// (noting it on the first EIO), so that nothing fails or panics for want of it.
#[derive(Debug)]
pub struct TtyOut<W>(pub W);

impl<W: Write> Write for TtyOut<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if is_gone() {
            return Ok(buf.len());
        }
        match self.0.write(buf) {
            Err(e) if is_hangup(&e) => {
                hang_up();
                Ok(buf.len())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if is_gone() {
            return Ok(());
        }
        match self.0.flush() {
            Err(e) if is_hangup(&e) => {
                hang_up();
                Ok(())
            }
            r => r,
        }
    }
}
