//! The event log: the latest events, one line each, newest at the bottom.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::event_log::LineKind;
use crate::app::{LogStream, State};

use super::theme;
use super::widgets::text_panel;

pub fn draw(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    if state.ui.memory_shown {
        return draw_memory(state, frame, area, focused);
    }
    if state.ui.server_log_shown {
        return draw_server_log(state, frame, area, focused);
    }
    let server = state.server();
    let log = &server.log;
    let scroll = state.ui.log_scroll.min(log.len().saturating_sub(1));
    let title = if scroll > 0 {
        format!(" Events ({scroll} newer below) ")
    } else {
        " Events ".to_string()
    };
    let block = text_panel(title, focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let rows = usize::from(inner.height);
    let end = log.len() - scroll.min(log.len());
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = log
        .lines()
        .range(start..end)
        .map(|line| {
            let style = match line.kind {
                LineKind::Connection => theme::accent(),
                LineKind::Message => ratatui::style::Style::new(),
                LineKind::Error => theme::bad(),
                LineKind::Unknown => theme::warn(),
            };
            // The `watch` line: its time is the frame's, since the socket connected.
            Line::from(Span::styled(line.text(&server.tracker), style))
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// ComfyUI's own log (`L`): the backlog and the stream since, filtered by the search (`/`).
fn draw_server_log(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    let log = &state.server().server_log;
    let search = state.ui.log_search.as_ref();
    let query = search.map(|s| s.query.as_str());
    let shown: Vec<&(String, String)> = log.matching(query).collect();
    let scroll = state.ui.log_scroll.min(shown.len().saturating_sub(1));
    let mut title = " Server log ".to_string();
    if let Some(search) = search {
        let cursor = if search.editing { "▏" } else { "" };
        title.push_str(&format!(
            "· /{}{cursor} · {} of {} lines ",
            crate::text::one_line(&search.query),
            shown.len(),
            log.lines.len()
        ));
    }
    if scroll > 0 {
        title.push_str(&format!("({scroll} newer below) "));
    }
    let block = text_panel(title, focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let note = match &log.stream {
        LogStream::NotAsked | LogStream::Asking if log.lines.is_empty() => {
            Some(("asking the server for its log…".to_string(), theme::dim()))
        }
        LogStream::Refused(why) => Some((
            format!("the server did not give its log: {why}"),
            theme::bad(),
        )),
        _ if shown.is_empty() && search.is_some() => {
            Some(("no line matches".to_string(), theme::dim()))
        }
        _ => None,
    };
    if let Some((text, style)) = note {
        frame.render_widget(
            Paragraph::new(Line::from(Span::styled(text, style)))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    let rows = usize::from(inner.height);
    let end = shown.len() - scroll.min(shown.len());
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = shown[start..end]
        .iter()
        .map(|(time, text)| {
            // The time of day is enough beside a line: the date is today's.
            let clock = time.get(11..19).unwrap_or(time.as_str());
            Line::from(vec![
                Span::styled(format!("{clock} "), theme::dim()),
                Span::raw(text.as_str()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// RAM and each device's VRAM (`m`): a gauge of what is used now (VRAM: and what torch holds
/// reserved), and a sparkline of the samples of the last minutes.
fn draw_memory(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    let stats = &state.server().stats;
    let block = text_panel(" Memory ".to_string(), focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(latest) = &stats.latest else {
        let text = stats
            .error
            .as_ref()
            .map_or("asking the server…".to_string(), |e| {
                format!("system_stats: {e}")
            });
        frame.render_widget(Paragraph::new(Span::styled(text, theme::dim())), inner);
        return;
    };
    const LABEL: usize = 14;
    const GAUGE: usize = 20;
    let spark_width = usize::from(inner.width)
        .saturating_sub(LABEL + GAUGE + 34)
        .min(60);
    let system = &latest.system;
    let mut lines = vec![memory_line(
        "RAM",
        system.ram_total.saturating_sub(system.ram_free),
        None,
        system.ram_total,
        stats.history.iter().map(|s| s.ram_used),
        spark_width,
    )];
    for (i, device) in latest.devices.iter().enumerate() {
        let name = crate::text::one_line(&device.name);
        let name = name.split(" : ").next().unwrap_or_default();
        let label: String = name.chars().take(LABEL - 1).collect();
        lines.push(memory_line(
            &label,
            device.vram_total.saturating_sub(device.vram_free),
            Some(device.torch_vram_total),
            device.vram_total,
            stats
                .history
                .iter()
                .filter_map(|s| s.vram_used.get(i).copied()),
            spark_width,
        ));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// `label  ███████░░░░  used/total GiB (torch N GiB)  ▁▂▃▅▇` for one kind of memory.
fn memory_line(
    label: &str,
    used: u64,
    reserved: Option<u64>,
    total: u64,
    history: impl Iterator<Item = u64>,
    spark_width: usize,
) -> Line<'static> {
    use crate::app::time::gib;
    const GAUGE: usize = 20;
    let fraction = if total == 0 {
        0.0
    } else {
        (used as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = (fraction * GAUGE as f64).round() as usize;
    let style = if fraction > 0.9 {
        theme::bad()
    } else if fraction > 0.75 {
        theme::warn()
    } else {
        theme::good()
    };
    let reserved = reserved
        .map(|r| format!(" · torch {} GiB", gib(r)))
        .unwrap_or_default();
    let history: Vec<u64> = history.collect();
    let recent = &history[history.len().saturating_sub(spark_width)..];
    Line::from(vec![
        Span::raw(format!("{label:<14}")),
        Span::styled("█".repeat(filled), style),
        Span::styled("░".repeat(GAUGE - filled), theme::dim()),
        Span::raw(format!(" {}/{} GiB{reserved}  ", gib(used), gib(total))),
        Span::styled(sparkline(recent, total), theme::accent()),
    ])
}

/// One character per sample, its height the share of `total` in use.
fn sparkline(samples: &[u64], total: u64) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    samples
        .iter()
        .map(|&used| {
            let fraction = if total == 0 {
                0.0
            } else {
                (used as f64 / total as f64).clamp(0.0, 1.0)
            };
            BARS[((fraction * 7.0).round() as usize).min(7)]
        })
        .collect()
}
