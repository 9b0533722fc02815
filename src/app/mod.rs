//! The dashboard's model: [`State`], the [`Event`]s that change it, the [`Command`]s it asks for,
//! and [`update`], the only code that mutates it.
//!
//! Nothing here does I/O or knows about terminals beyond key and mouse codes: the runtime feeds
//! events in and runs the commands that come out, and `ui::draw` only reads the state. Tests drive
//! it with events alone.

mod actions;
mod command;
pub mod detail;
mod event;
pub mod event_log;
pub mod keys;
pub mod preview;
mod state;
pub mod time;
mod update;

pub use command::Command;
pub use event::{ClickTarget, Event, Reply, Submitted};
pub use event_log::{EventLog, LogLine};
pub use preview::{PreviewResults, PreviewSettings, Previews};
pub use state::{
    Confirm, Detail, FleetSort, FleetView, Link, LogSearch, LogStream, MEMORY_SAMPLES_KEPT,
    MemorySample, Notice, NoticeKind, Overlay, Panel, STATS_INTERVAL_BUSY, STATS_INTERVAL_IDLE,
    STATS_INTERVAL_WATCHED, Selection, ServerFlag, ServerLog, ServerState, State, Stats,
    StatsSummary, Ui,
};
pub use update::update;

#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod reconnect_tests;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
