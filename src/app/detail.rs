//! The detail view's content as plain lines (a view model): built from the state alone, so the
//! update can bound scrolling by the same lines the screen shows.

use unicode_width::UnicodeWidthStr as _;

use crate::comfy::connection::COMFYTOP_CLIENT_PREFIX;
use crate::format::percent;
use crate::text::{one_line, sanitize};
use crate::tracker::{MEASURABLE_NODE_SECONDS, NodeState, Outcome, Phase, PromptRecord};

use super::State;
use super::time;

/// How a line is meant to look; the UI picks the colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Title,
    Heading,
    Text,
    Dim,
    Good,
    Bad,
    Warn,
    Code,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DocLine {
    pub tone: Tone,
    pub text: String,
}

impl DocLine {
    fn new(tone: Tone, text: impl Into<String>) -> Self {
        Self {
            tone,
            text: text.into(),
        }
    }
}

/// Who queued a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This comfytop (its client id): the server sends it every live event.
    ThisComfytop,
    /// Another comfytop (its client id begins `comfytop-`): `comfytop submit`, another
    /// dashboard.
    OtherComfytop,
    /// Another client id (a browser tab, another tool).
    OtherClient,
    /// No client id (a script): its progress is broadcast to every client.
    NoClientId,
}

impl Origin {
    pub fn of(prompt: &PromptRecord) -> Self {
        match (&prompt.client_id, prompt.ours) {
            (_, true) => Self::ThisComfytop,
            (Some(id), false) if id.starts_with(COMFYTOP_CLIENT_PREFIX) => Self::OtherComfytop,
            (Some(_), false) => Self::OtherClient,
            (None, false) => Self::NoClientId,
        }
    }

    /// For sentences: "queued by ...".
    pub fn words(self) -> &'static str {
        match self {
            Self::ThisComfytop => "this comfytop",
            Self::OtherComfytop => "another comfytop",
            Self::OtherClient => "another client",
            Self::NoClientId => "a client without id",
        }
    }

    /// For a narrow column.
    pub fn short(self) -> &'static str {
        match self {
            Self::ThisComfytop => "you",
            Self::OtherComfytop => "comfytop",
            Self::OtherClient => "other",
            Self::NoClientId => "no id",
        }
    }
}

/// Who queued `prompt`, for a list column: "you", "comfytop", or another client's id itself
/// (whole up to a sensible width: ids often differ only at their end).
/// A prompt seen live through the comfytop bridge is marked `⇄`.
pub fn origin_column(prompt: &PromptRecord) -> String {
    let origin = match (Origin::of(prompt), &prompt.client_id) {
        // Whole: the column cuts it in the middle to its width, so ids that differ at either
        // end still read apart.
        (Origin::OtherClient, Some(id)) => crate::text::one_line(id).into_owned(),
        (origin, _) => origin.short().to_string(),
    };
    if prompt.relayed {
        format!("{RELAYED_MARK} {origin}")
    } else {
        origin
    }
}

/// Marks a prompt another client queued that is seen live through the comfytop bridge.
pub const RELAYED_MARK: &str = "⇄";

/// A mark and a word for a node's state.
pub fn node_mark(state: NodeState) -> (&'static str, &'static str) {
    match state {
        NodeState::Pending => ("·", "pending"),
        NodeState::Running => ("▶", "running"),
        NodeState::Cached => ("◆", "cached"),
        NodeState::Done => ("✓", "done"),
        NodeState::Error => ("✗", "error"),
        NodeState::Interrupted => ("■", "stopped"),
        NodeState::Unknown => ("?", "unknown"),
    }
}

/// A mark and a word for where a prompt is.
pub fn phase_mark(phase: &Phase) -> (&'static str, &'static str) {
    match phase {
        Phase::Queued => ("·", "pending"),
        Phase::Running => ("▶", "running"),
        Phase::Finished(Outcome::Success) => ("✓", "success"),
        Phase::Finished(Outcome::Error(_)) => ("✗", "error"),
        Phase::Finished(Outcome::Interrupted { .. }) => ("■", "interrupted"),
        Phase::Finished(Outcome::Removed) => ("−", "removed"),
        Phase::Finished(Outcome::Unknown) => ("?", "unknown"),
    }
}

/// `Title (id)` of a node, sanitized.
pub fn node_label(prompt: &PromptRecord, node: &str) -> String {
    match prompt.node_title(node) {
        Some(title) => format!("{} ({})", one_line(title), one_line(node)),
        None => format!("node {}", one_line(node)),
    }
}

/// The node a prompt failed in: its label, and its class when the title is not the class.
fn failed_node(prompt: &PromptRecord, node: Option<&str>, class: Option<&str>) -> String {
    let mut label = node.map_or_else(|| "an unknown node".to_string(), |n| node_label(prompt, n));
    if let Some(class) = class
        && node.and_then(|n| prompt.node_title(n)) != Some(class)
    {
        label.push_str(&format!(" [{}]", one_line(class)));
    }
    label
}

/// Splits `text` into lines of at most `width` characters, each prefixed by `indent`, breaking
/// at spaces where it can and inside words longer than a line.
pub fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let room = width.saturating_sub(indent.chars().count()).max(10);
    let mut out = Vec::new();
    for line in text.split('\n') {
        // A tab has no width of its own in a cell.
        let chars: Vec<char> = line.replace('\t', "    ").chars().collect();
        if chars.is_empty() {
            out.push(indent.to_string());
        }
        // Walk the line with a start index: draining the front would make long text quadratic.
        let mut start = 0;
        while start < chars.len() {
            let rest = &chars[start..];
            if rest.len() <= room {
                out.push(format!("{indent}{}", rest.iter().collect::<String>()));
                break;
            }
            // The last space that keeps the line within room, unless that leaves it mostly empty.
            let cut = match rest[..=room].iter().rposition(|c| *c == ' ') {
                Some(space) if space > room / 3 => space,
                _ => room,
            };
            out.push(format!(
                "{indent}{}",
                rest[..cut].iter().collect::<String>().trim_end()
            ));
            start += if rest.get(cut) == Some(&' ') {
                cut + 1
            } else {
                cut
            };
        }
    }
    out
}

/// The summary line of a prompt: number, who, phase and times.
pub fn summary(state: &State, prompt: &PromptRecord) -> String {
    let mut parts = Vec::new();
    if let Some(n) = prompt.number {
        parts.push(format!("#{n}"));
    }
    parts.push(format!("queued by {}", Origin::of(prompt).words()));
    if prompt.relayed {
        parts.push("via bridge".to_string());
    }
    let (_, phase) = phase_mark(&prompt.phase);
    match &prompt.phase {
        Phase::Queued => {
            let waited = state.waiting_for(prompt);
            parts.push(format!(
                "pending {}{}",
                time::clock(waited.seconds),
                if waited.since_seen { " since seen" } else { "" }
            ));
        }
        Phase::Running => parts.push(format!(
            "running {}",
            time::clock(state.running_for(prompt).unwrap_or(0.0))
        )),
        Phase::Finished(_) => {
            parts.push(phase.to_string());
            if let Some(ago) = state.finished_ago(prompt) {
                parts.push(format!("finished {}", time::ago(ago)));
            }
            if let Some(d) = prompt.duration() {
                parts.push(format!("took {}", time::duration(d)));
            }
        }
    }
    parts.join(" · ")
}

/// The detail view of `prompt` in its text area `text` (from `ui::layout`): every line wrapped
/// to the area's width, and the last first-line that still fills the area (the scroll limit).
/// The update and the drawing both call this, so `G` reaches exactly the end that is drawn.
pub fn page(
    state: &State,
    prompt: &PromptRecord,
    text: ratatui::layout::Rect,
) -> (Vec<DocLine>, usize) {
    let doc = lines(state, prompt, usize::from(text.width).max(MIN_WIDTH));
    let max = doc.len().saturating_sub(usize::from(text.height).max(1));
    (doc, max)
}

/// Narrower than this, lines are laid out at this width anyway (and cut by the frame).
const MIN_WIDTH: usize = 20;

/// Every line of the detail view of `prompt`, wrapped to `width` columns.
pub fn lines(state: &State, prompt: &PromptRecord, width: usize) -> Vec<DocLine> {
    let mut out = Vec::new();
    let push_wrapped = |out: &mut Vec<DocLine>, tone, text: &str, indent: &str| {
        for line in wrap(text, width, indent) {
            out.push(DocLine::new(tone, line));
        }
    };

    out.push(DocLine::new(
        Tone::Title,
        format!("Prompt {}", one_line(&prompt.id)),
    ));
    push_wrapped(&mut out, Tone::Text, &summary(state, prompt), "");
    if let Some(client) = &prompt.client_id {
        out.push(DocLine::new(
            Tone::Dim,
            format!("client_id {}", one_line(client)),
        ));
    }

    // Outcome first: it is what one opens a failed prompt for.
    match prompt.outcome() {
        Some(Outcome::Error(e)) => {
            out.push(DocLine::new(Tone::Text, ""));
            let node = failed_node(prompt, e.node_id.as_deref(), e.node_type.as_deref());
            let message = format!(
                "Error in {node}: {}: {}",
                one_line(&e.exception_type),
                sanitize(e.exception_message.trim_end())
            );
            push_wrapped(&mut out, Tone::Bad, &message, "");
            if !e.current_inputs.is_empty() {
                out.push(DocLine::new(Tone::Text, ""));
                out.push(DocLine::new(Tone::Heading, "Inputs"));
                for (name, value) in &e.current_inputs {
                    let value = match value {
                        serde_json::Value::Array(items) => items
                            .iter()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(", "),
                        other => other.to_string(),
                    };
                    let value: String = one_line(&value).chars().take(500).collect();
                    push_wrapped(
                        &mut out,
                        Tone::Text,
                        &format!("{}: {value}", one_line(name)),
                        "  ",
                    );
                }
            }
            if !e.traceback.is_empty() {
                out.push(DocLine::new(Tone::Text, ""));
                out.push(DocLine::new(Tone::Heading, "Traceback"));
                for entry in &e.traceback {
                    let entry = sanitize(entry.trim_end_matches('\n'));
                    push_wrapped(&mut out, Tone::Code, &entry, "  ");
                }
            }
        }
        Some(Outcome::Interrupted { node_id, node_type }) => {
            out.push(DocLine::new(Tone::Text, ""));
            let node = failed_node(prompt, node_id.as_deref(), node_type.as_deref());
            out.push(DocLine::new(Tone::Warn, format!("Interrupted in {node}")));
        }
        Some(Outcome::Removed) => {
            out.push(DocLine::new(Tone::Text, ""));
            out.push(DocLine::new(
                Tone::Dim,
                "Deleted from the queue before it ran.",
            ));
        }
        Some(Outcome::Unknown) => {
            out.push(DocLine::new(Tone::Text, ""));
            out.push(DocLine::new(
                Tone::Dim,
                "Left the queue; the server kept no history of how it ended.",
            ));
        }
        Some(Outcome::Success) | None => {}
    }

    out.extend(time_lines(state, prompt, width));

    let images: Vec<_> = prompt.images().collect();
    if !images.is_empty() {
        out.push(DocLine::new(Tone::Text, ""));
        out.push(DocLine::new(
            Tone::Heading,
            format!("Outputs ({})", images.len()),
        ));
        for (node, image) in images {
            let folder = if image.subfolder.is_empty() {
                one_line(&image.folder).into_owned()
            } else {
                format!("{}/{}", one_line(&image.folder), one_line(&image.subfolder))
            };
            push_wrapped(
                &mut out,
                Tone::Text,
                &format!(
                    "{}  {}  [{folder}]",
                    one_line(&image.filename),
                    node_label(prompt, node)
                ),
                "  ",
            );
        }
    }

    let order = prompt.nodes_in_order();
    if !order.is_empty() {
        out.push(DocLine::new(Tone::Text, ""));
        let (complete, total) = prompt.node_counts();
        out.push(DocLine::new(
            Tone::Heading,
            format!("Nodes ({complete}/{total} complete)"),
        ));
        for id in &order {
            let class = prompt
                .graph
                .get(id)
                .map(|n| one_line(&n.class_type).into_owned())
                .unwrap_or_default();
            let record = prompt.nodes.get(id);
            let state = prompt.node_state(id);
            let (mark, word) = node_mark(state);
            let steps = record
                .filter(|n| n.has_progress)
                .map(|n| format!("  {}/{}", n.value, n.max))
                .unwrap_or_default();
            let tone = match state {
                NodeState::Error => Tone::Bad,
                NodeState::Interrupted => Tone::Warn,
                NodeState::Pending | NodeState::Unknown => Tone::Dim,
                _ => Tone::Text,
            };
            push_wrapped(
                &mut out,
                tone,
                &format!(
                    "{mark} {:<32} {:<20} {word}{steps}",
                    node_label(prompt, id),
                    class
                ),
                "  ",
            );
        }
    }

    if !prompt.text.is_empty() {
        out.push(DocLine::new(Tone::Text, ""));
        out.push(DocLine::new(Tone::Heading, "Progress text"));
        for (node, text) in &prompt.text {
            push_wrapped(
                &mut out,
                Tone::Dim,
                &format!("{}: {}", one_line(node), one_line(text.trim_end())),
                "  ",
            );
        }
    }
    out
}

/// "Where the time went" with why there are no per-node times instead.
fn no_times(why: &str, width: usize) -> Vec<DocLine> {
    let mut out = vec![
        DocLine::new(Tone::Text, ""),
        DocLine::new(Tone::Heading, "Where the time went"),
    ];
    out.extend(
        wrap(why, width, "  ")
            .into_iter()
            .map(|line| DocLine::new(Tone::Dim, line)),
    );
    out
}

/// Cells of the seconds and percentage columns of a time line.
const SECONDS_CELLS: usize = 7;
const SHARE_CELLS: usize = 4;
/// Narrowest bar drawn; a narrower area cuts the line instead.
const MIN_BAR: usize = 8;
/// Widest node label: past it the bar gets the room.
const MAX_LABEL: usize = 40;

/// "Where the time went": one line per node that ran, slowest first, with a bar for its share
/// of the total, its seconds and percentage; the cached nodes in one line. Only for a prompt
/// whose every `executing` transition was seen live; for one followed live with some of them
/// missed, or whose nodes' events came too close together to time, why there are no times;
/// for any other, nothing.
fn time_lines(state: &State, prompt: &PromptRecord, width: usize) -> Vec<DocLine> {
    if prompt.node_timings_missed() {
        let why = "Not every node's start and end reached comfytop live (it joined during the \
                   run, the connection dropped, or the server did not send them), so there are \
                   no per-node times.";
        return no_times(why, width);
    }
    let mut out = Vec::new();
    let timings = match prompt.phase {
        // The node running counts until now.
        Phase::Running => prompt.node_timings_at(state.now),
        _ => prompt.node_timings(),
    };
    if timings.is_empty() {
        return out;
    }
    let (cached, ran): (Vec<_>, Vec<_>) = timings.iter().partition(|t| t.cached);
    let total: f64 = ran.iter().map(|t| t.seconds).sum();
    if prompt.is_finished() && !ran.is_empty() && total < MEASURABLE_NODE_SECONDS {
        let why = format!(
            "The nodes' events arrived within {:.0} ms of each other (a quick run, or events \
             held up on the way and delivered together): too close to time each node.",
            MEASURABLE_NODE_SECONDS * 1000.0
        );
        return no_times(&why, width);
    }
    let so_far = if prompt.phase == Phase::Running {
        " so far"
    } else {
        ""
    };
    let heading = if ran.is_empty() {
        "Where the time went".to_string()
    } else {
        format!(
            "Where the time went{so_far} · {} in {} node{}",
            time::duration(total),
            ran.len(),
            if ran.len() == 1 { "" } else { "s" }
        )
    };
    out.push(DocLine::new(Tone::Text, ""));
    out.push(DocLine::new(Tone::Heading, heading));

    let labels: Vec<String> = ran.iter().map(|t| node_label(prompt, &t.node_id)).collect();
    // Indent, label, bar, seconds and share with a space between each.
    let numbers = 2 + 1 + 1 + SECONDS_CELLS + 1 + SHARE_CELLS;
    let widest = labels.iter().map(|l| l.width()).max().unwrap_or(0);
    // Labels whole where they fit beside the narrowest bar: a node is named before it is drawn.
    let label_cells = widest
        .min(MAX_LABEL)
        .min(width.saturating_sub(numbers + MIN_BAR))
        .max(MIN_BAR);
    let bar_cells = width.saturating_sub(numbers + label_cells).max(MIN_BAR);
    for (timing, label) in ran.iter().zip(&labels) {
        let (bar, _) = crate::ui::widgets::bar(timing.share_of_total, bar_cells);
        out.push(DocLine::new(
            Tone::Text,
            format!(
                "  {} {} {:>SECONDS_CELLS$} {:>SHARE_CELLS$}",
                crate::ui::widgets::pad(label, label_cells),
                crate::ui::widgets::pad(&bar, bar_cells),
                time::duration(timing.seconds),
                percent(timing.share_of_total),
            ),
        ));
    }
    if !cached.is_empty() {
        let names: Vec<String> = cached
            .iter()
            .map(|t| node_label(prompt, &t.node_id))
            .collect();
        let line = if ran.is_empty() {
            format!(
                "◆ every node was cached, none ran ({}): {}",
                cached.len(),
                names.join(", ")
            )
        } else {
            format!("◆ {} cached, no time: {}", cached.len(), names.join(", "))
        };
        for line in wrap(&line, width, "  ") {
            out.push(DocLine::new(Tone::Dim, line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_breaks_at_spaces_and_inside_long_words() {
        assert_eq!(
            wrap("the quick brown fox jumps", 12, ""),
            vec!["the quick", "brown fox", "jumps"]
        );
        assert_eq!(
            wrap("abcdefghijklmnopqrstuvwxyz", 10, "  "),
            vec!["  abcdefghij", "  klmnopqrst", "  uvwxyz"]
        );
        assert_eq!(wrap("a\n\nb", 20, "> "), vec!["> a", "> ", "> b"]);
    }
}
