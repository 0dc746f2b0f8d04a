//! The screen: the dashboard drawn into a ratatui frame, at any size.
//!
//! Layout, top to bottom: header (tool, deploy message, UTC time), a rule, "Preparation"
//! with its steps, "Deploying (k/N done)" with one row per server (scrolled to keep the
//! selection visible), a status line (summary, stopping, paused), a notice line, the keys.
//! Overlays: the failure prompt, the stop confirmation, the pool menu; the full-log view
//! replaces the screen.

use std::time::{Duration, SystemTime};

use mwdeploy_core::event::PrepStatus;
use mwdeploy_core::{ServerStatus, Verdict};
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::model::{since, state_words, Dashboard, PrepRow, ServerRow};
use super::{Overlay, UiState, PROMPT_TIMEOUT};

/// How the deploy ended, in a word or two.
fn verdict_words(v: Verdict) -> String {
    match v {
        Verdict::Done => "done".to_string(),
        Verdict::Failed => "failed".to_string(),
        Verdict::Stopped(reason) => format!("stopped: {reason}"),
        Verdict::Refused => "refused".to_string(),
        Verdict::Interrupted => "interrupted".to_string(),
        _ => format!("{v:?}"),
    }
}

/// The tool's name in the header.
const TOOL: &str = "mwdeploy";

/// Styles, or none at all when colour is off (`NO_COLOR`).
#[derive(Debug, Clone, Copy)]
struct Styles {
    colour: bool,
}

impl Styles {
    fn fg(self, c: Color) -> Style {
        if self.colour {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    fn bold(self) -> Style {
        if self.colour {
            Style::default().add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        }
    }

    fn dim(self) -> Style {
        self.fg(Color::DarkGray)
    }

    fn state(self, s: ServerStatus) -> Style {
        self.fg(match s {
            ServerStatus::Done => Color::Green,
            ServerStatus::Pending => Color::DarkGray,
            ServerStatus::Failed => Color::Red,
            ServerStatus::RolledBack => Color::Magenta,
            ServerStatus::Warned => Color::Yellow,
            ServerStatus::Skipped => Color::DarkGray,
            _ => Color::Cyan,
        })
    }

    fn prep(self, s: PrepStatus) -> Style {
        self.fg(match s {
            PrepStatus::Running => Color::Cyan,
            PrepStatus::Ok => Color::Green,
            PrepStatus::Failed => Color::Red,
            PrepStatus::Warned => Color::Yellow,
        })
    }

    fn selected(self) -> Style {
        if self.colour {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default()
        }
    }
}

/// The icon and label of a state: `✓ done`, `⟳ copying`, `↺ rolled back`.
pub(crate) fn state_label(s: ServerStatus) -> String {
    let icon = match s {
        ServerStatus::Done => '✓',
        ServerStatus::Pending => '○',
        ServerStatus::Failed => '✗',
        ServerStatus::RolledBack => '↺',
        ServerStatus::Warned => '!',
        ServerStatus::Skipped => '–',
        _ => '⟳',
    };
    format!("{icon} {}", state_words(s))
}

fn prep_icon(s: PrepStatus) -> char {
    match s {
        PrepStatus::Running => '⟳',
        PrepStatus::Ok => '✓',
        PrepStatus::Failed => '✗',
        PrepStatus::Warned => '!',
    }
}

/// `45s`, `1m 12s`, `2h 05m`.
pub(crate) fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// `14:33:55` (UTC).
fn clock(t: SystemTime) -> String {
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.get(11..19).unwrap_or("??:??:??").to_string()
}

/// `[████████░░░░░░░░]` for `percent`, `width` cells between the brackets.
pub(crate) fn bar(percent: f32, width: usize) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 100.0) * width as f32).round() as usize;
    let filled = filled.min(width);
    let mut s = String::with_capacity(width * 3 + 2);
    s.push('[');
    s.extend(std::iter::repeat_n('█', filled));
    s.extend(std::iter::repeat_n('░', width - filled));
    s.push(']');
    s
}

/// `s` cut to `width` characters, with `…` when cut.
fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

fn pad(s: &str, width: usize) -> String {
    format!("{:<width$}", fit(s, width))
}

/// Draws the dashboard as it is at `now`.
pub(crate) fn draw(frame: &mut Frame, dash: &Dashboard, ui: &UiState, now: SystemTime) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let st = Styles { colour: ui.colour };
    if let (Overlay::Log { row, scroll }, None) = (ui.overlay, ui.open_prompt(dash)) {
        if let Some(r) = dash.rows().get(row) {
            draw_log(frame, area, r, scroll, st);
            return;
        }
    }
    let lines = screen(dash, ui, now, area, st);
    frame.render_widget(Paragraph::new(lines), area);

    // Once over, only a viewer's pool menu (it works after the deploy) covers the screen.
    if dash.is_over() && !matches!(ui.overlay, Overlay::PoolMenu { .. }) {
        return;
    }
    if let Some(p) = ui.open_prompt(dash) {
        let (main, note) = dash.prompt_text(p);
        let left = PROMPT_TIMEOUT.saturating_sub(since(p.asked, now));
        if area.height < 10 {
            // Little room: the question and the keys only.
            let text = vec![Line::styled(format!("{main}  [Y] Yes  [N] No"), st.bold())];
            popup(frame, area, " ? ", text, st.fg(Color::Red));
            return;
        }
        let mut text = vec![Line::styled(main, st.bold())];
        if let Some(n) = note {
            text.push(Line::raw(n));
        }
        text.push(Line::raw(""));
        text.push(Line::from(vec![
            Span::styled("[Y]", st.fg(Color::Green)),
            Span::raw(" Yes, continue   "),
            Span::styled("[N]", st.fg(Color::Red)),
            Span::raw(" Stop here"),
        ]));
        text.push(Line::styled(
            format!("No answer in {} is No.", short_duration(left)),
            st.dim(),
        ));
        let title = if p.server.is_some() {
            " Failure "
        } else {
            " Question "
        };
        popup(frame, area, title, text, st.fg(Color::Red));
        return;
    }
    match &ui.overlay {
        Overlay::ConfirmStop => popup(
            frame,
            area,
            " Stop ",
            vec![Line::raw(
                "Stop the deploy? Running servers finish and go back into the pool. [y/N]",
            )],
            st.fg(Color::Yellow),
        ),
        Overlay::PoolMenu { row } => {
            let name = dash.rows().get(*row).map_or("?", |r| r.name.as_str());
            popup(
                frame,
                area,
                " Pool ",
                vec![
                    Line::raw(format!("HAProxy pool action for {name}:")),
                    Line::raw(""),
                    Line::raw("[D] Depool (disable server)"),
                    Line::raw("[R] Repool (enable server)"),
                    Line::raw("[N] Cancel"),
                ],
                st.fg(Color::Cyan),
            )
        }
        _ => {}
    }
}

/// The main screen as lines, fitted to `area`.
fn screen(
    dash: &Dashboard,
    ui: &UiState,
    now: SystemTime,
    area: Rect,
    st: Styles,
) -> Vec<Line<'static>> {
    let width = area.width as usize;
    let height = area.height as usize;
    let mut top: Vec<Line<'static>> = Vec::new();
    let mut bottom: Vec<Line<'static>> = Vec::new();

    // Header: tool, message, time at the right.
    let time = humantime::format_rfc3339_seconds(now).to_string();
    // The message first: the id is what gives way on a narrow screen.
    let left = match dash.message() {
        Some(m) => format!("{TOOL}  {m}  ({})", dash.deploy_id()),
        None => format!("{TOOL}  {}", dash.deploy_id()),
    };
    let room = width.saturating_sub(time.chars().count() + 1);
    let left = fit(&left, room);
    let gap = width.saturating_sub(left.chars().count() + time.chars().count());
    top.push(Line::from(vec![
        Span::styled(left, st.bold()),
        Span::raw(" ".repeat(gap)),
        Span::raw(time),
    ]));
    if height >= 8 {
        top.push(Line::styled("─".repeat(width), st.dim()));
    }

    // Bottom: status, notice, keys.
    if height >= 3 {
        bottom.push(keys_line(dash, ui, st));
    }
    if height >= 5 {
        if let Some(n) = dash.notice() {
            bottom.insert(0, Line::raw(fit(n, width)));
        }
    }
    if height >= 4 {
        if let Some(l) = status_line(dash, ui, width, st) {
            bottom.insert(0, l);
        }
    }

    let mut mid = height.saturating_sub(top.len() + bottom.len());
    let body_room = mid;
    let mut body: Vec<Line<'static>> = Vec::new();

    // Preparation.
    if mid >= 2 {
        body.push(prep_title(dash, now, st));
        mid -= 1;
        let prep = dash.prep();
        let budget = if dash.stage().is_some() {
            mid.saturating_sub(2) / 4
        } else {
            mid.saturating_sub(2)
        };
        let shown = prep.len().min(budget);
        for p in &prep[prep.len() - shown..] {
            body.push(prep_line(p, now, width, st));
        }
        mid -= shown;
    }

    // Deploying.
    if mid >= 1 {
        let rows = dash.rows();
        let mut title = format!("Deploying  ({}/{} done)", dash.done_count(), rows.len());
        if let Some((k, n)) = dash.stage() {
            title.push_str(&format!("  stage {k} ({n} servers)"));
        }
        mid -= 1;
        let heights: Vec<usize> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| row_height(r, i == ui.selected))
            .collect();
        let (first, last) = visible_rows(&heights, ui.selected, mid);
        if first > 0 || last < rows.len() {
            title.push_str(&format!("  rows {}-{} of {}", first + 1, last, rows.len()));
        }
        body.push(Line::styled(fit(&title, width), st.bold()));
        let name_w = rows
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(6, 24);
        for (i, r) in rows.iter().enumerate().take(last).skip(first) {
            let sel = i == ui.selected;
            body.extend(row_lines(r, sel, name_w, now, width, st));
        }
    }

    let mut lines = top;
    // A selected row taller than the room left is cut, not the keys.
    body.truncate(body_room);
    lines.extend(body);
    let fill = height.saturating_sub(lines.len() + bottom.len());
    lines.extend(std::iter::repeat_n(Line::raw(""), fill));
    lines.extend(bottom);
    lines.truncate(height);
    lines
}

fn keys_line(dash: &Dashboard, ui: &UiState, st: Styles) -> Line<'static> {
    let text = if ui.viewer {
        "  viewer (its terminal answers prompts)  [↑↓] select  [Ctrl+O] log  [Ctrl+R] pool  [q] close"
            .to_string()
    } else if dash.is_over() {
        "  The deploy has ended: press any key to close".to_string()
    } else {
        let pause = if ui.paused { "resume" } else { "pause" };
        format!("  [↑↓] select  [Ctrl+O] log  [Ctrl+R] depool/repool  [p] {pause}  [Ctrl+X] stop")
    };
    Line::styled(text, st.dim())
}

fn status_line(dash: &Dashboard, ui: &UiState, width: usize, st: Styles) -> Option<Line<'static>> {
    if let Some(f) = dash.finished() {
        let s = f.summary;
        let mut spans = vec![
            Span::styled(format!("✓ {} succeeded", s.succeeded), st.fg(Color::Green)),
            Span::raw("   "),
        ];
        if s.warned > 0 {
            spans.push(Span::styled(
                format!("! {} warned", s.warned),
                st.fg(Color::Yellow),
            ));
            spans.push(Span::raw("   "));
        }
        spans.push(Span::styled(
            format!("✗ {} failed", s.failed),
            st.fg(Color::Red),
        ));
        spans.push(Span::raw("   "));
        spans.push(Span::styled(
            format!("– {} skipped/rolled back", s.skipped + s.rolled_back),
            st.dim(),
        ));
        spans.push(Span::raw(format!(
            "   in {}, {}",
            short_duration(f.duration),
            verdict_words(f.verdict)
        )));
        return Some(Line::from(spans));
    }
    if let Some(s) = dash.stopping() {
        return Some(Line::styled(
            fit(&format!("Stopping ({s}): running servers finish"), width),
            st.fg(Color::Yellow),
        ));
    }
    if ui.stop_asked {
        return Some(Line::styled(
            "Stop asked: running servers finish and go back into the pool",
            st.fg(Color::Yellow),
        ));
    }
    if ui.paused {
        return Some(Line::styled(
            "Paused: no new server starts until [p]",
            st.fg(Color::Yellow),
        ));
    }
    None
}

fn prep_title(dash: &Dashboard, now: SystemTime, st: Styles) -> Line<'static> {
    let prep = dash.prep();
    let status = if prep.iter().any(|p| p.status == PrepStatus::Failed) {
        Some(PrepStatus::Failed)
    } else if prep.iter().any(|p| p.status == PrepStatus::Running) {
        Some(PrepStatus::Running)
    } else if prep.iter().any(|p| p.status == PrepStatus::Warned) {
        Some(PrepStatus::Warned)
    } else if !prep.is_empty() || dash.stage().is_some() {
        Some(PrepStatus::Ok)
    } else {
        None
    };
    let mut spans = vec![Span::styled("Preparation  ", st.bold())];
    match status {
        Some(s) => {
            let word = match s {
                PrepStatus::Running => "running",
                PrepStatus::Ok => "done",
                PrepStatus::Failed => "failed",
                PrepStatus::Warned => "warned",
            };
            spans.push(Span::styled(format!("{} {word}", prep_icon(s)), st.prep(s)));
        }
        None => spans.push(Span::styled("○ waiting", st.dim())),
    }
    // From the first start to the last end (or now, while a step runs).
    if let Some(start) = prep.iter().map(|p| p.started).min() {
        let end = if status == Some(PrepStatus::Running) {
            now
        } else {
            prep.iter().filter_map(|p| p.ended).max().unwrap_or(now)
        };
        spans.push(Span::raw(format!(
            "  [{}]",
            short_duration(since(start, end))
        )));
    }
    Line::from(spans)
}

fn prep_line(p: &PrepRow, now: SystemTime, width: usize, st: Styles) -> Line<'static> {
    let name = p.step.replace('_', " ");
    let mut extra = String::new();
    if p.commits > 0 || (p.status == PrepStatus::Ok && p.step.starts_with("pull")) {
        extra = if p.commits == 1 {
            "1 incoming commit".to_string()
        } else {
            format!("{} incoming commits", p.commits)
        };
    }
    if let Some(d) = &p.detail {
        if !extra.is_empty() {
            extra.push_str("; ");
        }
        extra.push_str(d);
    }
    let head = format!(
        "  {} {} {:>7}",
        prep_icon(p.status),
        pad(&name, 22),
        short_duration(p.duration(now))
    );
    let rest = fit(&extra, width.saturating_sub(head.chars().count() + 2));
    Line::from(vec![
        Span::styled(head, st.prep(p.status)),
        Span::raw("  "),
        Span::raw(rest),
    ])
}

fn is_running(s: ServerStatus) -> bool {
    s != ServerStatus::Pending && !s.is_final()
}

fn row_height(r: &ServerRow, selected: bool) -> usize {
    if (is_running(r.state) || selected) && r.last_line().is_some() {
        2
    } else {
        1
    }
}

/// The rows `first..last` to show in `room` lines so that `selected` is among them.
fn visible_rows(heights: &[usize], selected: usize, room: usize) -> (usize, usize) {
    let selected = selected.min(heights.len().saturating_sub(1));
    // From the top if the selection fits so; else end at the selection.
    let mut first = 0;
    let mut used: usize = heights.iter().take(selected + 1).sum();
    while used > room && first < selected {
        used -= heights[first];
        first += 1;
    }
    let mut last = first;
    let mut used = 0;
    while last < heights.len() && used + heights[last] <= room {
        used += heights[last];
        last += 1;
    }
    // The selected row, even if only its first line fits.
    if last == first && first < heights.len() && room > 0 {
        last += 1;
    }
    (first, last)
}

fn row_lines(
    r: &ServerRow,
    selected: bool,
    name_w: usize,
    now: SystemTime,
    width: usize,
    st: Styles,
) -> Vec<Line<'static>> {
    let marker = if selected { "▸ " } else { "  " };
    let name_style = if selected {
        st.selected()
    } else {
        Style::default()
    };
    let elapsed = r.elapsed(now).map(short_duration).unwrap_or_default();
    let head_w = 2 + name_w + 1 + 15 + 7 + 2;
    let rest_w = width.saturating_sub(head_w);
    let mut spans = vec![
        Span::raw(marker),
        Span::styled(pad(&r.name, name_w), name_style),
        Span::raw(" "),
        Span::styled(pad(&state_label(r.state), 15), st.state(r.state)),
        Span::raw(format!("{elapsed:>7}  ")),
    ];
    let running = is_running(r.state);
    if running {
        if let Some(p) = r.percent {
            let tail = format!(
                "  {:.0}%  {}",
                p,
                r.rate.as_deref().unwrap_or(r.step.as_deref().unwrap_or(""))
            );
            let bar_w = rest_w.saturating_sub(tail.chars().count() + 2).min(32);
            if bar_w >= 4 {
                spans.push(Span::styled(bar(p, bar_w), st.state(r.state)));
                spans.push(Span::raw(fit(&tail, rest_w.saturating_sub(bar_w + 2))));
            } else {
                spans.push(Span::raw(fit(tail.trim_start(), rest_w)));
            }
        } else if let Some(d) = r.detail.as_deref().or(r.step.as_deref()) {
            spans.push(Span::raw(fit(d, rest_w)));
        }
    } else {
        // Why it failed: the state's detail, else the failing step's reason.
        let text = match (&r.detail, &r.failure) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(f)) if r.state != ServerStatus::Done => Some(f.reason.clone()),
            _ => None,
        };
        if let Some(t) = text {
            spans.push(Span::styled(fit(&t, rest_w), st.dim()));
        }
    }
    let mut lines = vec![Line::from(spans)];
    if row_height(r, selected) == 2 {
        if let Some(l) = r.last_line() {
            let head = format!("    {}  ", clock(l.ts));
            let room = width.saturating_sub(head.chars().count());
            lines.push(Line::from(vec![
                Span::styled(head, st.dim()),
                Span::raw(fit(&l.text, room)),
            ]));
        }
    }
    lines
}

/// The full log of one server, newest at the bottom, `scroll` lines up from the end.
fn draw_log(frame: &mut Frame, area: Rect, r: &ServerRow, scroll: usize, st: Styles) {
    let width = area.width as usize;
    let height = area.height as usize;
    let room = height.saturating_sub(2);
    let total = r.log.len();
    let scroll = scroll.min(total.saturating_sub(room));
    let end = total - scroll;
    let start = end.saturating_sub(room);
    let mut lines = vec![Line::styled(
        fit(
            &format!(
                "Log of {}  ({}, lines {}-{} of {})",
                r.name,
                state_label(r.state),
                if total == 0 { 0 } else { start + 1 },
                end,
                total
            ),
            width,
        ),
        st.bold(),
    )];
    for l in r.log.range(start..end) {
        let head = format!("{}  ", clock(l.ts));
        let rest = fit(&l.text, width.saturating_sub(head.chars().count()));
        lines.push(Line::from(vec![
            Span::styled(head, st.dim()),
            Span::raw(rest),
        ]));
    }
    let fill = height.saturating_sub(lines.len() + 1);
    lines.extend(std::iter::repeat_n(Line::raw(""), fill));
    if height >= 2 {
        lines.push(Line::styled(
            "  [↑↓ PgUp PgDn] scroll  [q/Esc] back",
            st.dim(),
        ));
    }
    lines.truncate(height);
    frame.render_widget(Paragraph::new(lines), area);
}

/// Lines that `line` takes wrapped at word boundaries into `width` columns (as the
/// paragraph's word wrap does, or more: a box one line too tall is fine, one too short cuts).
pub(super) fn wrapped_height(line: &Line, width: usize) -> usize {
    let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
    let mut lines = 1;
    let mut col = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let w = word.chars().count();
        let need = if col == 0 { w } else { col + 1 + w };
        if need <= width {
            col = need;
        } else {
            if col > 0 {
                lines += 1;
            }
            // A word longer than the line is broken across lines.
            lines += w.saturating_sub(1) / width.max(1);
            col = (w - 1) % width.max(1) + 1;
        }
    }
    lines
}

/// A bordered box in the middle of `area` holding `text` (wrapped).
fn popup(frame: &mut Frame, area: Rect, title: &str, text: Vec<Line<'static>>, border: Style) {
    let w = area.width.min(72);
    if w < 4 || area.height < 3 {
        frame.render_widget(Clear, area);
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let inner_w = (w - 2) as usize;
    let needed: usize = text.iter().map(|l| wrapped_height(l, inner_w)).sum();
    if needed + 2 > area.height as usize {
        // No room for the border: the text alone over the whole screen, from the top.
        frame.render_widget(Clear, area);
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
        return;
    }
    let h = needed as u16 + 2;
    let x = area.x + (area.width - w) / 2;
    let y = area.y + (area.height - h) / 2;
    let r = Rect::new(x, y, w, h);
    frame.render_widget(Clear, r);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(border)
        .title(title.to_string());
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
        r,
    );
}
