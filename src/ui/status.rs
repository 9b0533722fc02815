//! The status bar (server, connection, version, queue, device, our id) and the footer of keys.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{Link, NoticeKind, ServerFlag, ServerState, State, time};
use crate::bridge::BridgeLink;
use crate::control::Access;
use crate::text::one_line;

use super::theme;
use super::widgets::fit;

struct Segment {
    spans: Vec<Span<'static>>,
    /// Lower stays longer when the bar is too narrow.
    keep: u8,
    /// Cut to fit rather than dropped (a long error message).
    shrinks: bool,
}

impl Segment {
    fn new(span: Span<'static>, keep: u8) -> Self {
        Self {
            spans: vec![span],
            keep,
            shrinks: false,
        }
    }

    fn width(&self) -> usize {
        self.spans.iter().map(Span::width).sum()
    }
}

const SEPARATOR: &str = " │ ";

fn link_segment(state: &State) -> Segment {
    let (mark, text, style) = link_words(state.server(), state.now);
    Segment::new(Span::styled(format!("{mark} {text}"), style), 0)
}

/// A server's connection as a mark, words and a style: for the status bar and the fleet.
pub(super) fn link_words(server: &ServerState, now: f64) -> (&'static str, String, Style) {
    match &server.link {
        Link::Starting => ("◌", "starting".to_string(), theme::dim()),
        Link::Connecting { attempt } if *attempt > 1 => (
            "◌",
            format!("connecting (attempt {attempt})"),
            theme::warn(),
        ),
        Link::Connecting { .. } => ("◌", "connecting".to_string(), theme::warn()),
        Link::Connected { .. } => match server.quiet_for {
            Some(silent) => (
                "◌",
                format!("no data for {} s", silent.as_secs()),
                theme::warn(),
            ),
            None => ("●", "connected".to_string(), theme::good()),
        },
        Link::Waiting { attempt, retry_at } => (
            "◌",
            format!(
                "reconnecting in {} s (attempt {attempt})",
                time::countdown(retry_at - now)
            ),
            theme::warn(),
        ),
        Link::Offline => ("○", "offline".to_string(), theme::bad()),
    }
}

fn segments(state: &State) -> Vec<Segment> {
    let server = state.server();
    let mut out = vec![
        Segment::new(
            Span::styled(
                one_line(&server.label).into_owned(),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            1,
        ),
        link_segment(state),
    ];
    let connected = matches!(server.link, Link::Connected { .. });
    if !connected && let Some(error) = &server.last_error {
        out.push(Segment {
            shrinks: true,
            ..Segment::new(Span::styled(error.clone(), theme::bad()), 3)
        });
    }
    // Kept longest: the queue, then memory, the version, our id; the device's name goes first.
    let summary = server.stats.summary.as_ref();
    if let Some(summary) = summary
        && !summary.version.is_empty()
    {
        out.push(Segment::new(
            Span::raw(format!("ComfyUI {}", summary.version)),
            4,
        ));
    }
    let queue = match server.tracker.queue_remaining() {
        Some(n) => format!("queue {n}"),
        None => "queue ?".to_string(),
    };
    out.push(Segment::new(Span::raw(queue), 2));
    if let Some(summary) = summary {
        if !summary.device.is_empty() {
            out.push(Segment::new(Span::raw(summary.device.clone()), 6));
        }
        if let Some(memory) = &summary.memory {
            out.push(Segment::new(Span::raw(memory.clone()), 3));
        }
    } else if let Some(error) = &server.stats.error {
        out.push(Segment::new(
            Span::styled(format!("system_stats: {error}"), theme::dim()),
            7,
        ));
    }
    match &server.bridge {
        BridgeLink::Watching { .. } => {
            out.push(Segment::new(Span::styled("bridge", theme::good()), 5));
        }
        BridgeLink::Unusable(_) => {
            out.push(Segment::new(
                Span::styled("bridge unusable", theme::warn()),
                5,
            ));
        }
        BridgeLink::Absent | BridgeLink::Unknown => {}
    }
    if server.url.insecure() {
        // Never dropped: nothing vouches for the server while it shows.
        out.push(Segment::new(
            Span::styled("INSECURE: certificate not checked", theme::bad()),
            0,
        ));
    }
    if state.access() == Access::ReadOnly {
        // Never dropped: every mutating key refuses while it shows.
        out.push(Segment::new(Span::styled("read-only", theme::warn()), 0));
    }
    // Every comfytop's id begins alike: the part after the prefix tells this one apart.
    let ours = server.tracker.our_client_id();
    let ours = ours
        .strip_prefix(crate::comfy::connection::COMFYTOP_CLIENT_PREFIX)
        .unwrap_or(ours);
    let id: String = ours.chars().take(8).collect();
    out.push(Segment::new(
        Span::styled(format!("id {}", one_line(&id)), theme::dim()),
        5,
    ));
    out
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let mut segments = segments(state);
    let width = usize::from(area.width).saturating_sub(1);
    let total = |s: &[Segment]| -> usize {
        s.iter().map(Segment::width).sum::<usize>() + SEPARATOR.len() * s.len().saturating_sub(1)
    };
    while total(&segments) > width && segments.len() > 1 {
        let Some((drop, keep)) = segments
            .iter()
            .enumerate()
            .max_by_key(|(_, s)| s.keep)
            .map(|(i, s)| (i, s.keep))
        else {
            break;
        };
        // Before dropping a segment as important as the error, cut the error to fit.
        if let Some(error) = segments.iter().position(|s| s.shrinks && s.keep >= keep) {
            let others = total(&segments) - segments[error].width();
            let room = width.saturating_sub(others);
            if room >= 12 {
                let segment = &mut segments[error];
                let text: String = segment.spans.iter().map(|s| s.content.as_ref()).collect();
                let style = segment.spans.first().map(|s| s.style).unwrap_or_default();
                segment.spans = vec![Span::styled(fit(&text, room), style)];
                // `fit` guarantees the room; should a segment still not fit, drop it rather
                // than loop.
                if segment.width() <= room {
                    continue;
                }
                segments.remove(error);
                continue;
            }
        }
        segments.remove(drop);
    }
    let mut spans = vec![Span::raw(" ")];
    for (i, segment) in segments.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(SEPARATOR, theme::dim()));
        }
        spans.extend(segment.spans);
    }
    frame.render_widget(
        Paragraph::new(Line::from(spans)).style(Style::new().add_modifier(Modifier::REVERSED)),
        area,
    );
}

/// The server bar: every server by number and name, the one shown highlighted, its link as a
/// mark, and a flag on one that finished or failed something while another was shown.
pub fn draw_server_bar(state: &State, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::raw(" ")];
    for (index, server) in state.servers.iter().enumerate() {
        let (mark, _, link_style) = link_words(server, state.now);
        let shown = index == state.current && state.ui.fleet.is_none();
        let name_style = if shown {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new()
        };
        spans.push(Span::styled(format!("{}", index + 1), theme::accent()));
        spans.push(Span::styled(
            format!(" {} ", one_line(&server.name)),
            name_style,
        ));
        spans.push(Span::styled(mark, link_style));
        match server.flag {
            Some(ServerFlag::Failed) => spans.push(Span::styled("!", theme::bad())),
            Some(ServerFlag::Finished) => spans.push(Span::styled("✓", theme::good())),
            None => spans.push(Span::raw(" ")),
        }
        spans.push(Span::raw("  "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Key hints for what is on screen.
pub fn draw_footer(state: &State, frame: &mut Frame, area: Rect) {
    let mut hints = state.keys.hints(state.key_context());
    if !state.ui.server_bar {
        hints.retain(|(_, what)| *what != "fleet");
    }
    if state.ui.log_search.as_ref().is_some_and(|s| s.editing) {
        // Keys type into the search now; these are the ones that do not.
        hints = vec![
            ("Enter".to_string(), "keep the search"),
            ("Esc".to_string(), "clear it"),
        ];
    }
    let mut spans = vec![Span::raw(" ")];
    // The last action's outcome comes first; the hints follow where there is room.
    if let Some(notice) = &state.ui.notice {
        let style = match notice.kind {
            NoticeKind::Done => theme::good(),
            NoticeKind::Info => Style::new(),
            NoticeKind::Error => theme::bad(),
        };
        let lines = super::layout::notice_lines(&state.ui, area.width);
        if lines.len() > 1 {
            // Too long for one row: the layout gave it rows to be read whole, without hints.
            let rows = usize::from(area.height);
            let shown: Vec<Line> = lines
                .iter()
                .enumerate()
                .take(rows)
                .map(|(i, line)| {
                    let cut = i + 1 == rows && lines.len() > rows;
                    let text = if cut {
                        format!("{line}…")
                    } else {
                        line.clone()
                    };
                    Line::from(vec![Span::raw(" "), Span::styled(text, style)])
                })
                .collect();
            frame.render_widget(Paragraph::new(shown), area);
            return;
        }
        let room = usize::from(area.width).saturating_sub(2);
        spans.push(Span::styled(fit(&one_line(&notice.text), room), style));
        spans.push(Span::styled(SEPARATOR, theme::dim()));
    }
    for (key, what) in hints {
        spans.push(Span::styled(key, theme::accent()));
        spans.push(Span::styled(format!(" {what}  "), theme::dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
