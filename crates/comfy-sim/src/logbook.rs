//! The server log: the last 300 lines for `/internal/logs`, and a `logs` message per line to the
//! clients that subscribed through `PATCH /internal/logs/subscribe`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::hub::{Hub, Target};
use comfy_client::api::RawLogs;
use comfy_client::protocol::{LogEntry, Logs, ServerMessage, TerminalSize};

/// ComfyUI keeps this many lines.
const KEPT: usize = 300;

/// The terminal size the server reports (it runs without a terminal, as a service would).
const SIZE: TerminalSize = TerminalSize { cols: 80, rows: 24 };

#[derive(Default)]
struct State {
    entries: VecDeque<LogEntry>,
    subscribers: BTreeSet<String>,
    /// The size goes out once, then only when it changes (it never does here).
    size_sent: bool,
}

#[derive(Default)]
pub(crate) struct LogBook {
    state: Mutex<State>,
}

impl LogBook {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one line (a newline is added) and sends it to the subscribers.
    pub(crate) fn log(&self, hub: &Hub, line: &str) {
        let entry = LogEntry {
            t: iso_now(),
            m: format!("{line}\n"),
        };
        let mut state = self.state();
        state.entries.push_back(entry.clone());
        while state.entries.len() > KEPT {
            state.entries.pop_front();
        }
        if state.subscribers.is_empty() {
            return;
        }
        let size = if state.size_sent { None } else { Some(SIZE) };
        state.size_sent = true;
        let message = ServerMessage::Logs(Logs {
            entries: vec![entry],
            size,
        });
        // Subscribers whose socket is gone are dropped, as ComfyUI does on its next send.
        state.subscribers.retain(|sid| hub.is_registered(sid));
        for sid in &state.subscribers {
            hub.send_message(Target::Client(sid), &message);
        }
    }

    pub(crate) fn subscribe(&self, sid: &str, enabled: bool) {
        let mut state = self.state();
        if enabled {
            state.subscribers.insert(sid.to_string());
        } else {
            state.subscribers.remove(sid);
        }
    }

    /// `GET /internal/logs/raw`.
    pub(crate) fn raw(&self) -> RawLogs {
        RawLogs {
            entries: self.state().entries.iter().cloned().collect(),
            size: Some(SIZE),
        }
    }

    /// `GET /internal/logs`: every line prefixed with its time.
    pub(crate) fn text(&self) -> String {
        self.state()
            .entries
            .iter()
            .map(|e| format!("{} - {}", e.t, e.m))
            .collect()
    }
}

/// Milliseconds since the epoch, the timestamps of execution messages.
pub(crate) fn epoch_millis() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0)
}

/// The time as ComfyUI writes it in log entries (`2026-11-28T01:19:23.710426`), in UTC.
pub(crate) fn iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        assert_eq!(iso_now().len(), 26);
    }

    #[test]
    fn subscribers_get_one_message_per_line_with_the_size_once() {
        let hub = Hub::default();
        let mut rx = hub.register("k");
        let book = LogBook::default();
        book.log(&hub, "before subscribing");
        book.subscribe("k", true);
        book.log(&hub, "got prompt");
        book.log(&hub, "Prompt executed in 0.21 seconds");
        book.subscribe("k", false);
        book.log(&hub, "after");
        let mut sizes = Vec::new();
        while let Ok(super::super::hub::Outgoing::Text(t)) = rx.try_recv() {
            let ServerMessage::Logs(l) = ServerMessage::from_json(&t).unwrap() else {
                panic!("{t}")
            };
            assert_eq!(l.entries.len(), 1);
            sizes.push(l.size.is_some());
        }
        assert_eq!(sizes, [true, false]);
        assert_eq!(book.raw().entries.len(), 4);
        assert!(book.text().contains(" - got prompt\n"));
    }
}
