//! The running prompt: overall progress, then every node in execution order with its state, a
//! gauge where it reports steps, its speed and ETA.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::detail::{node_mark, phase_mark, summary, wrap};
use crate::app::keys::KeyAction;
use crate::app::{Link, State, time};
use crate::bridge::BridgeLink;
use crate::format::{short_id, speed};
use crate::text::one_line;
use crate::tracker::{NodeRecord, NodeState, PromptRecord};

use super::theme;
use super::widgets::{bar_spans, fit, list_offset, pad, styled, text_panel};

/// What comfytop can honestly say about a prompt another client queued, with no live events:
/// why, and what would change it.
pub fn other_client_note(bridge: &BridgeLink) -> String {
    const FOLLOWED: &str = "this one is followed through /queue, /history and broadcast text.";
    match bridge {
        BridgeLink::Watching { .. } => format!(
            "No live events came for it through the comfytop bridge (ComfyUI sends none for a \
             prompt queued without a client id, or it began before comfytop joined); {FOLLOWED}"
        ),
        BridgeLink::Unusable(why) => {
            format!("The comfytop bridge cannot be used: {why}. {FOLLOWED}")
        }
        BridgeLink::Absent => "ComfyUI sends live detail only to the client that queued a prompt; \
            this one is followed through /queue and /history. To see every prompt live: \
            comfytop install-bridge"
            .to_string(),
        BridgeLink::Unknown => {
            format!("Live per-step detail exists only for prompts comfytop queued; {FOLLOWED}")
        }
    }
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect, focused: bool) {
    let running = state.server().tracker.running();
    let title = match running {
        Some(p) => Line::from(vec![
            Span::raw(" Running "),
            Span::styled(format!("{} ", short_id(&p.id)), theme::accent()),
        ]),
        None => Line::from(" Progress "),
    };
    let block = text_panel(title, focused);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    match running {
        Some(prompt) => draw_running(state, prompt, frame, inner, focused),
        None => draw_idle(state, frame, inner),
    }
}

fn draw_idle(state: &State, frame: &mut Frame, area: Rect) {
    let server = state.server();
    if !matches!(server.link, Link::Connected { .. })
        && let Some(error) = &server.last_error
    {
        // Nothing can be shown; say why, in full (the status bar may have cut it).
        let mut lines = vec![Line::from(styled("Not connected.", theme::warn()))];
        for line in wrap(error, usize::from(area.width), "") {
            lines.push(Line::from(styled(line, theme::warn())));
        }
        if matches!(server.link, Link::Waiting { .. } | Link::Offline) {
            let retry = state.keys.name(KeyAction::RetryNow);
            lines.push(Line::from(styled(
                format!("{retry} retries now"),
                theme::dim(),
            )));
        }
        frame.render_widget(Paragraph::new(lines), area);
        return;
    }
    let mut lines = vec![Line::from(styled("Nothing running.", theme::dim()))];
    if let Some(last) = state.server().tracker.finished().next() {
        let (mark, word) = phase_mark(&last.phase);
        let mut spans = vec![
            styled("Last: ", theme::dim()),
            styled(format!("{mark} {word} "), theme::phase(&last.phase)),
            styled(short_id(&last.id), theme::accent()),
        ];
        if let Some(ago) = state.finished_ago(last) {
            spans.push(Span::raw(format!(" · {}", time::ago(ago))));
        }
        if let Some(took) = last.duration() {
            spans.push(Span::raw(format!(" · took {}", time::duration(took))));
        }
        lines.push(Line::from(spans));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn steps(node: &NodeRecord) -> String {
    format!("{}/{}", node.value, node.max)
}

fn draw_running(
    state: &State,
    prompt: &PromptRecord,
    frame: &mut Frame,
    area: Rect,
    focused: bool,
) {
    let width = usize::from(area.width);
    let mut lines: Vec<Line> = Vec::new();
    lines.push(Line::from(summary(state, prompt)));

    if prompt.live {
        let (complete, total) = prompt.node_counts();
        let cached = prompt.cached.len();
        let fraction = prompt.overall_fraction();
        let label = format!(
            " {complete}/{total} nodes{} {:>3.0}%",
            if cached > 0 {
                format!(" · {cached} cached")
            } else {
                String::new()
            },
            fraction * 100.0
        );
        let bar_width = width.saturating_sub(label.chars().count()).max(4);
        let mut spans = bar_spans(fraction, bar_width).to_vec();
        spans.push(Span::raw(label));
        lines.push(Line::from(spans));
    } else {
        for line in wrap(&other_client_note(&state.server().bridge), width, "") {
            lines.push(Line::from(styled(line, theme::warn())));
        }
    }

    let order = prompt.nodes_in_order();
    let available = usize::from(area.height).saturating_sub(lines.len());
    // Progress text the nodes sent (broadcast to every client), newest last: one line when there
    // is room for it and a node, a second only when every node fits too.
    let text_rows = match available {
        0..=2 => 0,
        _ if available >= order.len() + 2 => 2,
        _ => 1,
    }
    .min(prompt.text.len());
    let text_lines: Vec<Line> = prompt
        .text
        .iter()
        .skip(prompt.text.len() - text_rows)
        .map(|(node, text)| {
            let node = prompt
                .node_title(node)
                .map_or_else(|| one_line(node).into_owned(), |t| one_line(t).into_owned());
            Line::from(styled(
                fit(&format!("» {node}: {}", one_line(text.trim_end())), width),
                theme::dim(),
            ))
        })
        .collect();
    // The running node's speed and ETA take a line under it.
    let detail = prompt
        .current_node
        .as_ref()
        .and_then(|id| prompt.nodes.get(id))
        .filter(|n| prompt.live && n.state == NodeState::Running && n.has_progress);
    let room = (available - text_rows).saturating_sub(usize::from(detail.is_some()));
    let cursor = state
        .progress_scroll_for(&prompt.id)
        .min(order.len().saturating_sub(1));
    let offset = list_offset(Some(cursor), room);
    // Titles get up to half the width, but leave a gauge of twelve cells and its steps.
    let label_width = order
        .iter()
        .map(|id| node_label_text(prompt, id).chars().count())
        .max()
        .unwrap_or(0)
        .min(width / 2)
        .min(width.saturating_sub(3 + 12 + 10))
        .max(8);
    for (row, id) in order.iter().enumerate().skip(offset).take(room) {
        let mut line = node_line(prompt, id, label_width, width);
        if focused && row == cursor {
            line = line.patch_style(theme::selected(true));
        }
        lines.push(line);
        if prompt.current_node.as_deref() == Some(id.as_str())
            && let Some(line) =
                detail.and_then(|n| running_node_detail(state, n, label_width + 3, width))
        {
            lines.push(line);
        }
    }
    lines.extend(text_lines);
    frame.render_widget(Paragraph::new(lines), area);
}

fn node_label_text(prompt: &PromptRecord, id: &str) -> String {
    match prompt.node_title(id) {
        Some(title) => format!("{} #{}", one_line(title), one_line(id)),
        None => format!("#{}", one_line(id)),
    }
}

/// One node: mark, title and id, then a gauge with steps, speed and ETA, or its state.
fn node_line(prompt: &PromptRecord, id: &str, label_width: usize, width: usize) -> Line<'static> {
    let record = prompt.nodes.get(id);
    let node_state = prompt.node_state(id);
    let (mark, word) = node_mark(node_state);
    let style = theme::node(node_state);
    let mut spans = vec![
        styled(format!("{mark} "), style),
        styled(pad(&node_label_text(prompt, id), label_width), {
            if node_state == NodeState::Running {
                style
            } else {
                ratatui::style::Style::new()
            }
        }),
        Span::raw(" "),
    ];
    let room = width.saturating_sub(label_width + 3);
    if !prompt.live {
        // Only the graph is known: show what each node is.
        let class = prompt
            .graph
            .get(id)
            .map(|n| one_line(&n.class_type).into_owned())
            .unwrap_or_default();
        spans.push(styled(fit(&class, room), theme::dim()));
        return Line::from(spans);
    }
    let Some(node) = record.filter(|n| n.has_progress) else {
        spans.push(styled(word, style));
        return Line::from(spans);
    };
    let tail = format!(" {:>9}", steps(node));
    let bar_width = room.saturating_sub(tail.chars().count());
    if bar_width >= 4 {
        spans.extend(bar_spans(node.fraction().unwrap_or(0.0), bar_width));
        spans.push(Span::raw(tail));
    } else {
        spans.push(Span::raw(fit(tail.trim_start(), room)));
    }
    if node_state == NodeState::Error {
        spans.push(styled(
            format!(" {word}"),
            style.add_modifier(Modifier::BOLD),
        ));
    }
    Line::from(spans)
}

/// The line under the running node's gauge: its speed, the ETA counting down from the last
/// step, and how long it has run. None before its first step.
fn running_node_detail(
    state: &State,
    node: &NodeRecord,
    indent: usize,
    width: usize,
) -> Option<Line<'static>> {
    if node.state != NodeState::Running || !node.has_progress {
        return None;
    }
    let mut parts = Vec::new();
    if let Some(rate) = node.rate() {
        parts.push(speed(rate));
    }
    if let (Some(eta), Some(at)) = (node.eta(), node.last_progress_at()) {
        // Rounded up: "0:00" would claim it is done.
        let left = (eta - (state.now - at)).max(0.0).ceil();
        parts.push(format!("ETA {}", time::clock(left)));
    }
    if let Some(started) = node.started_at {
        parts.push(format!("node {}", time::clock(state.now - started)));
    }
    (!parts.is_empty()).then(|| {
        let text = parts.join(" · ");
        // Under the gauge when it fits, else as far right as it does.
        let indent = indent.min(width.saturating_sub(text.chars().count()));
        Line::from(styled(
            fit(&format!("{}{text}", " ".repeat(indent)), width),
            theme::dim(),
        ))
    })
}
