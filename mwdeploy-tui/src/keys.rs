//! Keys: what a key press means in the dashboard's current state. Pure: it changes the
//! [`UiState`] and says what to tell the engine.

use mwdeploy_core::{Decision, StopReason};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::model::Dashboard;
use super::{Overlay, UiState};

/// Lines a page key scrolls the full-log view.
const PAGE: usize = 10;

/// What a key asks of the running deploy (or of the dashboard itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Tell the engine: an answer, pause, resume or a stop.
    Decide(Decision),
    /// A manual pool change of one server: through the running engine, or (the viewer)
    /// as `mwdeploy pool` does when no deploy runs.
    Pool {
        /// The server.
        server: String,
        /// `true`: depool; `false`: repool.
        depool: bool,
    },
    /// Ctrl+C: a graceful stop, as SIGINT.
    Interrupt,
    /// The deploy has ended and a key was pressed: close the dashboard.
    Close,
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

fn plain(key: &KeyEvent, c: char) -> bool {
    !key.modifiers.contains(KeyModifiers::CONTROL)
        && matches!(key.code, KeyCode::Char(k) if k.eq_ignore_ascii_case(&c))
}

/// A viewer's keys: look (select, the full log), the pool menu, close; nothing reaches
/// the deploy, whose own terminal answers its prompts (the pool menu is the viewer's own
/// change, refused while a deploy holds the lock).
fn viewer_key(dash: &Dashboard, ui: &mut UiState, key: KeyEvent) -> Option<Command> {
    let rows = dash.rows().len();
    if let Overlay::PoolMenu { row } = ui.overlay {
        ui.overlay = Overlay::None;
        return pool_choice(dash, row, &key);
    }
    if let Overlay::Log { scroll, .. } = &mut ui.overlay {
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => ui.overlay = Overlay::None,
            KeyCode::Up | KeyCode::Char('k') => *scroll += 1,
            KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_sub(1),
            _ if ctrl(&key, 'c') => return Some(Command::Close),
            _ => {}
        }
        return None;
    }
    if ctrl(&key, 'c') || ctrl(&key, 'x') || plain(&key, 'q') || key.code == KeyCode::Esc {
        return Some(Command::Close);
    }
    match key.code {
        KeyCode::Up => ui.selected = ui.selected.saturating_sub(1),
        KeyCode::Down => ui.selected = (ui.selected + 1).min(rows.saturating_sub(1)),
        _ if ctrl(&key, 'o') && rows > 0 => {
            ui.overlay = Overlay::Log {
                row: ui.selected,
                scroll: 0,
            }
        }
        _ if ctrl(&key, 'r') && rows > 0 => ui.overlay = Overlay::PoolMenu { row: ui.selected },
        _ => {}
    }
    None
}

/// The pool menu's answer for the server of `row`: D depools, R repools, anything else
/// cancels.
fn pool_choice(dash: &Dashboard, row: usize, key: &KeyEvent) -> Option<Command> {
    let server = dash.rows().get(row)?.name.clone();
    if plain(key, 'd') {
        Some(Command::Pool {
            server,
            depool: true,
        })
    } else if plain(key, 'r') {
        Some(Command::Pool {
            server,
            depool: false,
        })
    } else {
        None
    }
}

/// Handles one key; returns what to tell the engine, if anything.
pub(crate) fn on_key(dash: &Dashboard, ui: &mut UiState, key: KeyEvent) -> Option<Command> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let rows = dash.rows().len();
    ui.selected = ui.selected.min(rows.saturating_sub(1));

    if ui.viewer {
        return viewer_key(dash, ui, key);
    }

    if ctrl(&key, 'c') {
        ui.overlay = Overlay::None;
        if dash.is_over() {
            return Some(Command::Close);
        }
        ui.stop_asked = true;
        return Some(Command::Interrupt);
    }

    // The full-log view works before and after the end; an open prompt comes first.
    if ui.open_prompt(dash).is_none() {
        if let Overlay::Log { scroll, .. } = &mut ui.overlay {
            match key.code {
                KeyCode::Esc | KeyCode::Char('q') => ui.overlay = Overlay::None,
                KeyCode::Up | KeyCode::Char('k') => *scroll += 1,
                KeyCode::Down | KeyCode::Char('j') => *scroll = scroll.saturating_sub(1),
                KeyCode::PageUp => *scroll += PAGE,
                KeyCode::PageDown => *scroll = scroll.saturating_sub(PAGE),
                KeyCode::Home => *scroll = usize::MAX / 2,
                KeyCode::End => *scroll = 0,
                _ => {}
            }
            return None;
        }
    }

    if dash.is_over() {
        ui.overlay = Overlay::None;
        return Some(Command::Close);
    }

    // The open prompt: only y is yes.
    if let Some(seq) = ui.open_prompt(dash).map(|p| p.seq) {
        ui.answered = Some(seq);
        ui.overlay = Overlay::None;
        return Some(Command::Decide(Decision::Answer(plain(&key, 'y'))));
    }

    match std::mem::replace(&mut ui.overlay, Overlay::None) {
        Overlay::ConfirmStop => {
            if plain(&key, 'y') {
                ui.stop_asked = true;
                return Some(Command::Decide(Decision::Stop(StopReason::Operator)));
            }
            None
        }
        Overlay::PoolMenu { row } => pool_choice(dash, row, &key),
        Overlay::Log { .. } | Overlay::None => {
            if ctrl(&key, 'o') && rows > 0 {
                ui.overlay = Overlay::Log {
                    row: ui.selected,
                    scroll: 0,
                };
            } else if ctrl(&key, 'r') && rows > 0 {
                ui.overlay = Overlay::PoolMenu { row: ui.selected };
            } else if ctrl(&key, 'x') || plain(&key, 'q') {
                ui.overlay = Overlay::ConfirmStop;
            } else if plain(&key, 'p') {
                ui.paused = !ui.paused;
                return Some(Command::Decide(if ui.paused {
                    Decision::Pause
                } else {
                    Decision::Resume
                }));
            } else {
                match key.code {
                    KeyCode::Up => ui.selected = ui.selected.saturating_sub(1),
                    KeyCode::Down if ui.selected + 1 < rows => ui.selected += 1,
                    KeyCode::Home => ui.selected = 0,
                    KeyCode::End => ui.selected = rows.saturating_sub(1),
                    _ => {}
                }
            }
            None
        }
    }
}
