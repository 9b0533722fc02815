//! The fleet view: one row per server, so a glance tells which box is busy, which is idle and
//! which is in trouble.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Row, Table};

use crate::app::{ServerState, State, time};
use crate::text::one_line;
use crate::tracker::{NodeRecord, Outcome, Phase};

use super::theme;

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let Some(fleet) = state.ui.fleet else {
        return;
    };
    let header = Row::new(
        [
            "#", "server", "state", "ComfyUI", "device", "memory", "queue", "running", "last",
        ]
        .map(|h| Span::styled(h, theme::dim().add_modifier(Modifier::BOLD))),
    );
    let rows: Vec<Row> = state
        .fleet_order()
        .into_iter()
        .map(|index| {
            let row = Row::new(cells(state, index, &state.servers[index]));
            if index == fleet.selected {
                row.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                row
            }
        })
        .collect();
    // What matters most keeps its room: the state, what runs, how the last one ended.
    let widths = [
        Constraint::Length(2),
        Constraint::Min(8),
        Constraint::Min(18),
        Constraint::Length(7),
        Constraint::Min(8),
        Constraint::Length(18),
        Constraint::Length(5),
        Constraint::Min(16),
        Constraint::Min(18),
    ];
    let title = Line::from(vec![
        Span::styled(" Fleet ", Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(
            format!(
                "{} servers · sorted by {} ",
                state.servers.len(),
                fleet.sort.name()
            ),
            theme::dim(),
        ),
    ]);
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_type(ratatui::widgets::BorderType::Rounded)
                .border_style(theme::accent())
                .title(title),
        );
    frame.render_widget(table, area);
}

/// One server's row.
fn cells(state: &State, index: usize, server: &ServerState) -> Vec<Span<'static>> {
    let (mark, words, style) = super::status::link_words(server, state.now);
    let link = match (&server.link, &server.last_error) {
        (crate::app::Link::Offline | crate::app::Link::Waiting { .. }, Some(error)) => {
            format!("{mark} {words}: {}", one_line(error))
        }
        _ => format!("{mark} {words}"),
    };
    let summary = server.stats.summary.as_ref();
    let tracker = &server.tracker;
    // What a server out of reach last said of its queue may be long gone.
    let connected = matches!(server.link, crate::app::Link::Connected { .. });
    let running = tracker.running().filter(|_| connected);
    let pending = tracker.pending().count();
    let queue = match running {
        _ if !connected => "?".to_string(),
        Some(_) => format!("1+{pending}"),
        None => pending.to_string(),
    };
    vec![
        Span::styled((index + 1).to_string(), theme::accent()),
        Span::styled(
            one_line(&server.name).into_owned(),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::styled(link, style),
        Span::raw(summary.map(|s| s.version.clone()).unwrap_or_default()),
        Span::raw(summary.map(|s| s.device.clone()).unwrap_or_default()),
        Span::raw(summary.and_then(|s| s.memory.clone()).unwrap_or_default()),
        Span::raw(queue),
        match running {
            Some(prompt) => Span::raw(running_words(state, prompt)),
            None if connected => Span::styled("idle", theme::dim()),
            None => Span::raw(""),
        },
        last_outcome(state, server),
    ]
}

/// The running prompt's progress and ETA, where its live events say; else how long it runs.
fn running_words(state: &State, prompt: &crate::tracker::PromptRecord) -> String {
    let elapsed = state
        .running_for(prompt)
        .map(time::clock)
        .unwrap_or_default();
    if !prompt.live {
        return format!("{elapsed} not live");
    }
    let percent = (prompt.overall_fraction() * 100.0).round();
    let eta = prompt
        .current_node
        .as_ref()
        .and_then(|node| prompt.nodes.get(node))
        .and_then(NodeRecord::eta)
        .map(|secs| format!(" · ETA {}", time::clock(secs)))
        .unwrap_or_default();
    format!("{percent:.0}%{eta}")
}

/// How the newest finished prompt ended, and how long ago.
fn last_outcome(state: &State, server: &ServerState) -> Span<'static> {
    let Some(last) = server.tracker.finished().next() else {
        return Span::styled("nothing yet", theme::dim());
    };
    let ago = state
        .finished_ago(last)
        .map(|secs| format!(" {}", time::ago(secs)))
        .unwrap_or_default();
    match &last.phase {
        Phase::Finished(Outcome::Success) => Span::styled(format!("✓ success{ago}"), theme::good()),
        Phase::Finished(Outcome::Error(_)) => Span::styled(format!("✗ error{ago}"), theme::bad()),
        Phase::Finished(outcome) => {
            Span::styled(format!("■ {}{ago}", outcome.label()), theme::warn())
        }
        _ => Span::raw(""),
    }
}
