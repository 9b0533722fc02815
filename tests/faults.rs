//! comfytop under fire: the dashboard (in a pseudo-terminal) and `watch --json` watch a server
//! through a proxy that cuts their connections at random points in the middle of frames, slips
//! in garbage and truncated frames and bytes that are not WebSocket at all, stalls the sockets
//! and holds HTTP replies back past the client's timeout; then the server restarts in the
//! middle of a run. Prompts come from two clients (one of them the dashboard's id) and end every
//! way a prompt can: success, fully cached, failing at once, failing after progress,
//! interrupted, deleted, lost in the restart.
//!
//! Both must end up showing every prompt's true final state, as the server's history tells it,
//! with none missing, and the dashboard must never panic or stall: the longest `update` and
//! the longest draw it saw are read from its log and reported.
//!
//! The fault points are random; the seed is printed, and `COMFYTOP_FAULT_SEED=<seed>` repeats
//! a run.

mod support;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use comfy_sim::{SimConfig, SimHandle, SimServer};
use comfytop::comfy::api::PromptRequest;
use comfytop::comfy::http::ComfyClient;
use support::fault_proxy::{FaultProxy, Rng, SocketFault, binary_frame, frame, text_frame};
use support::pty::{Answers, PtyApp};
use support::{PATIENCE, client, comfytop};

/// Connections cut at random points while a prompt runs.
const CUTS: usize = 20;
/// The dashboard's client id: prompts queued under it are the dashboard's own.
const DASHBOARD_ID: &str = "comfytop-under-fire";
/// Another client: a browser tab.
const BROWSER_ID: &str = "a-browser-tab";
/// Tall enough that History shows every prompt of the run at once (70–95 of them in the runs
/// so far; a slow machine makes more).
const ROWS: u16 = 200;

/// How a prompt is meant to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Succeed,
    /// The same graph as an earlier prompt: every node cached.
    Cached,
    FailAtOnce,
    FailAfterProgress,
    /// Interrupted once it has run a little.
    Interrupt,
    /// Deleted while it waits.
    Delete,
    /// Running or waiting when the server restarts: the new server knows nothing of it.
    LostInRestart,
}

const ROTATION: [Plan; 9] = [
    Plan::Succeed,
    Plan::FailAtOnce,
    Plan::Succeed,
    Plan::Cached,
    Plan::FailAfterProgress,
    Plan::Interrupt,
    Plan::Succeed,
    Plan::Delete,
    Plan::Cached,
];

#[derive(Debug, Clone)]
struct Queued {
    id: String,
    /// The client id it was queued under.
    owner: &'static str,
    plan: Plan,
    /// The final state the server's history gives (`None`: not in it), read once the prompt
    /// has left the queue.
    truth: Option<String>,
}

/// `success`, `error` or `interrupted`, as the history entry tells (ComfyUI records an
/// interrupted prompt as an `error` with an `execution_interrupted` message).
fn outcome_in_history(entry: &comfytop::comfy::api::HistoryEntry) -> String {
    let Some(status) = &entry.status else {
        return "no status".into();
    };
    if status
        .messages
        .iter()
        .any(|(kind, _)| kind == "execution_interrupted")
    {
        return "interrupted".into();
    }
    status.status_str.clone()
}

fn graph(plan: Plan, seed: u64) -> Value {
    let steps = |steps: u64, seed: u64| {
        json!({"class_type": "LabSlowSteps", "inputs": {
            "steps": steps, "delay": 0.6, "seed": seed, "width": 64, "height": 64,
            "preview_size": 32, "send_text": true}})
    };
    match plan {
        Plan::Succeed | Plan::Cached | Plan::Delete => json!({
            "1": steps(16, seed),
            "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "faults", "images": ["1", 0]}},
        }),
        Plan::FailAtOnce => json!({
            "1": {"class_type": "EmptyImage", "inputs": {
                "width": 8, "height": 8, "batch_size": 1, "color": seed % 0xFF_FFFF}},
            "2": {"class_type": "LabRaiseError", "inputs": {
                "message": "fails at once", "image": ["1", 0]}},
        }),
        Plan::FailAfterProgress => json!({
            "1": steps(6, seed),
            "2": {"class_type": "LabRaiseError", "inputs": {
                "message": "fails after progress", "image": ["1", 0]}},
        }),
        Plan::Interrupt | Plan::LostInRestart => json!({
            "1": {"class_type": "LabLongRun", "inputs": {"steps": 10000, "delay": 0.05, "seed": seed}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }),
    }
}

async fn submit(client: &ComfyClient, prompt: Value, owner: &str) -> String {
    let request = PromptRequest {
        prompt,
        client_id: Some(owner.into()),
        ..Default::default()
    };
    client.submit(&request).await.unwrap().prompt_id
}

/// What the proxy did, for the report.
#[derive(Debug, Default)]
struct FaultCount {
    cuts: usize,
    garbage_frames: usize,
    broken_streams: usize,
    socket_stalls: usize,
    http_holds: usize,
}

/// A frame no server should send; the connection survives it.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    match rng.below(0, 8) {
        0 => text_frame(r#"{"type": "progress", "data": {"value": "#),
        1 => text_frame("not JSON at all"),
        2 => text_frame(r#"{"type": "custom.fault.event", "data": {"n": 1}}"#),
        3 => text_frame(r#"{"type": "executing", "data": {"node": 12, "prompt_id": [1]}}"#),
        4 => binary_frame(&[0, 0]),
        // A PNG preview whose image stops after three bytes.
        5 => binary_frame(&[0, 0, 0, 1, 0, 0, 0, 2, 0x89, b'P', b'N']),
        6 => binary_frame(&[0, 0, 0, 77, 1, 2, 3]),
        // A text frame whose node id length says more than there is.
        _ => binary_frame(&[0, 0, 0, 3, 0, 0, 0, 200, b'a']),
    }
}

/// Bytes that break the WebSocket stream itself: the client must drop it and reconnect.
fn stream_breaker(rng: &mut Rng) -> Vec<u8> {
    match rng.below(0, 3) {
        // A reserved opcode.
        0 => vec![0x83, 0x00],
        // A text frame that is not UTF-8.
        1 => frame(0x1, &[0xff, 0xfe, 0xfd]),
        // A frame claiming 2^63 bytes.
        _ => [0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff].to_vec(),
    }
}

/// Runs prompts (keeping two waiting) and breaks things while one runs, until [`CUTS`] cuts
/// are done and the queue has drained. HTTP is held past the client's timeout once, in the
/// middle.
async fn runs_under_fire(
    proxy: Arc<FaultProxy>,
    server: ComfyClient,
    mut rng: Rng,
) -> (Vec<Queued>, FaultCount) {
    let mut queued: Vec<Queued> = Vec::new();
    let mut graphs: Vec<Value> = Vec::new();
    let mut count = FaultCount::default();
    let mut next_plan = 0;
    let mut seed = rng.below(1, 1 << 40);
    let mut next_fault = Instant::now() + Duration::from_millis(500);
    let mut running_since: Option<(String, Instant)> = None;
    let mut long_hold: Option<tokio::task::JoinHandle<()>> = None;
    let mut short_holds = Vec::new();
    loop {
        let queue = server.queue().await.unwrap();
        let running = queue.queue_running.first().map(|i| i.prompt_id.clone());
        let done_faulting = count.cuts >= CUTS;
        if done_faulting && running.is_none() && queue.queue_pending.is_empty() {
            break;
        }
        // Two waiting behind the running one, so that cuts land during runs.
        if !done_faulting && queue.queue_pending.len() < 2 {
            let plan = ROTATION[next_plan % ROTATION.len()];
            next_plan += 1;
            let prompt = match (plan, graphs.last()) {
                (Plan::Cached, Some(earlier)) => earlier.clone(),
                _ => {
                    seed += 1;
                    graph(plan, seed)
                }
            };
            if plan == Plan::Succeed {
                graphs.push(prompt.clone());
            }
            let owner = if next_plan % 2 == 0 {
                DASHBOARD_ID
            } else {
                BROWSER_ID
            };
            let id = submit(&server, prompt, owner).await;
            queued.push(Queued {
                id,
                owner,
                plan,
                truth: None,
            });
        }
        // Deleted once it is next, so both watchers have had a chance to see it wait.
        for waiting in queue.queue_pending.iter().take(1) {
            if queued
                .iter()
                .any(|q| q.id == waiting.prompt_id && q.plan == Plan::Delete)
            {
                server
                    .delete_queued(std::slice::from_ref(&waiting.prompt_id))
                    .await
                    .unwrap();
            }
        }
        match (&running, &running_since) {
            (Some(id), Some((since_id, since))) if id == since_id => {
                let interrupt = queued
                    .iter()
                    .any(|q| &q.id == id && q.plan == Plan::Interrupt);
                if interrupt && since.elapsed() > Duration::from_millis(400) {
                    server.interrupt(Some(id)).await.unwrap();
                }
            }
            (Some(id), _) => running_since = Some((id.clone(), Instant::now())),
            (None, _) => running_since = None,
        }
        if running.is_some() && !done_faulting && Instant::now() >= next_fault {
            next_fault = Instant::now() + Duration::from_millis(rng.below(100, 600));
            match rng.below(0, 10) {
                0..=3 => {
                    if proxy.to_sockets(&SocketFault::CutMidFrame) > 0 {
                        count.cuts += 1;
                    }
                }
                4 => {
                    proxy.cut_everything();
                    count.cuts += 1;
                }
                5 | 6 => {
                    count.garbage_frames +=
                        proxy.to_sockets(&SocketFault::Inject(garbage(&mut rng)));
                }
                7 => {
                    count.broken_streams +=
                        proxy.to_sockets(&SocketFault::Inject(stream_breaker(&mut rng)));
                }
                8 => {
                    let stall = Duration::from_millis(rng.below(500, 3000));
                    count.socket_stalls += proxy.to_sockets(&SocketFault::Stall(stall));
                }
                _ => {
                    count.http_holds += 1;
                    let hold = Duration::from_millis(rng.below(500, 4000));
                    short_holds.push(hold_http(&proxy, hold));
                }
            }
        }
        // Once, halfway: HTTP held past the client's 15 s request timeout.
        if long_hold.is_none() && count.cuts >= CUTS / 2 {
            count.http_holds += 1;
            long_hold = Some(hold_http(&proxy, Duration::from_secs(17)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for hold in short_holds.into_iter().chain(long_hold) {
        hold.await.unwrap();
    }
    for prompt in &mut queued {
        prompt.truth = server
            .history_item(&prompt.id)
            .await
            .unwrap()
            .map(|entry| outcome_in_history(&entry));
    }
    (queued, count)
}

/// Holds HTTP requests for `how_long`.
fn hold_http(proxy: &Arc<FaultProxy>, how_long: Duration) -> tokio::task::JoinHandle<()> {
    proxy.hold_http();
    let proxy = proxy.clone();
    tokio::spawn(async move {
        tokio::time::sleep(how_long).await;
        proxy.release_http();
    })
}

async fn start_server(listen: Option<std::net::SocketAddr>) -> SimHandle {
    let mut config = SimConfig {
        step: Duration::from_millis(5),
        ..SimConfig::default()
    };
    if let Some(listen) = listen {
        config.listen = listen;
    }
    SimServer::start(config).await.unwrap()
}

/// Queues two long prompts on `server`: the restart will lose one running, one waiting.
async fn queue_to_lose(server: &ComfyClient) -> Vec<Queued> {
    let mut queued = Vec::new();
    for owner in [BROWSER_ID, DASHBOARD_ID] {
        let id = submit(server, graph(Plan::LostInRestart, 7), owner).await;
        queued.push(Queued {
            id,
            owner,
            plan: Plan::LostInRestart,
            truth: None,
        });
    }
    queued
}

/// Stops the server as a restart would, starts a new one on the same port, and runs two
/// prompts there. Returns the new server and those two.
async fn restart(server: SimHandle) -> (SimHandle, Vec<Queued>) {
    let addr = server.addr();
    server.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = start_server(Some(addr)).await;
    let new = client(&server.url());
    let mut queued = Vec::new();
    for (owner, seed) in [(DASHBOARD_ID, 11), (BROWSER_ID, 12)] {
        let id = submit(&new, graph(Plan::Succeed, seed), owner).await;
        let entry = support::until_finished(&new, &id).await;
        queued.push(Queued {
            id,
            owner,
            plan: Plan::Succeed,
            truth: Some(outcome_in_history(&entry)),
        });
    }
    (server, queued)
}

/// `watch --json` in the background, its lines collected as they come.
struct Watch {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Watch {
    fn start(url: &str) -> Self {
        let mut child = comfytop(&["watch", "--json", url]).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines: Arc<Mutex<Vec<Value>>> = Arc::default();
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch --json printed a line that is not JSON ({e}): {line}")
                });
                collected.lock().unwrap().push(value);
            }
        });
        Self { child, lines }
    }

    fn count(&self, event: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l["event"] == event).count()
    }

    /// The outcome of each prompt's last `finished` line.
    fn outcomes(&self) -> BTreeMap<String, String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l["event"] == "prompt" && l["phase"] == "finished")
            .filter_map(|l| {
                Some((
                    l["prompt_id"].as_str()?.to_string(),
                    l["outcome"].as_str()?.to_string(),
                ))
            })
            .collect()
    }

    /// The last `n` lines printed, apart from progress.
    fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap();
        let shown: Vec<String> = lines
            .iter()
            .filter(|l| {
                !matches!(
                    l["event"].as_str(),
                    Some("progress" | "progress_text" | "progress_state")
                )
            })
            .map(Value::to_string)
            .collect();
        shown[shown.len().saturating_sub(n)..].join("\n")
    }

    fn wait_for(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !check(self) {
            assert!(
                start.elapsed() < PATIENCE,
                "watch: timed out waiting for {what}; it printed last:\n{}",
                self.tail(60)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcomes `watch` may print for a prompt, and the marks its History row may start with.
fn accepted(prompt: &Queued) -> (&'static [&'static str], &'static [char]) {
    match (prompt.plan, prompt.truth.as_deref()) {
        (Plan::LostInRestart, _) => (&["unknown"], &['?']),
        (_, Some("success")) => (&["success"], &['✓']),
        (_, Some("error")) => (&["error"], &['✗']),
        (_, Some("interrupted")) => (&["interrupted"], &['■']),
        // Deleted before it ran: the server has no record, so either is true.
        (Plan::Delete, None) => (&["removed", "unknown"], &['−', '?']),
        (plan, truth) => panic!("{plan:?} ended as {truth:?}"),
    }
}

/// The History row that shows `id`'s first eight characters, if one does.
fn history_row<'s>(screen: &'s str, id: &str) -> Option<&'s str> {
    let short = &id[..8];
    screen
        .lines()
        .flat_map(|line| line.split('│'))
        .map(str::trim)
        .filter(|cell| cell.contains(short))
        .find(|cell| cell.starts_with(['✓', '✗', '■', '−', '?']))
}

fn history_mark(screen: &str, id: &str) -> Option<char> {
    history_row(screen, id).and_then(|row| row.chars().next())
}

/// Whether a History row names who queued the prompt, as its "by" column does.
/// The row's "by" column names the prompt's owner: "you", or the client id, whole or cut in the
/// middle to the column's width (which the other columns' widths in view decide).
fn shows_owner(row: &str, prompt: &Queued) -> bool {
    let shown = row.split_whitespace().last().unwrap_or_default();
    match prompt.owner {
        DASHBOARD_ID => shown == "you",
        owner => {
            shown == owner
                || shown.split_once('…').is_some_and(|(head, tail)| {
                    !head.is_empty() && owner.starts_with(head) && owner.ends_with(tail)
                })
        }
    }
}

/// The prompts of `must_show` that the dashboard's History does not show with their true end
/// and owner, each with the row it shows instead.
fn wrong_in_history(screen: &str, must_show: &[&Queued]) -> Vec<String> {
    must_show
        .iter()
        .filter_map(|p| {
            let row = history_row(screen, &p.id);
            let right = row.is_some_and(|row| {
                row.chars()
                    .next()
                    .is_some_and(|mark| accepted(p).1.contains(&mark))
                    && shows_owner(row, p)
            });
            (!right).then(|| format!("{p:?} shown as {row:?}"))
        })
        .collect()
}

/// Waits until the dashboard's History shows every prompt of `must_show` rightly; else fails
/// with what is wrong, the screen and the end of the dashboard's log.
fn wait_for_history(dashboard: &PtyApp, must_show: &[&Queued], log_path: &Path, when: &str) {
    let waited = Instant::now();
    while !wrong_in_history(&dashboard.screen(), must_show).is_empty()
        && waited.elapsed() < PATIENCE
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let screen = dashboard.screen();
    let wrong = wrong_in_history(&screen, must_show);
    if !wrong.is_empty() {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(150)..].join("\n");
        panic!(
            "History {when}:\n{}\n{screen}\nthe end of the dashboard's log:\n{tail}",
            wrong.join("\n")
        );
    }
}

/// `longest_update_ms=1.23` from the dashboard's closing log line.
fn logged_ms(log: &str, field: &str) -> f64 {
    let line = log
        .lines()
        .find(|l| l.contains("dashboard closed"))
        .unwrap_or_else(|| panic!("no closing line in the dashboard's log:\n{log}"));
    let value = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in: {line}"));
    value.parse().unwrap()
}

fn seed() -> u64 {
    std::env::var("COMFYTOP_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

#[test]
fn every_prompt_ends_true_through_cuts_garbage_stalls_and_a_restart() {
    let seed = seed();
    eprintln!("fault seed {seed}: COMFYTOP_FAULT_SEED={seed} repeats this run");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(start_server(None));
    let proxy = Arc::new(runtime.block_on(FaultProxy::start(&server.url(), seed)));
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("dashboard.log");
    let mut dashboard = PtyApp::spawn_with(
        &[
            &proxy.url(),
            "--image-protocol",
            "halfblocks",
            "--client-id",
            DASHBOARD_ID,
            "--log",
            log_path.to_str().unwrap(),
        ],
        &[],
        120,
        ROWS,
        Answers::Status,
    );
    dashboard.wait_for("the dashboard to connect", PATIENCE, |s| {
        s.contains("● connected")
    });
    let watch = Watch::start(&proxy.url());
    watch.wait_for("watch to connect", |w| w.count("connected") > 0);

    let started = Instant::now();
    let (mut prompts, count) = runtime.block_on(runs_under_fire(
        proxy.clone(),
        client(&server.url()),
        Rng::new(seed ^ 0x5eed),
    ));
    let under_fire = started.elapsed();
    // What ended under fire is in the dashboard's History before the restart, which wipes the
    // server's own: what the dashboard had not fetched by then, nobody could.
    let ended_under_fire: Vec<&Queued> = prompts.iter().filter(|p| p.truth.is_some()).collect();
    wait_for_history(
        &dashboard,
        &ended_under_fire,
        &log_path,
        "after the faults, before the restart",
    );
    // The server restarts mid-run, once both have seen the run start.
    let to_lose = runtime.block_on(queue_to_lose(&client(&server.url())));
    let running = &to_lose[0].id;
    watch.wait_for("the run before the restart", |w| {
        w.lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l["prompt_id"] == running.as_str() && l["phase"] == "running")
    });
    dashboard.wait_for("the run before the restart", PATIENCE, |s| {
        s.contains(&format!("Running {}", &running[..8]))
    });
    let (server, after_restart) = runtime.block_on(restart(server));
    prompts.extend(to_lose);
    prompts.extend(after_restart);

    // Every prompt the server has a record of, and every one lost in the restart, shows its
    // true end, in both.
    let must_show: Vec<&Queued> = prompts
        .iter()
        .filter(|p| p.truth.is_some() || p.plan == Plan::LostInRestart)
        .collect();
    let missing_in_watch = |w: &Watch| -> Vec<String> {
        let outcomes = w.outcomes();
        must_show
            .iter()
            .filter_map(|p| {
                let printed = outcomes.get(&p.id).map(String::as_str);
                let right = printed.is_some_and(|o| accepted(p).0.contains(&o));
                (!right).then(|| format!("{p:?} printed {printed:?}"))
            })
            .collect()
    };
    let waited = Instant::now();
    while !missing_in_watch(&watch).is_empty() && waited.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(50));
    }
    let missing = missing_in_watch(&watch);
    assert!(
        missing.is_empty(),
        "watch --json:\n{}\nwhat it printed last:\n{}",
        missing.join("\n"),
        watch.tail(60)
    );
    wait_for_history(&dashboard, &must_show, &log_path, "after the restart");
    let screen = dashboard.screen();
    // Deleted prompts the watchers saw wait are shown as gone, never as anything else.
    for prompt in prompts.iter().filter(|p| p.truth.is_none()) {
        if let Some(mark) = history_mark(&screen, &prompt.id) {
            assert!(
                accepted(prompt).1.contains(&mark),
                "{prompt:?}: {mark}\n{screen}"
            );
        }
        if let Some(outcome) = watch.outcomes().get(&prompt.id) {
            assert!(
                accepted(prompt).0.contains(&outcome.as_str()),
                "{prompt:?}: {outcome}"
            );
        }
    }
    assert!(screen.contains("● connected"), "{screen}");

    // It still answers keys at once, and quits cleanly.
    dashboard.send(b"?");
    dashboard.wait_for("the help", Duration::from_secs(10), |s| {
        s.contains("Esc closes")
    });
    dashboard.send(b"\x1b");
    dashboard.wait_for("the help to close", Duration::from_secs(10), |s| {
        !s.contains("Esc closes")
    });
    dashboard.send(b"q");
    let exited = dashboard.gone_within(Duration::from_secs(10));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(exited, "the dashboard did not quit; its log:\n{log}");
    assert_eq!(dashboard.wait_exit(PATIENCE), 0, "{}", dashboard.output());
    assert!(!log.contains("panicked"), "{log}");
    let longest_update = logged_ms(&log, "longest_update_ms");
    let longest_draw = logged_ms(&log, "longest_draw_ms");
    let reconnects = proxy.websockets_opened();
    let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
    for prompt in &prompts {
        *ends
            .entry(match prompt.plan {
                Plan::LostInRestart => "lost in the restart",
                _ => prompt.truth.as_deref().unwrap_or("deleted"),
            })
            .or_default() += 1;
    }
    eprintln!(
        "{} prompts ({ends:?}) in {:.1} s under fire: {count:?}; {reconnects} WebSockets opened, {} fetches failed for good; \
         the dashboard's longest update {longest_update:.1} ms, longest draw {longest_draw:.1} ms",
        prompts.len(),
        under_fire.as_secs_f64(),
        watch.count("fetch_failed"),
    );
    assert!(count.cuts >= CUTS);
    assert!(reconnects > CUTS as u64, "{reconnects}");
    // A stall is a blocking call on the loop (the HTTP timeout is 15 s); this bound only
    // catches that, not slowness.
    assert!(
        longest_update < 2000.0 && longest_draw < 2000.0,
        "the dashboard stalled: update {longest_update} ms, draw {longest_draw} ms"
    );
    drop(watch);
    runtime.block_on(server.shutdown());
}
