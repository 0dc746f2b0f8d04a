//! The terminal while the dashboard owns it: raw mode, the alternate screen, no cursor;
//! and always given back, by [`TerminalGuard`]'s `Drop` and, on a panic, by a hook that
//! restores it before the panic message is printed. A terminal that went away is not
//! touched again: what is written to it is dropped ([`TtyOut`]).

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;

use crate::tty::TtyOut;

/// Whether the terminal is in the dashboard's modes (so the panic hook restores it).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// The dashboard's terminal; restores the terminal when dropped.
#[derive(Debug)]
pub(crate) struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<TtyOut<Stdout>>>,
}

impl TerminalGuard {
    /// Enters raw mode and the alternate screen and hides the cursor.
    pub(crate) fn enter() -> io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = execute!(io::stdout(), EnterAlternateScreen, Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(TtyOut(io::stdout()))));
        match setup {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// The ratatui terminal to draw on.
    pub(crate) fn terminal(&mut self) -> &mut Terminal<CrosstermBackend<TtyOut<Stdout>>> {
        &mut self.terminal
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the terminal back: raw mode off, main screen, cursor shown. Does nothing when the
/// terminal went away, or the dashboard does not hold it, so it is safe to call from anywhere, more than once
/// (a signal path, say).
pub(crate) fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) && !crate::tty::is_gone() {
        // Best effort: each step is tried even if one fails.
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
    }
}

/// Once per process: a panic hook that restores the terminal, then runs the hook before it
/// (which prints the message, now readable on the main screen).
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}
