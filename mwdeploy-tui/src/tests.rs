//! Snapshots of the screen in each state of a deploy, key handling, and the run loop on
//! ratatui's test backend.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use mwdeploy_core::event::{Event, PrepStatus, Record, Summary};
use mwdeploy_core::{Decision, Layout, ReleaseId, ServerId, ServerStatus, StopReason};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use ratatui::Terminal;
use tokio::sync::mpsc;

use super::model::LOG_LINES;
use super::*;

const SERVERS: [&str; 4] = [
    "mw-us-east-011",
    "mw-us-east-012",
    "mw-us-east-021",
    "mw-us-east-022",
];

fn t0() -> SystemTime {
    mwdeploy_sim::sim_epoch()
}

fn at(secs: u64) -> SystemTime {
    t0() + Duration::from_secs(secs)
}

fn id(s: &str) -> ServerId {
    ServerId::new(s).unwrap()
}

fn rec(secs: u64, event: Event) -> Record {
    Record {
        ts: at(secs),
        deploy: "20260101-000000-ab12".into(),
        event,
    }
}

fn state(secs: u64, server: &str, s: ServerStatus, detail: Option<&str>) -> Record {
    rec(
        secs,
        Event::ServerState {
            server: id(server),
            state: s,
            detail: detail.map(str::to_string),
        },
    )
}

fn prep(secs: u64, step: &str, status: PrepStatus, commits: &[&str]) -> Record {
    rec(
        secs,
        Event::PrepStep {
            step: step.into(),
            status,
            detail: None,
            commits: commits.iter().map(|c| c.to_string()).collect(),
        },
    )
}

fn release() -> ReleaseId {
    ReleaseId::at(t0(), "ab12").unwrap()
}

/// Started, prepared; every server pending.
fn pending(layout: Layout) -> Dashboard {
    let mut d = Dashboard::new(
        String::new(),
        None,
        SERVERS.iter().map(|s| s.to_string()).collect(),
    );
    for r in [
        rec(
            0,
            Event::DeployStarted {
                servers: SERVERS.iter().map(|s| id(s)).collect(),
                release: release(),
                layout,
                flags: vec!["--extension".into(), "Foo".into()],
                message: Some("Update Extension:Foo \x1b[31mnow\x1b[0m".into()),
                user: Some("alice".into()),
            },
        ),
        prep(0, "pull_extension_Foo", PrepStatus::Running, &[]),
        prep(
            9,
            "pull_extension_Foo",
            PrepStatus::Ok,
            &["abc1234 Fix the thing", "def5678 Add the other"],
        ),
        prep(9, "staging_sync", PrepStatus::Running, &[]),
        prep(40, "staging_sync", PrepStatus::Ok, &[]),
        prep(40, "staging_canary", PrepStatus::Running, &[]),
        prep(42, "staging_canary", PrepStatus::Ok, &[]),
    ] {
        d.apply(&r);
    }
    d
}

/// Stage 1 under way: 011 done, 012 copying at 33%.
fn running(layout: Layout) -> Dashboard {
    let mut d = pending(layout);
    let s1 = SERVERS.iter().map(|s| id(s)).collect();
    for r in [
        rec(
            43,
            Event::StageStarted {
                stage: 1,
                servers: s1,
            },
        ),
        state(43, SERVERS[0], ServerStatus::Depooling, None),
        state(44, SERVERS[0], ServerStatus::Transferring, None),
        state(70, SERVERS[0], ServerStatus::Canary, None),
        rec(
            71,
            Event::Canary {
                server: id(SERVERS[0]),
                attempt: 1,
                ok: true,
                status: Some(200),
                detail: "HTTP 200".into(),
            },
        ),
        state(72, SERVERS[0], ServerStatus::Repooling, None),
        state(73, SERVERS[0], ServerStatus::Done, None),
        state(74, SERVERS[1], ServerStatus::Copying, None),
        rec(
            95,
            Event::Progress {
                server: id(SERVERS[1]),
                step: "copy".into(),
                percent: Some(33.0),
                rate: Some("12.3MB/s".into()),
                line: Some("\u{1b}[2K\u{1b}[32mSyncing files…\u{1b}[0m\u{1b}]0;title\u{7}".into()),
            },
        ),
    ] {
        d.apply(&r);
    }
    d
}

/// 012's canary fails: rolled back (release layout) or failed (in place).
fn canary_failed(layout: Layout) -> Dashboard {
    let mut d = running(layout);
    let s = SERVERS[1];
    let mut records = vec![
        state(100, s, ServerStatus::Depooling, None),
        state(101, s, ServerStatus::Activating, None),
        state(102, s, ServerStatus::Canary, None),
        rec(
            105,
            Event::Canary {
                server: id(s),
                attempt: 3,
                ok: false,
                status: Some(502),
                detail: "HTTP 502 Bad Gateway".into(),
            },
        ),
    ];
    match layout {
        Layout::Releases => records.extend([
            state(106, s, ServerStatus::RollingBack, None),
            rec(
                108,
                Event::Rollback {
                    server: id(s),
                    from: release(),
                    to: Some(ReleaseId::at(t0() - Duration::from_secs(86_400), "zz99").unwrap()),
                    ok: true,
                },
            ),
            state(
                110,
                s,
                ServerStatus::RolledBack,
                Some("canary failed: HTTP 502"),
            ),
        ]),
        _ => records.push(state(
            106,
            s,
            ServerStatus::Failed,
            Some("canary failed: HTTP 502; back in the pool"),
        )),
    }
    records.push(rec(
        111,
        Event::Prompt {
            question: "1 server(s) failed, the budget is 0. Continue with the next server?".into(),
            answer: None,
        },
    ));
    for r in records {
        d.apply(&r);
    }
    d
}

/// Answered yes; the rest done.
fn finished() -> Dashboard {
    let mut d = canary_failed(Layout::Releases);
    for r in [
        rec(
            115,
            Event::Prompt {
                question: "1 server(s) failed, the budget is 0. Continue with the next server?"
                    .into(),
                answer: Some("yes".into()),
            },
        ),
        state(116, SERVERS[2], ServerStatus::Copying, None),
        state(140, SERVERS[2], ServerStatus::Done, None),
        state(116, SERVERS[3], ServerStatus::Copying, None),
        state(
            150,
            SERVERS[3],
            ServerStatus::Failed,
            Some("hook post_activate failed"),
        ),
        rec(151, Event::StageFinished { stage: 1 }),
        rec(
            152,
            Event::DeployFinished {
                summary: Summary {
                    succeeded: 2,
                    warned: 0,
                    failed: 1,
                    rolled_back: 1,
                    skipped: 0,
                },
                duration_s: 152.0,
                verdict: mwdeploy_core::Verdict::Failed,
            },
        ),
    ] {
        d.apply(&r);
    }
    d
}

fn screen(dash: &Dashboard, ui: &UiState, w: u16, h: u16, now: SystemTime) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw(f, dash, ui, now)).unwrap();
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn ui() -> UiState {
    UiState::new(false)
}

#[test]
fn snapshot_pending() {
    let d = pending(Layout::Inplace);
    insta::assert_snapshot!("pending", screen(&d, &ui(), 80, 24, at(42)));
}

#[test]
fn snapshot_running_with_progress_bar() {
    let d = running(Layout::Inplace);
    let text = screen(&d, &ui(), 80, 24, at(96));
    assert!(text.contains(" 33%  12.3MB/s"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
    insta::assert_snapshot!("running", text);
}

#[test]
fn snapshot_canary_prompt_release_layout() {
    let d = canary_failed(Layout::Releases);
    let text = screen(&d, &ui(), 80, 24, at(112));
    assert!(
        text.contains("Canary failed on mw-us-east-012 (HTTP 502). Continue?"),
        "{text}"
    );
    assert!(text.contains("was rolled back"), "{text}");
    insta::assert_snapshot!("canary_prompt", text);
}

#[test]
fn snapshot_failed_server() {
    let mut d = canary_failed(Layout::Inplace);
    d.apply(&rec(
        113,
        Event::Prompt {
            question: "1 server(s) failed, the budget is 0. Continue with the next server?".into(),
            answer: Some("no".into()),
        },
    ));
    let text = screen(&d, &ui(), 80, 24, at(114));
    assert!(text.contains("✗ failed"), "{text}");
    insta::assert_snapshot!("failed", text);
}

#[test]
fn snapshot_rolled_back_server() {
    let mut d = canary_failed(Layout::Releases);
    d.apply(&rec(
        113,
        Event::Prompt {
            question: "1 server(s) failed, the budget is 0. Continue with the next server?".into(),
            answer: Some("yes".into()),
        },
    ));
    d.apply(&state(114, SERVERS[2], ServerStatus::Copying, None));
    let mut ui = ui();
    ui.selected = 1;
    let text = screen(&d, &ui, 80, 24, at(120));
    assert!(text.contains("↺ rolled back"), "{text}");
    insta::assert_snapshot!("rolled_back", text);
}

#[test]
fn snapshot_finished_with_summary() {
    let d = finished();
    let text = screen(&d, &ui(), 80, 24, at(200));
    assert!(
        text.contains("✓ 2 succeeded   ✗ 1 failed   – 1 skipped/rolled back"),
        "{text}"
    );
    insta::assert_snapshot!("finished", text);
}

fn many(n: usize) -> Dashboard {
    let names: Vec<String> = (1..=n).map(|i| format!("mw{i:03}")).collect();
    let mut d = Dashboard::new("d".into(), Some("big one".into()), names.clone());
    d.apply(&rec(
        0,
        Event::StageStarted {
            stage: 1,
            servers: names.iter().map(|s| id(s)).collect(),
        },
    ));
    for (i, s) in names.iter().enumerate().take(n / 2) {
        d.apply(&state(i as u64, s, ServerStatus::Done, None));
    }
    let s = &names[n / 2];
    d.apply(&state(60, s, ServerStatus::Transferring, None));
    d.apply(&rec(
        61,
        Event::Progress {
            server: id(s),
            step: "copy".into(),
            percent: Some(71.5),
            rate: Some("80.1MB/s".into()),
            line: Some("php/includes/Foo.php".into()),
        },
    ));
    d
}

#[test]
fn snapshot_large_terminal_scrolls_to_selection() {
    let d = many(60);
    let mut ui = ui();
    ui.selected = 45;
    let text = screen(&d, &ui, 120, 40, at(70));
    assert!(text.contains("▸ mw046"), "{text}");
    insta::assert_snapshot!("large", text);
}

#[test]
fn selection_stays_visible_at_80x24() {
    let d = many(60);
    for sel in [0, 10, 29, 30, 31, 59] {
        let mut ui = ui();
        ui.selected = sel;
        let text = screen(&d, &ui, 80, 24, at(70));
        assert!(
            text.contains(&format!("▸ mw{:03}", sel + 1)),
            "{sel}: {text}"
        );
    }
}

#[test]
fn tiny_terminals_do_not_panic() {
    let d = canary_failed(Layout::Releases);
    let mut ui = ui();
    ui.selected = 3;
    for (w, h) in [(1, 1), (5, 2), (10, 3), (20, 4), (30, 6), (40, 10)] {
        let _ = screen(&d, &ui, w, h, at(112));
        let f = finished();
        let _ = screen(&f, &ui, w, h, at(112));
        let mut log = ui.clone();
        log.overlay = Overlay::Log { row: 1, scroll: 3 };
        let _ = screen(&f, &log, w, h, at(112));
    }
    insta::assert_snapshot!("tiny", screen(&d, &ui, 20, 5, at(112)));
}

#[test]
fn full_log_view_shows_the_servers_lines() {
    let mut d = canary_failed(Layout::Releases);
    d.apply(&rec(
        112,
        Event::Prompt {
            question: "1 server(s) failed, the budget is 0. Continue with the next server?".into(),
            answer: Some("yes".into()),
        },
    ));
    let mut ui = ui();
    ui.overlay = Overlay::Log { row: 1, scroll: 0 };
    let text = screen(&d, &ui, 80, 24, at(112));
    assert!(text.contains("Log of mw-us-east-012"), "{text}");
    assert!(
        text.contains("canary attempt 3 failed: HTTP 502 Bad Gateway"),
        "{text}"
    );
    assert!(text.contains("rolled back from"), "{text}");
    insta::assert_snapshot!("log_view", text);
}

#[test]
fn pool_menu_and_stop_confirmation_are_drawn() {
    let d = running(Layout::Inplace);
    let mut ui = ui();
    ui.overlay = Overlay::PoolMenu { row: 1 };
    let text = screen(&d, &ui, 80, 24, at(96));
    assert!(
        text.contains("HAProxy pool action for mw-us-east-012:"),
        "{text}"
    );
    assert!(text.contains("[D] Depool (disable server)"), "{text}");
    ui.overlay = Overlay::ConfirmStop;
    let text = screen(&d, &ui, 80, 24, at(96));
    assert!(text.contains("Stop the deploy?"), "{text}");
    assert!(text.contains("[y/N]"), "{text}");
}

#[test]
fn model_counts_elapsed_and_bounds_the_log() {
    let d = running(Layout::Inplace);
    let rows = d.rows();
    assert_eq!(d.done_count(), 1);
    assert_eq!(rows[0].elapsed(at(500)), Some(Duration::from_secs(30)));
    assert_eq!(rows[1].elapsed(at(96)), Some(Duration::from_secs(22)));
    assert_eq!(rows[2].elapsed(at(96)), None);
    assert_eq!(d.prep()[0].commits, 2);
    assert_eq!(d.prep()[1].duration(at(500)), Duration::from_secs(31));
    // Control sequences are gone from remote output and the message.
    assert!(!rows[1].last_line().unwrap().text.contains('\u{1b}'));
    assert!(!d.message().unwrap().contains('\u{1b}'));

    let mut d = Dashboard::new("d".into(), None, vec!["mw1".into()]);
    for i in 0..(LOG_LINES + 20) {
        d.apply(&rec(
            i as u64,
            Event::Progress {
                server: id("mw1"),
                step: "copy".into(),
                percent: None,
                rate: None,
                line: Some(format!("line {i}")),
            },
        ));
    }
    let log = &d.rows()[0].log;
    assert_eq!(log.len(), LOG_LINES);
    assert_eq!(log.front().unwrap().text, "line 20");
}

#[test]
fn clean_drops_escape_sequences_and_redraws() {
    use super::model::clean;
    assert_eq!(clean("\u{1b}[1;31mred\u{1b}[0m text"), "red text");
    assert_eq!(clean("a\u{1b}]0;title\u{7}b\u{1b}]2;t\u{1b}\\c"), "abc");
    assert_eq!(clean("  10%  1MB/s\r  33%  12.3MB/s\r"), "  33%  12.3MB/s");
    assert_eq!(clean("line\r\n"), "line");
    assert_eq!(clean("tab\there\u{7}"), "tab here?");
    assert_eq!(clean("\u{9b}2Jx\u{1b}"), "x");
}

#[test]
fn pool_result_of_a_manual_request_becomes_the_notice() {
    let mut d = running(Layout::Inplace);
    d.pool_requested(SERVERS[2], true);
    d.apply(&rec(
        99,
        Event::Pool {
            server: id(SERVERS[2]),
            proxy: None,
            backend: None,
            action: mwdeploy_core::event::PoolAction::Depool,
            phase: mwdeploy_core::event::PoolPhase::Result,
            ok: Some(true),
            detail: None,
        },
    ));
    assert_eq!(d.notice(), Some("mw-us-east-021: depool: confirmed"));
    // The engine's own repool of the server ends the request: its results are no notice.
    let pool = |phase, ok| {
        rec(
            100,
            Event::Pool {
                server: id(SERVERS[2]),
                proxy: Some("lb2".into()),
                backend: None,
                action: mwdeploy_core::event::PoolAction::Repool,
                phase,
                ok,
                detail: None,
            },
        )
    };
    d.apply(&pool(mwdeploy_core::event::PoolPhase::Intent, None));
    d.apply(&pool(mwdeploy_core::event::PoolPhase::Result, Some(true)));
    assert_eq!(d.notice(), Some("mw-us-east-021: depool: confirmed"));
}

#[test]
fn colours_follow_state_and_none_without_colour() {
    use ratatui::style::Color;
    let d = finished();
    let cells = |colour: bool| {
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        let ui = UiState::new(colour);
        term.draw(|f| draw(f, &d, &ui, at(200))).unwrap();
        let buf = term.backend().buffer().clone();
        let mut found = Vec::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                let c = &buf[(x, y)];
                found.push((c.symbol().to_string(), c.fg, c.modifier));
            }
        }
        found
    };
    let coloured = cells(true);
    let fg_of = |sym: &str| coloured.iter().find(|c| c.0 == sym).map(|c| c.1);
    assert_eq!(fg_of("✓"), Some(Color::Green));
    assert_eq!(fg_of("↺"), Some(Color::Magenta));
    assert_eq!(fg_of("✗"), Some(Color::Red));
    for (sym, fg, m) in cells(false) {
        assert_eq!(fg, Color::Reset, "{sym}");
        assert!(m.is_empty(), "{sym}");
    }
}

#[test]
fn a_prompt_comes_before_the_log_view() {
    let d = canary_failed(Layout::Releases);
    let mut ui = ui();
    ui.overlay = Overlay::Log { row: 0, scroll: 0 };
    let text = screen(&d, &ui, 80, 24, at(112));
    assert!(text.contains("Canary failed on mw-us-east-012"), "{text}");
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('q'))),
        Some(Command::Decide(Decision::Answer(false)))
    );
    assert_eq!(ui.overlay, Overlay::None);
}

#[test]
fn the_engines_own_canary_question_is_shown_as_is() {
    let mut d = running(Layout::Inplace);
    d.apply(&state(
        100,
        SERVERS[1],
        ServerStatus::Failed,
        Some("canary failed"),
    ));
    d.apply(&rec(
        101,
        Event::Prompt {
            question: "Canary failed on mw-us-east-012 (HTTP 503). Continue?".into(),
            answer: None,
        },
    ));
    let (main, note) = d.prompt_text(d.prompt().unwrap());
    assert_eq!(
        main,
        "Canary failed on mw-us-east-012 (HTTP 503). Continue?"
    );
    assert_eq!(note, None);
}

#[test]
fn wrapped_height_counts_word_wrapped_lines() {
    use ratatui::text::Line;
    let h = |s: &str, w| super::view::wrapped_height(&Line::raw(s.to_string()), w);
    assert_eq!(h("", 10), 1);
    assert_eq!(h("abc def", 7), 1);
    assert_eq!(h("abc defg", 7), 2);
    assert_eq!(h("aaaa bbbb cccc", 9), 2);
    assert_eq!(h("aaaaaaaaaaaaaaaaaaaa", 10), 2);
    assert_eq!(h("x aaaaaaaaaaaaaaaaaaaaa", 10), 4);
    assert_eq!(h("aaaaaaaaaaaaaaaaaaaa b", 10), 3);
}

// Keys.

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn prompt_answer(k: KeyEvent) -> Option<Command> {
    let d = canary_failed(Layout::Releases);
    let mut ui = ui();
    let c = on_key(&d, &mut ui, k);
    // Answered: its box closes, the next key is no second answer.
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Char('y'))), None);
    c
}

#[test]
fn at_the_prompt_only_y_is_yes() {
    let no = Some(Command::Decide(Decision::Answer(false)));
    assert_eq!(prompt_answer(key(KeyCode::Esc)), no);
    assert_eq!(prompt_answer(key(KeyCode::Char('n'))), no);
    assert_eq!(prompt_answer(key(KeyCode::Char('N'))), no);
    assert_eq!(prompt_answer(key(KeyCode::Char('x'))), no);
    assert_eq!(prompt_answer(key(KeyCode::Enter)), no);
    assert_eq!(
        prompt_answer(key(KeyCode::Char('y'))),
        Some(Command::Decide(Decision::Answer(true)))
    );
    assert_eq!(
        prompt_answer(key(KeyCode::Char('Y'))),
        Some(Command::Decide(Decision::Answer(true)))
    );
}

#[test]
fn q_then_y_stops_and_q_then_esc_does_nothing() {
    let d = running(Layout::Inplace);
    let mut ui = ui();
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Char('q'))), None);
    assert_eq!(ui.overlay, Overlay::ConfirmStop);
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('y'))),
        Some(Command::Decide(Decision::Stop(StopReason::Operator)))
    );
    assert_eq!(ui.overlay, Overlay::None);

    let mut ui = UiState::new(false);
    assert_eq!(on_key(&d, &mut ui, ctrl('x')), None);
    assert_eq!(ui.overlay, Overlay::ConfirmStop);
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Esc)), None);
    assert_eq!(ui.overlay, Overlay::None);
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Char('q'))), None);
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Char('n'))), None);
    assert_eq!(ui.overlay, Overlay::None);
}

#[test]
fn ctrl_c_interrupts_and_closes_once_over() {
    let d = running(Layout::Inplace);
    let mut ui = ui();
    assert_eq!(on_key(&d, &mut ui, ctrl('c')), Some(Command::Interrupt));
    // Also at the prompt.
    let p = canary_failed(Layout::Releases);
    assert_eq!(
        on_key(&p, &mut UiState::new(false), ctrl('c')),
        Some(Command::Interrupt)
    );
    let f = finished();
    assert_eq!(
        on_key(&f, &mut UiState::new(false), ctrl('c')),
        Some(Command::Close)
    );
    assert_eq!(
        on_key(&f, &mut UiState::new(false), key(KeyCode::Char('a'))),
        Some(Command::Close)
    );
}

#[test]
fn arrows_select_within_bounds() {
    let d = running(Layout::Inplace);
    let mut ui = ui();
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Up)), None);
    assert_eq!(ui.selected, 0);
    for _ in 0..10 {
        on_key(&d, &mut ui, key(KeyCode::Down));
    }
    assert_eq!(ui.selected, SERVERS.len() - 1);
    on_key(&d, &mut ui, key(KeyCode::Up));
    assert_eq!(ui.selected, SERVERS.len() - 2);
}

#[test]
fn ctrl_r_then_d_depools_the_selected_server() {
    let d = running(Layout::Inplace);
    let mut ui = ui();
    on_key(&d, &mut ui, key(KeyCode::Down));
    assert_eq!(on_key(&d, &mut ui, ctrl('r')), None);
    assert_eq!(ui.overlay, Overlay::PoolMenu { row: 1 });
    let s = screen(&d, &ui, 100, 30, at(100));
    assert!(s.contains("[D] Depool"), "{s}");
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('d'))),
        Some(Command::Pool {
            server: SERVERS[1].into(),
            depool: true
        })
    );
    on_key(&d, &mut ui, ctrl('r'));
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('R'))),
        Some(Command::Pool {
            server: SERVERS[1].into(),
            depool: false
        })
    );
    on_key(&d, &mut ui, ctrl('r'));
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Char('n'))), None);
    assert_eq!(ui.overlay, Overlay::None);
}

#[test]
fn p_pauses_then_resumes() {
    let d = running(Layout::Inplace);
    let mut ui = ui();
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('p'))),
        Some(Command::Decide(Decision::Pause))
    );
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('p'))),
        Some(Command::Decide(Decision::Resume))
    );
}

#[test]
fn ctrl_o_opens_the_log_and_q_closes_it() {
    let d = running(Layout::Inplace);
    let mut ui = ui();
    on_key(&d, &mut ui, key(KeyCode::Down));
    on_key(&d, &mut ui, ctrl('o'));
    assert_eq!(ui.overlay, Overlay::Log { row: 1, scroll: 0 });
    on_key(&d, &mut ui, key(KeyCode::Up));
    assert_eq!(ui.overlay, Overlay::Log { row: 1, scroll: 1 });
    // q in the log view goes back, it does not ask to stop.
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Char('q'))), None);
    assert_eq!(ui.overlay, Overlay::None);
}

#[test]
fn key_releases_are_ignored() {
    let d = finished();
    let mut ui = ui();
    let mut k = key(KeyCode::Char('a'));
    k.kind = KeyEventKind::Release;
    assert_eq!(on_key(&d, &mut ui, k), None);
}

// The run loop on the test backend.

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Control for Recorder {
    fn decide(&self, d: Decision) {
        self.0.lock().unwrap().push(format!("{d:?}"));
    }
    fn pool(&self, server: &str, depool: bool, _: &mpsc::UnboundedSender<Record>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("pool {server} {depool}"));
    }
    fn interrupt(&self) {
        self.0.lock().unwrap().push("interrupt".into());
    }
}

#[tokio::test(start_paused = true)]
async fn loop_answers_no_after_the_timeout_and_closes_on_a_key_after_the_end() {
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let (ktx, mut krx) = mpsc::unbounded_channel();
    let control = Recorder::default();
    let opts = TuiOptions {
        exit_when_done: false,
        colour: true,
        viewer: false,
    };
    for r in [
        state(1, "mw1", ServerStatus::Canary, None),
        state(2, "mw1", ServerStatus::Failed, Some("canary failed")),
        rec(
            3,
            Event::Prompt {
                question: "1 server(s) failed, the budget is 0. Continue with the next server?"
                    .into(),
                answer: None,
            },
        ),
    ] {
        rtx.send(r).unwrap();
    }
    let driver = async {
        tokio::time::sleep(PROMPT_TIMEOUT + Duration::from_secs(2)).await;
        drop(rtx);
        tokio::time::sleep(Duration::from_secs(1)).await;
        ktx.send(Ok(TermEvent::Key(key(KeyCode::Char('z')))))
            .unwrap();
    };
    let (res, ()) = tokio::join!(
        event_loop(&mut term, &mut rrx, &mut krx, &control, opts),
        driver
    );
    res.unwrap();
    assert_eq!(
        *control.0.lock().unwrap(),
        vec!["Answer(false)".to_string()]
    );
}

#[tokio::test(start_paused = true)]
async fn loop_closes_at_the_end_with_exit_when_done() {
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let (ktx, mut krx) = mpsc::unbounded_channel();
    let control = Recorder::default();
    let opts = TuiOptions {
        exit_when_done: true,
        colour: false,
        viewer: false,
    };
    rtx.send(state(1, "mw1", ServerStatus::Copying, None))
        .unwrap();
    let driver = async {
        // The record is in before the keys come.
        tokio::time::sleep(Duration::from_millis(100)).await;
        ktx.send(Ok(TermEvent::Key(ctrl('r')))).unwrap();
        ktx.send(Ok(TermEvent::Key(key(KeyCode::Char('d')))))
            .unwrap();
        ktx.send(Ok(TermEvent::Key(ctrl('c')))).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(rtx);
    };
    let (res, ()) = tokio::join!(
        event_loop(&mut term, &mut rrx, &mut krx, &control, opts),
        driver
    );
    res.unwrap();
    assert_eq!(
        *control.0.lock().unwrap(),
        vec!["pool mw1 true".to_string(), "interrupt".to_string()]
    );
}

#[tokio::test(start_paused = true)]
async fn loop_closes_by_itself_after_an_interrupted_deploy() {
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let (_ktx, mut krx) = mpsc::unbounded_channel();
    let control = Recorder::default();
    let opts = TuiOptions {
        exit_when_done: false,
        colour: false,
        viewer: false,
    };
    rtx.send(rec(
        5,
        Event::DeployFinished {
            summary: Summary::default(),
            duration_s: 5.0,
            verdict: mwdeploy_core::Verdict::Interrupted,
        },
    ))
    .unwrap();
    drop(rtx);
    event_loop(&mut term, &mut rrx, &mut krx, &control, opts)
        .await
        .unwrap();
    assert!(control.0.lock().unwrap().is_empty());
}

#[test]
fn a_viewer_only_looks_and_closes_on_q() {
    let d = canary_failed(Layout::Releases);
    let mut ui = UiState::new(false);
    ui.viewer = true;
    // A prompt is shown but not answered from here.
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Char('y'))), None);
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Char('p'))), None);
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Down)), None);
    assert_eq!(ui.selected, 1);
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('q'))),
        Some(Command::Close)
    );
    assert_eq!(on_key(&d, &mut ui, ctrl('c')), Some(Command::Close));
}

#[test]
fn a_viewers_ctrl_r_opens_the_pool_menu_after_the_end_too() {
    let d = finished();
    let mut ui = UiState::new(false);
    ui.viewer = true;
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Down)), None);
    assert_eq!(on_key(&d, &mut ui, ctrl('r')), None);
    assert_eq!(ui.overlay, Overlay::PoolMenu { row: 1 });
    let s = screen(&d, &ui, 100, 30, at(100));
    assert!(s.contains("[D] Depool"), "{s}");
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('D'))),
        Some(Command::Pool {
            server: SERVERS[1].into(),
            depool: true
        })
    );
    assert_eq!(ui.overlay, Overlay::None);
    on_key(&d, &mut ui, ctrl('r'));
    assert_eq!(
        on_key(&d, &mut ui, key(KeyCode::Char('r'))),
        Some(Command::Pool {
            server: SERVERS[1].into(),
            depool: false
        })
    );
    // N, Esc or q cancel the menu without closing the viewer.
    for k in [KeyCode::Char('n'), KeyCode::Esc, KeyCode::Char('q')] {
        on_key(&d, &mut ui, ctrl('r'));
        assert_eq!(on_key(&d, &mut ui, key(k)), None, "{k:?}");
        assert_eq!(ui.overlay, Overlay::None);
    }
    assert_eq!(on_key(&d, &mut ui, key(KeyCode::Esc)), Some(Command::Close));
}

/// A viewer's control that answers each pool change with `notes`, as the viewer's pool
/// menu does from its task.
struct Answering(Vec<Record>);

impl Control for Answering {
    fn decide(&self, _: Decision) {}
    fn pool(&self, _: &str, _: bool, notes: &mpsc::UnboundedSender<Record>) {
        for r in &self.0 {
            notes.send(r.clone()).unwrap();
        }
    }
    fn interrupt(&self) {}
}

/// The screen of a viewer of the finished deploy after Ctrl+R and `choice` on the first
/// server, with `control` answering the change.
async fn viewer_after_pool_key(control: Answering, choice: char) -> String {
    let mut term = Terminal::new(TestBackend::new(100, 24)).unwrap();
    let (rtx, mut rrx) = mpsc::unbounded_channel();
    let (ktx, mut krx) = mpsc::unbounded_channel();
    let opts = TuiOptions {
        exit_when_done: false,
        colour: false,
        viewer: true,
    };
    rtx.send(state(1, SERVERS[0], ServerStatus::Done, None))
        .unwrap();
    let driver = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ktx.send(Ok(TermEvent::Key(ctrl('r')))).unwrap();
        ktx.send(Ok(TermEvent::Key(key(KeyCode::Char(choice)))))
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        ktx.send(Ok(TermEvent::Key(key(KeyCode::Char('q')))))
            .unwrap();
    };
    let (res, ()) = tokio::join!(
        event_loop(&mut term, &mut rrx, &mut krx, &control, opts),
        driver
    );
    res.unwrap();
    let buf = term.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

#[tokio::test(start_paused = true)]
async fn a_viewers_pool_change_shows_its_result_on_the_row_and_the_notice() {
    let pool = |phase, ok| {
        rec(
            9,
            Event::Pool {
                server: id(SERVERS[0]),
                proxy: None,
                backend: None,
                action: mwdeploy_core::event::PoolAction::Depool,
                phase,
                ok,
                detail: None,
            },
        )
    };
    use mwdeploy_core::event::PoolPhase;
    let control = Answering(vec![
        pool(PoolPhase::Intent, None),
        pool(PoolPhase::Result, Some(true)),
    ]);
    let screen = viewer_after_pool_key(control, 'd').await;
    assert!(
        screen.contains(&format!("{}: depool: confirmed", SERVERS[0])),
        "{screen}"
    );
    // The selected row's latest line says it too.
    assert!(screen.contains("  depool: confirmed"), "{screen}");
}

#[tokio::test(start_paused = true)]
async fn a_viewers_refused_pool_change_says_why_on_screen() {
    let refused = rec(
        9,
        Event::Warning {
            server: Some(id(SERVERS[0])),
            detail: "pool: refused while a deploy runs: use Ctrl+R on its own dashboard; lock \
                     held by ops@lb (pid 7)"
                .into(),
        },
    );
    let screen = viewer_after_pool_key(Answering(vec![refused]), 'r').await;
    assert!(
        screen.contains("pool: refused while a deploy runs: use Ctrl+R on its own dashboard"),
        "{screen}"
    );
}

#[test]
fn a_refused_pool_request_is_not_answered_by_the_deploys_own_pool_changes() {
    let mut d = running(Layout::Releases);
    d.pool_requested(SERVERS[0], true);
    d.apply(&rec(
        20,
        Event::Warning {
            server: Some(id(SERVERS[0])),
            detail: "pool: refused while a deploy runs".into(),
        },
    ));
    d.apply(&rec(
        21,
        Event::Pool {
            server: id(SERVERS[0]),
            proxy: Some("lb1".into()),
            backend: Some("mediawiki".into()),
            action: mwdeploy_core::event::PoolAction::Depool,
            phase: mwdeploy_core::event::PoolPhase::Result,
            ok: Some(true),
            detail: None,
        },
    ));
    assert_eq!(d.notice(), Some("pool: refused while a deploy runs"));
}
