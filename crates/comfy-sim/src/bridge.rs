//! The comfytop bridge, emulated. A real ComfyUI gets it as a custom node
//! (`assets/bridge/comfytop_bridge.py`); with `--bridge` the simulator behaves the same way:
//!
//! - `GET /comfytop/bridge` says it is there, with its version and wire protocol;
//! - `POST /comfytop/bridge/watch {"clientId", "enabled"}` makes one connected socket a watcher,
//!   for as long as that socket lives (a reconnect registers again);
//! - each execution event and preview frame sent to one client is copied, marked with that
//!   client's id, to every watcher but that client ([`comfy_client::protocol::Relayed`],
//!   [`comfy_client::binary::RELAYED`]); broadcasts are not copied, everyone has them;
//! - a watcher whose copies pile up gets no previews past [`PREVIEW_SKIP_BACKLOG`] and is
//!   dropped (its socket closed) at [`DROP_BACKLOG`], or when a copy has been on its way for
//!   [`STALL`], so it never holds up the server.
//!
//! The routing itself lives in [`super::hub`], next to ComfyUI's own.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Same as the bridge's `VERSION` and `PROTOCOL` (a test reads them from the Python file).
pub(crate) const VERSION: &str = "1.0.0";
pub(crate) const PROTOCOL: u32 = comfy_client::api::BRIDGE_PROTOCOL;
/// A watcher with this many copies unsent gets no more previews until it catches up.
pub(crate) const PREVIEW_SKIP_BACKLOG: usize = 8;
/// A watcher with this many copies unsent is dropped.
pub(crate) const DROP_BACKLOG: usize = 1000;
/// A watcher whose copy has been on its way this long is dropped: it stopped reading, and
/// ComfyUI's own messages to its socket would wait too.
pub(crate) const STALL: Duration = Duration::from_secs(10);
pub(crate) const MAX_WATCHERS: usize = 64;
/// The close code and reason a dropped watcher's socket gets ("try again later").
pub(crate) const TOO_FAR_BEHIND_CODE: u16 = 1013;
pub(crate) const TOO_FAR_BEHIND: &str = "comfytop bridge: watcher too far behind";

/// The JSON events the bridge copies.
const RELAYED_EVENTS: [&str; 9] = [
    "execution_start",
    "execution_cached",
    "executing",
    "progress",
    "progress_state",
    "executed",
    "execution_success",
    "execution_error",
    "execution_interrupted",
];

/// The binary frame types the bridge copies: previews (1, 4) and progress text (3).
const RELAYED_BINARY: [u32; 3] = [1, 3, 4];

pub(crate) fn relays_message(kind: &str) -> bool {
    RELAYED_EVENTS.contains(&kind)
}

pub(crate) fn relays_binary(event_type: u32) -> bool {
    RELAYED_BINARY.contains(&event_type)
}

/// What a watcher with `backlog` copies unsent gets next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    Send,
    /// A preview, skipped: the next one will do.
    Skip,
    Drop,
}

/// One watcher's copies on their way: counted when queued, and timed while one is written.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    queued: AtomicUsize,
    /// When the copy being written began, in ms since [`clock`]'s start, plus one; 0: none.
    writing_since: AtomicU64,
}

/// Milliseconds since the first call, plus one (so 0 can mean "none").
fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let elapsed = START.get_or_init(Instant::now).elapsed();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX - 1) + 1
}

impl Backlog {
    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn writing(&self) {
        self.writing_since.store(clock(), Ordering::Relaxed);
    }

    pub(crate) fn written(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.writing_since.store(0, Ordering::Relaxed);
    }

    /// How long the copy being written at `now` (see [`clock`]) has been on its way.
    fn stalled_for(&self, now: u64) -> Duration {
        match self.writing_since.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(now.saturating_sub(since)),
        }
    }
}

/// What a watcher gets next: the bridge's limits on how far behind it may be.
pub(crate) fn admit(backlog: &Backlog, preview: bool) -> Watch {
    admit_at(backlog, preview, clock())
}

fn admit_at(backlog: &Backlog, preview: bool, now: u64) -> Watch {
    let queued = backlog.queued.load(Ordering::Relaxed);
    if queued >= DROP_BACKLOG || backlog.stalled_for(now) >= STALL {
        Watch::Drop
    } else if preview && queued >= PREVIEW_SKIP_BACKLOG {
        Watch::Skip
    } else {
        Watch::Send
    }
}

/// Why `POST /comfytop/bridge/watch` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchRefused {
    NoBridge,
    NotConnected,
    TooMany,
}

/// The body of `GET /comfytop/bridge`.
pub(crate) fn info(watchers: usize) -> Value {
    json!({
        "name": "comfytop-bridge",
        "version": VERSION,
        "protocol": PROTOCOL,
        "enabled": true,
        "watchers": watchers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE: &str = include_str!("../../../assets/bridge/comfytop_bridge.py");

    /// The right-hand side of `NAME = value` in the bridge's source.
    fn python_constant(name: &str) -> String {
        BRIDGE
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("{name} is not set in comfytop_bridge.py"))
            .trim()
            .to_string()
    }

    #[test]
    fn the_emulation_has_the_bridges_constants() {
        assert_eq!(python_constant("VERSION"), format!("\"{VERSION}\""));
        assert_eq!(python_constant("PROTOCOL"), PROTOCOL.to_string());
        assert_eq!(
            python_constant("RELAYED_TYPE"),
            format!("\"{}\"", comfy_client::protocol::RELAYED)
        );
        assert_eq!(
            python_constant("RELAYED_BINARY"),
            format!("0x{:08X}", comfy_client::binary::RELAYED)
        );
        assert_eq!(
            python_constant("PREVIEW_SKIP_BACKLOG"),
            PREVIEW_SKIP_BACKLOG.to_string()
        );
        assert_eq!(python_constant("DROP_BACKLOG"), DROP_BACKLOG.to_string());
        assert_eq!(
            python_constant("STALL_SECONDS"),
            STALL.as_secs().to_string()
        );
        assert_eq!(python_constant("MAX_WATCHERS"), MAX_WATCHERS.to_string());
        for event in RELAYED_EVENTS {
            assert!(
                BRIDGE.contains(&format!("\"{event}\"")),
                "the bridge does not relay {event}"
            );
        }
        assert!(BRIDGE.contains(&TOO_FAR_BEHIND_CODE.to_string()));
        assert!(BRIDGE.contains(TOO_FAR_BEHIND));
    }

    fn queued(n: usize) -> Backlog {
        let backlog = Backlog::default();
        backlog.queued.store(n, Ordering::Relaxed);
        backlog
    }

    #[test]
    fn previews_wait_before_events_and_a_watcher_too_far_behind_is_dropped() {
        assert_eq!(admit(&queued(0), true), Watch::Send);
        assert_eq!(admit(&queued(PREVIEW_SKIP_BACKLOG - 1), true), Watch::Send);
        assert_eq!(admit(&queued(PREVIEW_SKIP_BACKLOG), true), Watch::Skip);
        assert_eq!(admit(&queued(PREVIEW_SKIP_BACKLOG), false), Watch::Send);
        assert_eq!(admit(&queued(DROP_BACKLOG - 1), false), Watch::Send);
        assert_eq!(admit(&queued(DROP_BACKLOG), false), Watch::Drop);
        assert_eq!(admit(&queued(DROP_BACKLOG), true), Watch::Drop);
    }

    #[test]
    fn a_watcher_whose_copy_stays_on_its_way_is_dropped_and_the_clock_resets() {
        let backlog = queued(1);
        backlog.writing();
        let began = backlog.writing_since.load(Ordering::Relaxed);
        let stall = STALL.as_millis() as u64;
        assert_eq!(admit_at(&backlog, false, began + stall - 1), Watch::Send);
        assert_eq!(admit_at(&backlog, false, began + stall), Watch::Drop);
        backlog.written();
        assert_eq!(backlog.stalled_for(began + 2 * stall), Duration::ZERO);
        assert_eq!(admit_at(&backlog, false, began + 2 * stall), Watch::Send);
    }
}
