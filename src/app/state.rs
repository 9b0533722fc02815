use crate::comfy::api::SystemStats;
use crate::comfy::protocol::PromptId;
use crate::comfy::server_url::ServerUrl;
use crate::control::Access;
use crate::tracker::{PromptRecord, Tracker};

use super::event_log::EventLog;
use super::time;

/// `/system_stats` is asked for this often while a prompt runs or waits...
pub const STATS_INTERVAL_BUSY: f64 = 5.0;
/// ...and this often while the server is idle (VRAM moves less then: another client's models
/// loading or being freed).
pub const STATS_INTERVAL_IDLE: f64 = 15.0;
/// ...and this often while the memory panel shows its sparklines...
pub const STATS_INTERVAL_WATCHED: f64 = 2.0;
/// ...and this often for the servers not shown (what the fleet view and server bar show of
/// them changes slowly, and with 32 servers every request counts).
pub const STATS_INTERVAL_OTHERS: f64 = 30.0;
/// How many history rows the "ago" timer looks at (more are never on screen at once).
const AGED_ROWS: usize = 100;

/// The whole dashboard.
#[derive(Debug)]
pub struct State {
    /// The dashboard clock: seconds since it started (monotonic). Set by every update.
    pub now: f64,
    /// The wall clock (ms since the epoch) at dashboard clock 0, to read the server's timestamps.
    pub epoch_ms_at_zero: f64,
    /// Every server watched, in the order given; [`State::current`] is the one the panels show.
    pub servers: Vec<ServerState>,
    pub current: usize,
    pub ui: Ui,
    /// The preview pane and the outputs it shows.
    pub previews: super::preview::Previews,
    /// Something on screen changed since the last draw.
    pub dirty: bool,
    /// Counts the events that may change what History shows: all but a running prompt's
    /// steps and previews, and a frame drawn. While it stands still (through most of a run),
    /// drawing keeps History from the frame before (see [`State::history_version`]).
    pub history_changes: u64,
    /// When the screen next changes by itself (a clock ticking), on the dashboard clock.
    pub(super) redraw_at: Option<f64>,
    /// What each key does where.
    pub keys: super::keys::KeyTable,
    /// Whether the keys may change anything on the server (`--read-only`).
    pub access: Access,
    /// When a prompt's end rings or notifies (`--notify`).
    pub notify: crate::notify::NotifyFor,
}

/// What is known about one server.
#[derive(Debug)]
pub struct ServerState {
    pub url: ServerUrl,
    /// What the server bar and the fleet call it: its name in the config, else its address.
    pub name: String,
    /// The address as shown (credentials redacted).
    pub label: String,
    pub tracker: Tracker,
    pub link: Link,
    /// Why the last connection attempt or socket failed; cleared on connect.
    pub last_error: Option<String>,
    /// How long the open socket has brought nothing, while that lasts.
    pub quiet_for: Option<std::time::Duration>,
    pub stats: Stats,
    pub log: EventLog,
    /// The history that was there when the dashboard connected has been read: prompts it
    /// recovers from then on are news (and may notify), as are those seen ending live.
    pub backlog_read: bool,
    /// Prompts already notified, and those that ended before it was known who queued them.
    pub notified: crate::notify::Notified,
    pub notify_waiting: std::collections::VecDeque<(PromptId, &'static str)>,
    /// Something happened here while another server was shown: the server bar flags it.
    pub flag: Option<ServerFlag>,
    /// The config says to change nothing here, whatever `--read-only` says.
    pub read_only: bool,
    /// ComfyUI's own log, once asked for (`L`).
    pub server_log: ServerLog,
    /// The comfytop bridge there: with it, other clients' prompts are seen live too.
    pub bridge: crate::bridge::BridgeLink,
}

/// The server's log as the log panel shows it: the backlog (`/internal/logs/raw`) and the lines
/// of the `logs` stream since, at most [`SERVER_LOG_KEPT`], oldest first.
#[derive(Debug, Default)]
pub struct ServerLog {
    /// `(time, text)`, the text one line, made safe to print.
    pub lines: std::collections::VecDeque<(String, String)>,
    pub stream: LogStream,
}

/// Lines of the server's log kept (the oldest go first).
pub const SERVER_LOG_KEPT: usize = 5000;

/// Where the log stream stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LogStream {
    #[default]
    NotAsked,
    Asking,
    Streaming,
    /// The server said no (an older ComfyUI, or a proxy that blocks `/internal`): why.
    Refused(String),
}

impl ServerLog {
    /// Adds lines of the server's log; `backlog` lines go before the streamed ones, and those
    /// already shown are skipped, so asking again after a reconnect repeats nothing.
    pub fn add(&mut self, entries: &[crate::comfy::protocol::LogEntry], backlog: bool) {
        let lines = entries.iter().flat_map(|entry| {
            let time = crate::text::one_line(&entry.t).into_owned();
            // ComfyUI flushes whole writes: one entry may hold several lines.
            entry
                .m
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(move |line| (time.clone(), crate::text::one_line(line).into_owned()))
        });
        if backlog {
            // The backlog goes before what the stream brought meanwhile (it may have come
            // first), without the lines both have.
            let shown: std::collections::HashSet<&(String, String)> = self.lines.iter().collect();
            let mut merged: std::collections::VecDeque<(String, String)> =
                lines.filter(|line| !shown.contains(line)).collect();
            drop(shown);
            merged.append(&mut self.lines);
            self.lines = merged;
        } else {
            self.lines.extend(lines);
        }
        while self.lines.len() > SERVER_LOG_KEPT {
            self.lines.pop_front();
        }
    }

    /// The lines that contain `query` (any case), or all without one.
    pub fn matching<'a>(
        &'a self,
        query: Option<&'a str>,
    ) -> impl Iterator<Item = &'a (String, String)> + 'a {
        let query = query.filter(|q| !q.is_empty()).map(str::to_lowercase);
        self.lines.iter().filter(move |(_, text)| {
            query
                .as_ref()
                .is_none_or(|q| text.to_lowercase().contains(q.as_str()))
        })
    }
}

/// Why the server bar flags a server the user is not looking at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerFlag {
    /// A prompt finished.
    Finished,
    /// A prompt failed, or the connection did.
    Failed,
}

impl ServerState {
    /// Something is queued or running here.
    pub fn busy(&self) -> bool {
        self.tracker.running().is_some() || self.tracker.queue_remaining().unwrap_or(0) > 0
    }

    /// The state of a server not heard from yet; `client_id` is ours on it.
    pub fn new(url: ServerUrl, name: Option<String>, client_id: &str) -> Self {
        Self {
            label: url.redacted(),
            name: name.unwrap_or_else(|| crate::format::server_name(&url)),
            url,
            tracker: Tracker::new(client_id),
            link: Link::Starting,
            last_error: None,
            quiet_for: None,
            stats: Stats::default(),
            log: EventLog::default(),
            backlog_read: false,
            notified: crate::notify::Notified::default(),
            notify_waiting: std::collections::VecDeque::new(),
            flag: None,
            read_only: false,
            server_log: ServerLog::default(),
            bridge: crate::bridge::BridgeLink::default(),
        }
    }
}

/// The state of the WebSocket connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// Nothing heard from the connection task yet.
    Starting,
    Connecting {
        attempt: u32,
    },
    Connected {
        since: f64,
    },
    /// Waiting before attempt `attempt`, due at `retry_at`.
    Waiting {
        attempt: u32,
        retry_at: f64,
    },
    /// The socket is gone and no retry is scheduled.
    Offline,
}

/// `/system_stats` and its refresh schedule.
#[derive(Debug, Default)]
pub struct Stats {
    pub latest: Option<SystemStats>,
    /// Memory over the last minutes, oldest first, for the memory panel's sparklines.
    pub history: std::collections::VecDeque<MemorySample>,
    /// What the status bar shows of it; a reply that shows the same needs no redraw.
    pub summary: Option<StatsSummary>,
    pub error: Option<String>,
    pub in_flight: bool,
    /// When the next fetch is due; None while disconnected.
    pub due_at: Option<f64>,
    /// The terminal has focus (or never said otherwise): stats are only fetched while seen.
    pub paused: bool,
}

/// Memory in use at one `/system_stats` answer: RAM, then each device's VRAM used and what
/// torch holds reserved, in bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySample {
    pub at: f64,
    pub ram_used: u64,
    pub vram_used: Vec<u64>,
    pub torch_reserved: Vec<u64>,
}

/// Samples kept: a few minutes at the memory panel's rate.
pub const MEMORY_SAMPLES_KEPT: usize = 120;

impl MemorySample {
    pub fn of(at: f64, stats: &SystemStats) -> Self {
        let system = &stats.system;
        Self {
            at,
            ram_used: system.ram_total.saturating_sub(system.ram_free),
            vram_used: stats
                .devices
                .iter()
                .map(|d| d.vram_total.saturating_sub(d.vram_free))
                .collect(),
            torch_reserved: stats.devices.iter().map(|d| d.torch_vram_total).collect(),
        }
    }
}

/// The part of `/system_stats` the status bar shows, already formatted and sanitized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSummary {
    pub version: String,
    pub device: String,
    /// `VRAM used/total GiB` of the first device (`RAM` when it is the CPU).
    pub memory: Option<String>,
}

impl StatsSummary {
    pub fn of(stats: &SystemStats) -> Self {
        use crate::text::one_line;
        let version = one_line(&stats.system.comfyui_version).into_owned();
        let (device, memory) = match stats.devices.first() {
            Some(d) => {
                // Device names look like "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync".
                let name = one_line(&d.name);
                let name = name.split(" : ").next().unwrap_or_default().trim();
                let memory = (d.vram_total > 0).then(|| {
                    let used = d.vram_total.saturating_sub(d.vram_free);
                    let kind = if d.kind == "cpu" { "RAM" } else { "VRAM" };
                    format!("{kind} {}/{} GiB", time::gib(used), time::gib(d.vram_total))
                });
                (name.to_string(), memory)
            }
            None => (String::new(), None),
        };
        Self {
            version,
            device,
            memory,
        }
    }
}

/// The panels that take focus, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Panel {
    Queue,
    Progress,
    History,
    Log,
}

/// The selected row of a list, kept by prompt id so it stays on the same prompt while the list
/// changes around it. With no id it follows the top of the list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub id: Option<PromptId>,
    /// Where it was last seen, used when the prompt left the list.
    pub index: usize,
}

impl Selection {
    /// The selected row among `ids`, if the list is not empty.
    pub fn resolve<'a>(&self, mut ids: impl ExactSizeIterator<Item = &'a str>) -> Option<usize> {
        let len = ids.len();
        if len == 0 {
            return None;
        }
        if let Some(id) = &self.id
            && let Some(pos) = ids.position(|other| other == id)
        {
            return Some(pos);
        }
        Some(self.index.min(len - 1))
    }
}

/// The detail view of one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub prompt_id: PromptId,
    /// First line shown.
    pub scroll: usize,
}

/// What covers the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Help,
    /// A y/n question before a destructive action; modal until answered.
    Confirm(Confirm),
}

/// An action waiting for the user's yes.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub action: crate::control::ServerAction,
    /// The question, naming what the action will hit and whose it is.
    pub question: String,
    /// A requeue to another server: its index (`[`/`]` choose another while asked).
    pub to: Option<usize>,
}

/// The outcome of the last action, shown in the footer until the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub text: String,
    pub kind: NoticeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Done, or under way.
    Done,
    /// Nothing was done, and nothing went wrong (cancelled, nothing to act on).
    Info,
    /// Refused or failed.
    Error,
}

/// Where the user is and what they see.
#[derive(Debug, Clone, PartialEq)]
pub struct Ui {
    pub focus: Panel,
    pub queue: Selection,
    pub history: Selection,
    /// The progress panel's cursor (a node row), for the prompt it was set on. Without one (or
    /// for another prompt) the cursor follows the running node.
    pub progress_scroll: Option<(PromptId, usize)>,
    /// Lines up from the newest in the event log; 0 follows new lines.
    pub log_scroll: usize,
    pub detail: Option<Detail>,
    pub overlay: Option<Overlay>,
    /// The outcome of the last server action.
    pub notice: Option<Notice>,
    pub show_log: bool,
    /// The first line of the help overlay shown (bounded by `ui::layout` when used).
    pub help_scroll: usize,
    /// The terminal size, as last reported.
    pub width: u16,
    pub height: u16,
    /// Colours on screen (`--color`, `NO_COLOR`); without them the text keeps bold, reverse
    /// and dim, and previews keep their own.
    pub color: bool,
    /// The fleet view, while it is up (it is what several servers start with).
    pub fleet: Option<FleetView>,
    /// The log panel shows the server's log instead of comfytop's events...
    pub server_log_shown: bool,
    /// ...or the server's memory over time.
    pub memory_shown: bool,
    /// The server log's search (`/`), and whether it is being typed.
    pub log_search: Option<LogSearch>,
    /// Several servers are watched: the server bar has a row.
    pub server_bar: bool,
}

/// What the server log is searched for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSearch {
    pub query: String,
    /// Keys type into the query until Enter or Esc.
    pub editing: bool,
}

/// The fleet view's cursor and order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetView {
    /// The selected row, by server index (not row), so it stays on its server when re-sorted.
    pub selected: usize,
    pub sort: FleetSort,
}

/// How the fleet's rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetSort {
    /// As given on the command line (the server bar's numbers).
    #[default]
    Given,
    /// Longest queue first.
    Queue,
    /// Those in trouble first: offline, reconnecting, then connected.
    State,
}

impl FleetSort {
    pub fn next(self) -> Self {
        match self {
            Self::Given => Self::Queue,
            Self::Queue => Self::State,
            Self::State => Self::Given,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Given => "order given",
            Self::Queue => "queue",
            Self::State => "state",
        }
    }
}

impl Default for Ui {
    fn default() -> Self {
        Self {
            focus: Panel::Queue,
            queue: Selection::default(),
            history: Selection::default(),
            progress_scroll: None,
            log_scroll: 0,
            detail: None,
            overlay: None,
            notice: None,
            show_log: false,
            help_scroll: 0,
            width: 80,
            height: 24,
            color: true,
            fleet: None,
            server_bar: false,
            server_log_shown: false,
            memory_shown: false,
            log_search: None,
        }
    }
}

impl Ui {
    /// The panels Tab cycles through, as laid out now.
    pub fn panels(&self) -> Vec<Panel> {
        let mut panels = vec![Panel::Queue, Panel::Progress, Panel::History];
        if self.show_log {
            panels.push(Panel::Log);
        }
        panels
    }
}

/// A pending prompt's wait, and whether it counts only from when this dashboard first saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waited {
    pub seconds: f64,
    pub since_seen: bool,
}

impl State {
    /// A dashboard for `server` whose own client id is `client_id`, at dashboard clock 0.
    pub fn new(server: ServerUrl, client_id: &str, epoch_ms_at_zero: f64) -> Self {
        Self {
            now: 0.0,
            epoch_ms_at_zero,
            servers: vec![ServerState::new(server, None, client_id)],
            current: 0,
            ui: Ui::default(),
            previews: super::preview::Previews::default(),
            dirty: true,
            history_changes: 0,
            redraw_at: None,
            keys: super::keys::KeyTable::default(),
            access: Access::ReadWrite,
            notify: crate::notify::NotifyFor::default(),
        }
    }

    /// The server the panels show.
    pub fn server(&self) -> &ServerState {
        &self.servers[self.current]
    }

    pub fn server_mut(&mut self) -> &mut ServerState {
        &mut self.servers[self.current]
    }

    /// Watches `servers` (address, name in the config, our client id there) instead of the one
    /// given to [`State::new`], keeping the settings of the first.
    pub fn with_servers(mut self, servers: Vec<ServerState>) -> Self {
        if servers.is_empty() {
            return self;
        }
        let kept = self.server().tracker.finished_kept();
        self.servers = servers;
        for server in &mut self.servers {
            let id = server.tracker.our_client_id().to_string();
            server.tracker = Tracker::with_finished_kept(&id, kept);
        }
        self.current = 0;
        self.ui.server_bar = self.servers.len() > 1;
        if self.ui.server_bar {
            self.ui.fleet = Some(FleetView::default());
        }
        self
    }

    /// The servers' indexes in the fleet view's order.
    pub fn fleet_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.servers.len()).collect();
        match self.ui.fleet.map(|f| f.sort).unwrap_or_default() {
            FleetSort::Given => {}
            FleetSort::Queue => order.sort_by_key(|&i| {
                std::cmp::Reverse(self.servers[i].tracker.queue_remaining().unwrap_or(0))
            }),
            FleetSort::State => order.sort_by_key(|&i| match self.servers[i].link {
                Link::Offline => 0,
                Link::Waiting { .. } | Link::Connecting { .. } | Link::Starting => 1,
                Link::Connected { .. } => 2,
            }),
        }
        order
    }

    /// The keys with the user's overrides, and when to notify.
    pub fn with_keys_and_notify(
        mut self,
        keys: super::keys::KeyTable,
        notify: crate::notify::NotifyFor,
    ) -> Self {
        self.keys = keys;
        self.notify = notify;
        self
    }

    /// The state as the dashboard starts: `finished_kept` prompts kept in history, what the
    /// keys may do, the preview pane, and whether to use colours.
    pub fn with_settings(
        mut self,
        finished_kept: usize,
        access: Access,
        previews: super::preview::Previews,
        color: bool,
    ) -> Self {
        self.ui.color = color;
        for server in &mut self.servers {
            let client_id = server.tracker.our_client_id().to_string();
            server.tracker = Tracker::with_finished_kept(&client_id, finished_kept);
        }
        self.access = access;
        self.previews = previews;
        self
    }

    /// Where the keys go: the question or help that is up, else the details, else the panels.
    pub fn key_context(&self) -> super::keys::Context {
        use super::keys::Context;
        match (&self.ui.overlay, &self.ui.detail) {
            (Some(Overlay::Confirm(_)), _) => Context::Confirm,
            (Some(Overlay::Help), _) => Context::Help,
            (None, _) if self.ui.fleet.is_some() => Context::Fleet,
            (None, Some(_)) => Context::Details,
            (None, None) => Context::Main,
        }
    }

    /// How many rows the queue panel has, counted up to `limit` (a screen's height is all the
    /// layout needs to know, and the queue may hold thousands).
    pub fn queue_len_up_to(&self, limit: usize) -> usize {
        let tracker = &self.server().tracker;
        let running = usize::from(tracker.running().is_some());
        running
            + tracker
                .pending()
                .take(limit.saturating_sub(running))
                .count()
    }

    /// The queue panel's rows: the running prompt, then the pending ones in run order.
    pub fn queue_rows(&self) -> Vec<&PromptRecord> {
        let tracker = &self.server().tracker;
        tracker
            .running()
            .into_iter()
            .chain(tracker.pending())
            .collect()
    }

    /// The history panel's rows, newest first: the server's history, with the prompts deleted
    /// before they ran (kept apart by the tracker) placed where they left the queue.
    pub fn history_rows(&self) -> Vec<&PromptRecord> {
        self.history_merged().collect()
    }

    /// History's rows in order, newest first: finished prompts and those deleted from the
    /// queue, merged by when they ended. Lazy: only the rows taken are looked up.
    fn history_merged(&self) -> impl Iterator<Item = &PromptRecord> {
        let tracker = &self.server().tracker;
        let mut finished = tracker.finished().peekable();
        let mut removed = tracker.removed().peekable();
        std::iter::from_fn(move || {
            let take_removed = match (finished.peek(), removed.peek()) {
                (Some(f), Some(r)) => r.finished_at > f.finished_at,
                (None, Some(_)) => true,
                (_, None) => false,
            };
            if take_removed {
                removed.next()
            } else {
                finished.next()
            }
        })
    }

    pub fn selected_queue_row(&self) -> Option<usize> {
        let rows = self.queue_rows();
        self.ui.queue.resolve(rows.iter().map(|p| p.id.as_str()))
    }

    pub fn selected_history_row(&self) -> Option<usize> {
        let tracker = &self.server().tracker;
        if tracker.removed_count() == 0 {
            // The ids alone: no prompt is looked up.
            return self.ui.history.resolve(tracker.finished_ids());
        }
        let rows = self.history_rows();
        self.ui.history.resolve(rows.iter().map(|p| p.id.as_str()))
    }

    /// How many rows History has.
    pub fn history_len(&self) -> usize {
        let tracker = &self.server().tracker;
        tracker.finished_count() + tracker.removed_count()
    }

    /// History's row `index`, looked up alone (see [`State::history_page`]).
    pub fn history_row(&self, index: usize) -> Option<&PromptRecord> {
        self.history_page(index, 1).into_iter().next()
    }

    /// History's rows from `offset`, at most `len` of them. Only those are looked up, and
    /// when a prompt deleted from the queue is listed, the rows before them too (to merge the
    /// two lists in the order they ended).
    pub fn history_page(&self, offset: usize, len: usize) -> Vec<&PromptRecord> {
        let tracker = &self.server().tracker;
        if tracker.removed_count() == 0 {
            return tracker.finished_from(offset).take(len).collect();
        }
        self.history_merged().skip(offset).take(len).collect()
    }

    /// The progress panel's cursor row for `prompt_id`: where the user moved it, else the
    /// running node.
    pub fn progress_scroll_for(&self, prompt_id: &str) -> usize {
        match &self.ui.progress_scroll {
            Some((id, row)) if id == prompt_id => *row,
            _ => self
                .server()
                .tracker
                .prompt(prompt_id)
                .and_then(|p| {
                    let current = p.current_node.as_ref()?;
                    p.nodes_in_order().iter().position(|n| n == current)
                })
                .unwrap_or(0),
        }
    }

    /// The wall clock now, in ms since the epoch.
    pub fn wall_ms(&self) -> f64 {
        self.wall_ms_at(self.now)
    }

    /// The wall clock at dashboard time `t`, in ms since the epoch.
    fn wall_ms_at(&self, t: f64) -> f64 {
        self.epoch_ms_at_zero + t * 1000.0
    }

    /// Seconds since a prompt finished, when that is known: by this dashboard's own clock when
    /// it saw the prompt end (no clock skew), else by the server's timestamp (history fetched
    /// after a start or reconnect). Counted up to [`State::ages_now`], not to this instant.
    pub fn finished_ago(&self, prompt: &PromptRecord) -> Option<f64> {
        let now = self.ages_now();
        let seen_ending = prompt
            .finished_at
            .filter(|&t| prompt.live || t > prompt.first_seen);
        if let Some(t) = seen_ending {
            return Some((now - t).max(0.0));
        }
        prompt
            .server_finished_ms
            .map(|ms| ((self.wall_ms_at(now) - ms) / 1000.0).max(0.0))
    }

    /// What History is drawn from changes only when this does: the events that may change it,
    /// and the minute its ages are read at.
    pub fn history_version(&self) -> (u64, i64) {
        (self.history_changes, (self.ages_now() / 60.0) as i64)
    }

    /// The time "ago" labels are read at: this dashboard's clock at its last whole minute. All
    /// of them then change at the same instant, so a screen of prompts that ended at different
    /// times is drawn once a minute, not once for each; a label is at most a minute behind.
    fn ages_now(&self) -> f64 {
        (self.now / 60.0).floor() * 60.0
    }

    /// When the label of something that ended `ago` seconds before [`State::ages_now`] reads
    /// differently: at one of the following whole minutes.
    fn next_age_change(&self, ago: f64) -> f64 {
        self.ages_now() + (time::ago_changes_in(ago) / 60.0).ceil() * 60.0
    }

    /// How long a prompt has waited: from the server's own queue time where it sent one, else
    /// only since this dashboard first saw it (then `since_seen` is true and the wait may be
    /// longer).
    pub fn waiting_for(&self, prompt: &PromptRecord) -> Waited {
        match prompt.server_queued_ms {
            Some(ms) => Waited {
                seconds: ((self.wall_ms() - ms) / 1000.0).max(0.0),
                since_seen: false,
            },
            None => Waited {
                seconds: (self.now - prompt.first_seen).max(0.0),
                since_seen: true,
            },
        }
    }

    /// Seconds a prompt has been running (None if it is not running).
    pub fn running_for(&self, prompt: &PromptRecord) -> Option<f64> {
        prompt.started_at.map(|t| (self.now - t).max(0.0))
    }

    /// When the next timer should fire: the screen changes by itself, or a fetch is due.
    pub fn wakeup_at(&self) -> Option<f64> {
        let stats = (0..self.servers.len()).filter_map(|index| self.stats_due(index));
        let trackers = self.servers.iter().filter_map(|s| s.tracker.timer_due_at());
        self.redraw_at
            .into_iter()
            .chain(stats)
            .chain(trackers)
            .min_by(f64::total_cmp)
    }

    /// When `/system_stats` should next be fetched, if it should.
    pub(super) fn stats_due(&self, index: usize) -> Option<f64> {
        let server = self.servers.get(index)?;
        let stats = &server.stats;
        if stats.in_flight || stats.paused || !matches!(server.link, Link::Connected { .. }) {
            return None;
        }
        stats.due_at
    }

    /// How long until server `index`'s next `/system_stats`: often for the one shown while it
    /// works, less when it idles, least for the others (the fleet's rows).
    pub fn stats_interval(&self, index: usize) -> f64 {
        match self.servers.get(index) {
            Some(_) if index == self.current && self.ui.show_log && self.ui.memory_shown => {
                STATS_INTERVAL_WATCHED
            }
            Some(server) if index == self.current && server.busy() => STATS_INTERVAL_BUSY,
            Some(_) if index == self.current => STATS_INTERVAL_IDLE,
            _ => STATS_INTERVAL_OTHERS,
        }
    }

    /// Whether the keys may change anything on the server shown.
    pub fn access(&self) -> Access {
        if self.server().read_only {
            Access::ReadOnly
        } else {
            self.access
        }
    }

    /// Something is queued or running on the server shown.
    pub fn busy(&self) -> bool {
        self.server().busy()
    }

    /// When what is on screen next changes by itself: a running clock, a countdown, an age.
    pub(super) fn next_redraw(&self) -> Option<f64> {
        let now = self.now;
        let mut next: Option<f64> = None;
        let mut consider = |t: f64| next = Some(next.map_or(t, |n: f64| n.min(t)));
        let tracker = &self.server().tracker;
        if let Some(running) = tracker.running()
            && let Some(elapsed) = self.running_for(running)
        {
            consider(now + time::clock_changes_in(elapsed));
        }
        // Waiting times of pending prompts count up with the first one (same second boundary
        // is not guaranteed, so each is looked at); only those a screen can show matter.
        for pending in tracker.pending().take(usize::from(self.ui.height)) {
            consider(now + time::clock_changes_in(now - pending.first_seen));
        }
        if let Link::Waiting { retry_at, .. } = self.server().link
            && let Some(dt) = time::countdown_changes_in(retry_at - now)
        {
            consider(now + dt);
        }
        // No age changes before the next whole minute: once a row does then, the rest need
        // not be looked at (this runs after every event).
        let soonest_age_change = self.ages_now() + 60.0;
        for prompt in tracker.finished().take(AGED_ROWS) {
            if let Some(ago) = self.finished_ago(prompt) {
                let at = self.next_age_change(ago);
                consider(at);
                if at <= soonest_age_change {
                    break;
                }
            }
        }
        // The fleet's rows: each server's running clock, countdown and last outcome's age.
        if self.ui.fleet.is_some() {
            for server in &self.servers {
                if let Some(elapsed) = server.tracker.running().and_then(|p| self.running_for(p)) {
                    consider(now + time::clock_changes_in(elapsed));
                }
                if let Link::Waiting { retry_at, .. } = server.link
                    && let Some(dt) = time::countdown_changes_in(retry_at - now)
                {
                    consider(now + dt);
                }
                if let Some(ago) = server
                    .tracker
                    .finished()
                    .next()
                    .and_then(|p| self.finished_ago(p))
                {
                    consider(self.next_age_change(ago));
                }
            }
        }
        next
    }
}
