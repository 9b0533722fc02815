//! Hostile text from a server (escape sequences, clipboard writes, hyperlinks, title sets, C1
//! controls, bidi overrides, a very long line, invalid UTF-8 in binary frames) put wherever a
//! server's strings go, on the simulator over real sockets: node titles and ids, error messages
//! and tracebacks, file names, server log lines, client ids, prompt ids and progress text. None
//! of it reaches the terminal raw, on the dashboard or from any command that prints server text.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::pty::PtyApp;
use support::*;

/// The hostile strings. Each begins with a tag and ends with `ok`; what is left once the hostile
/// part is dropped (see [`CLEANED`]) shows that the text did come through.
const CORPUS: [&str; 12] = [
    // CSI: clear the screen, home the cursor.
    "csi-clear\x1b[2J\x1b[Hok",
    // CSI: colour.
    "csi-red\x1b[31mred\x1b[0mok",
    // 8-bit CSI (U+009B).
    "csi-8bit\u{9b}31mred\u{9b}0mok",
    // CSI asking the terminal to type its title back as input.
    "csi-report\x1b[21tok",
    // OSC 52 clipboard write, ended by BEL.
    "osc52-bel\x1b]52;c;aGVsbG8=\x07ok",
    // OSC 52 clipboard write, ended by ST.
    "osc52-st\x1b]52;c;aGVsbG8=\x1b\\ok",
    // OSC 8 hyperlink.
    "osc8\x1b]8;;https://evil.example/\x1b\\link\x1b]8;;\x1b\\ok",
    // OSC 0: the window title.
    "osc0\x1b]0;pwned-title\x07ok",
    // DCS (DECRQSS: asks the terminal for an answer).
    "dcs\x1bP$qm-dcs-payload\x1b\\ok",
    // Other C0: BEL, BS, CR alone, NUL, VT, and DEL.
    "c0 bel\x07bs\x08cr\rnul\0vt\x0bdel\x7fok",
    // Every C1 control (U+0080..=U+009F); the string-starting ones each closed by ST.
    "c1\u{80}\u{81}\u{82}\u{83}\u{84}\u{85}\u{86}\u{87}\u{88}\u{89}\u{8a}\u{8b}\u{8c}\u{8d}\u{8e}\u{8f}\u{91}\u{92}\u{93}\u{94}\u{95}\u{96}\u{97}\u{99}\u{9a}\u{9c}\u{90}d\u{9c}\u{98}s\u{9c}\u{9d}0;t\u{9c}\u{9e}p\u{9c}\u{9f}a\u{9c}\u{9b}mok",
    // Bidi embeddings, overrides and isolates.
    "bidi\u{202a}\u{202b}\u{202c}\u{202d}\u{202e}exe.gnp\u{2066}\u{2067}\u{2068}\u{2069}ok",
];

/// Each corpus string once made safe.
const CLEANED: [&str; 12] = [
    "csi-clearok",
    "csi-redredok",
    "csi-8bitredok",
    "csi-reportok",
    "osc52-belok",
    "osc52-stok",
    "osc8linkok",
    "osc0ok",
    "dcsok",
    "c0 belbscrnulvtdelok",
    "c1ok",
    "bidiexe.gnpok",
];

/// What the escape sequences of the corpus carry. Made safe, a sequence goes whole, so no output
/// shows these even as plain text (JSON output excepted: there they are data, escaped).
const PAYLOADS: [&str; 5] = [
    "aGVsbG8=",
    "evil.example",
    "pwned-title",
    "dcs-payload",
    "bG9uZw==",
];

/// Progress text frames of raw bytes (hex, one group per frame): invalid UTF-8; an 8-bit CSI
/// split across two frames, each then invalid alone; escapes and a title set around an invalid
/// byte.
const RAW_FRAMES: &str =
    "626164fffe206279746573 c2 9b324a 1b5b33316dff1b5d303b70776e65642d7469746c6507";

/// A line of 100,000 characters with a clipboard write at its end.
fn long_line() -> String {
    format!("long{}\x1b]52;c;bG9uZw==\x07ok", "L".repeat(100_000))
}

/// Every corpus string in one.
fn all_of_it() -> String {
    CORPUS.concat()
}

/// The client id the hostile prompts are queued under.
fn hostile_client_id() -> String {
    all_of_it()
}

/// A node id with a title set in it.
const HOSTILE_NODE_ID: &str = CORPUS[7];

/// A prompt id with a title set, a colour and a bidi override in it.
const HOSTILE_PROMPT_ID: &str = "id\x1b]0;pwned-title\x07\x1b[31m\u{202e}\u{9b}0mok";

/// Succeeds. One `LabSendText` per corpus string, titled with it and sending it as progress
/// text (the one with the title set under a node id that has it too); the long line as a title
/// and as progress text; text split inside an escape over two frames; the raw frames; and an
/// image saved under a file name prefix made of the corpus.
fn hostile_run() -> Value {
    let mut prompt = serde_json::Map::new();
    for (i, text) in CORPUS.iter().enumerate() {
        let id = if *text == HOSTILE_NODE_ID {
            HOSTILE_NODE_ID.to_string()
        } else {
            (10 + i).to_string()
        };
        prompt.insert(
            id,
            json!({
                "class_type": "LabSendText",
                "_meta": {"title": text},
                "inputs": {"text": text},
            }),
        );
    }
    prompt.insert(
        "1".into(),
        json!({
            "class_type": "LabSendText",
            "_meta": {"title": long_line()},
            "inputs": {
                "text": format!("split\x1b]52;c;|c3BsaXQ=\x07ok|{}", long_line()),
                "split_at": "|",
                "raw_frames": RAW_FRAMES,
            },
        }),
    );
    prompt.insert(
        "2".into(),
        json!({
            "class_type": "EmptyImage",
            "_meta": {"title": all_of_it()},
            "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0},
        }),
    );
    prompt.insert(
        "3".into(),
        json!({
            "class_type": "SaveImage",
            "_meta": {"title": CORPUS[4]},
            "inputs": {"filename_prefix": format!("hostile/{}", all_of_it()), "images": ["2", 0]},
        }),
    );
    Value::Object(prompt)
}

/// Fails in `LabRaiseError` with every corpus string and the long line as its message.
fn hostile_failure() -> Value {
    json!({
        "1": {
            "class_type": "LabRaiseError",
            "_meta": {"title": all_of_it()},
            "inputs": {"message": format!("{}{}", all_of_it(), long_line())},
        }
    })
}

/// Fails with every corpus string in the message and in the traceback.
fn hostile_traceback() -> Value {
    json!({
        "1": {
            "class_type": "LabSendText",
            "_meta": {"title": CORPUS[6]},
            "inputs": {"text": all_of_it(), "raise_error": true},
        }
    })
}

/// Runs until interrupted, under a hostile node id and title.
fn hostile_long_run() -> Value {
    json!({
        HOSTILE_NODE_ID: {
            "class_type": "LabLongRun",
            "_meta": {"title": all_of_it()},
            "inputs": {"steps": 100_000, "delay": 0.3, "seed": 1},
        },
        "2": {
            "class_type": "PreviewImage",
            "_meta": {"title": CORPUS[2]},
            "inputs": {"images": [HOSTILE_NODE_ID, 0]},
        }
    })
}

/// Ends a run: its progress text says the hostile prompts before it are done.
const SENTINEL: &str = "sentinel-end";

fn sentinel() -> Value {
    json!({"1": {"class_type": "LabSendText", "inputs": {"text": SENTINEL}}})
}

/// Queues `prompt` as another client would, under the hostile client id (and `prompt_id` if
/// given); returns the prompt id.
async fn queue_as_another_client(url: &str, prompt: Value, prompt_id: Option<&str>) -> String {
    let mut body = json!({"prompt": prompt, "client_id": hostile_client_id()});
    if let Some(id) = prompt_id {
        body["prompt_id"] = id.into();
    }
    let response = reqwest::Client::new()
        .post(format!("{url}/prompt"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {answer}");
    answer["prompt_id"].as_str().unwrap().to_string()
}

/// Queues `prompt` from another client and waits for its end.
async fn run_as_another_client(url: &str, prompt: Value) -> String {
    let id = queue_as_another_client(url, prompt, None).await;
    until_finished(&client(url), &id).await;
    id
}

/// A simulator with the comfytop bridge, so that every client sees every prompt live, with the
/// client id of the one that queued it.
async fn bridged_server() -> comfy_sim::SimHandle {
    comfy_sim::SimServer::start(comfy_sim::SimConfig {
        step: Duration::from_millis(5),
        bridge: true,
        ..comfy_sim::SimConfig::default()
    })
    .await
    .unwrap()
}

/// A character no plain output may hold: C0 controls but newline and tab, DEL, C1 controls,
/// and bidi controls and marks.
fn forbidden(c: char) -> bool {
    (c < ' ' && c != '\n' && c != '\t')
        || ('\x7f'..='\u{9f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{61c}')
}

/// Where in `text` byte `at` is, for a failure message.
fn around(text: &str, at: usize) -> String {
    let mut start = at.saturating_sub(60);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + 60).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    format!("{:?}", &text[start..end])
}

/// What is wrong with `bytes` as text for a terminal, if anything: not UTF-8, or holding a
/// character `bad` accepts.
fn text_problem(bytes: &[u8], bad: impl Fn(char) -> bool) -> Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))?;
    match text.char_indices().find(|(_, c)| bad(*c)) {
        Some((at, c)) => Err(format!("{c:?} at byte {at}: {}", around(text, at))),
        None => Ok(text),
    }
}

/// The first of `sequences` in `text`, if any.
fn sequence_problem<'a>(
    text: &str,
    sequences: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    sequences.into_iter().find_map(|sequence| {
        let at = text.find(sequence)?;
        Some(format!("{sequence:?} at byte {at}: {}", around(text, at)))
    })
}

/// What is wrong with `bytes` as plain output: a control, C1 or bidi character, a payload of
/// the corpus, a line longer than `longest` characters.
fn plain_problem(bytes: &[u8], longest: usize) -> Result<&str, String> {
    let text = text_problem(bytes, forbidden)?;
    if let Some(problem) = sequence_problem(text, PAYLOADS) {
        return Err(problem);
    }
    match text.lines().find(|line| line.chars().count() > longest) {
        Some(line) => Err(format!(
            "a line of {} characters: {:?}…",
            line.chars().count(),
            line.chars().take(200).collect::<String>()
        )),
        None => Ok(text),
    }
}

/// `bytes` are UTF-8 without a control, C1 or bidi character.
fn assert_no_controls(what: &str, bytes: &[u8]) -> String {
    match text_problem(bytes, forbidden) {
        Ok(text) => text.to_string(),
        Err(problem) => panic!("{what}: {problem}"),
    }
}

/// `bytes` hold nothing a terminal acts on, no payload of the corpus, and no line longer than
/// `longest` characters.
fn assert_plain(what: &str, bytes: &[u8], longest: usize) -> String {
    match plain_problem(bytes, longest) {
        Ok(text) => text.to_string(),
        Err(problem) => panic!("{what}: {problem}"),
    }
}

/// Every line of `bytes` is a JSON object, and nothing a terminal acts on is there unescaped.
fn assert_json_lines(what: &str, bytes: &[u8]) -> Vec<Value> {
    let text = assert_no_controls(what, bytes);
    text.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(value @ Value::Object(_)) => value,
            other => panic!("{what}: not a JSON object ({other:?}): {line:?}"),
        })
        .collect()
}

/// Whether `value` holds the string `wanted` anywhere (as a key or a value).
fn holds_string(value: &Value, wanted: &str) -> bool {
    match value {
        Value::String(s) => s == wanted,
        Value::Array(items) => items.iter().any(|v| holds_string(v, wanted)),
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| k == wanted || holds_string(v, wanted)),
        _ => false,
    }
}

/// The cleaned corpus strings `text` lacks.
fn missing_cleaned<'a>(text: &str, which: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    which.into_iter().filter(|c| !text.contains(c)).collect()
}

/// `comfytop watch` running: its stdout lines as they come, and all it wrote once stopped.
struct Watching {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Watching {
    fn start(args: &[&str]) -> Self {
        let mut child = comfytop(args).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let mut stdout = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match stdout.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let _ = send.send(String::from_utf8_lossy(&line).into_owned());
                        all.extend_from_slice(&line);
                    }
                }
            }
            all
        });
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut all);
            all
        });
        Self {
            child,
            lines,
            reader: Some(reader),
            stderr: Some(stderr),
        }
    }

    /// Waits for a line that holds `wanted`.
    fn wait_for(&self, wanted: &str) {
        self.wait_until(wanted, |line| line.contains(wanted));
    }

    /// Waits for a line that `check` accepts.
    fn wait_until(&self, what: &str, check: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut last = std::collections::VecDeque::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if check(&line) => return,
                Ok(line) => {
                    if last.len() == 5 {
                        last.pop_front();
                    }
                    last.push_back(line);
                }
                Err(e) => panic!("no line with {what} ({e}); the last ones: {last:#?}"),
            }
        }
    }

    /// Stops the program; returns what it wrote to stdout and stderr.
    fn stop(&mut self) -> (Vec<u8>, Vec<u8>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let all = |handle: Option<std::thread::JoinHandle<Vec<u8>>>| {
            handle.map(|h| h.join().unwrap()).unwrap_or_default()
        };
        (all(self.reader.take()), all(self.stderr.take()))
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `workflow` to a file in `dir`; returns its path.
fn workflow_file(dir: &std::path::Path, name: &str, workflow: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, workflow.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

/// Appends to a recording what another server could send: progress text of invalid UTF-8 with
/// escapes, a text frame that is not JSON, log lines (one of them the long line), a status with
/// a hostile sid, hostile feature flags and a message type of the server's own making; then
/// lines that are no transcript line at all, for the diagnostics.
fn append_hostile_frames(path: &std::path::Path) {
    use comfytop::comfy::RawFrame;
    use comfytop::comfy::transcript::Recorder;
    let mut recorder = Recorder::append(path).unwrap();
    let t = 1_000.0;
    let mut binary = b"\0\0\0\x03\0\0\0\x019bad \xff\xfe ".to_vec();
    binary.extend_from_slice(b"\x1b]52;c;aGVsbG8=\x07 \xc2\x9b31m");
    let logs = json!({
        "type": "logs",
        "data": {
            "entries": [
                {"t": "2026-01-01T00:00:00", "m": all_of_it()},
                {"t": all_of_it(), "m": long_line()},
            ],
            "size": {"cols": 80, "rows": 24},
        },
    });
    let status = json!({
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": all_of_it()},
    });
    let text_frames = [
        all_of_it(),
        logs.to_string(),
        status.to_string(),
        json!({"type": "feature_flags", "data": {all_of_it(): all_of_it()}}).to_string(),
        json!({"type": all_of_it(), "data": {"m": all_of_it()}}).to_string(),
    ];
    recorder
        .record(t, &RawFrame::Binary(bytes::Bytes::from(binary)))
        .unwrap();
    for (i, frame) in text_frames.into_iter().enumerate() {
        recorder
            .record(t + 1.0 + i as f64, &RawFrame::Text(frame))
            .unwrap();
    }
    drop(recorder);
    let bad = [
        json!({"t": t + 9.0, "kind": all_of_it()}).to_string(),
        json!({"t": t + 9.0, "kind": "binary", "event_type": 3, "b64": all_of_it()}).to_string(),
        format!("{{\"t\": {}, {}", t + 9.0, all_of_it()),
    ];
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    for line in bad {
        std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()).unwrap();
    }
}

/// The checks are not vacuous: each corpus string, written raw, fails them, and so do the raw
/// frames' bytes.
#[test]
fn every_corpus_string_written_raw_fails_the_checks() {
    let long = long_line();
    for text in CORPUS.iter().copied().chain([long.as_str()]) {
        let line = format!("node 1: {text}\n");
        assert!(
            plain_problem(line.as_bytes(), LONGEST_LINE).is_err(),
            "{text:?}"
        );
        assert!(dashboard_problem(line.as_bytes()).is_some(), "{text:?}");
    }
    for bytes in [&b"bad \xff\xfe"[..], b"\xc2", b"\x9b2J"] {
        assert!(text_problem(bytes, forbidden).is_err(), "{bytes:?}");
        assert!(dashboard_problem(bytes).is_some(), "{bytes:?}");
    }
}

/// The longest line a human-readable command prints from this corpus.
const LONGEST_LINE: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replay_and_submit_print_hostile_server_text_only_made_safe() {
    let sim = bridged_server().await;
    let url = sim.url();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("hostile.jsonl");
    let record_arg = record.to_string_lossy().into_owned();

    let mut human = Watching::start(&["watch", &url]);
    let mut json = Watching::start(&["watch", "--json", &url, "--record", &record_arg]);
    human.wait_for("connected to");
    json.wait_for("\"connected\"");

    run_as_another_client(&url, hostile_run()).await;
    run_as_another_client(&url, hostile_traceback()).await;
    run_as_another_client(&url, hostile_failure()).await;

    // The same workflows through `submit --wait`, which follows them itself. What each prints,
    // made safe: the node lines with their titles (the title set's node by its id too), the
    // error's node and message (the long one cut).
    let run_shows: Vec<String> = CLEANED
        .iter()
        .map(|title| format!("] {title}"))
        .chain(["[osc0ok] osc0ok".to_string(), "[1] longLLLL".to_string()])
        .collect();
    let traceback_shows = vec![
        "error in node [1] osc8linkok (LabSendText)".to_string(),
        format!("  {}", CLEANED.concat()),
    ];
    let failure_shows = vec![
        "(LabRaiseError) after ".to_string(),
        format!("  {}longLLLL", CLEANED.concat()),
        "more characters)".to_string(),
    ];
    for (name, workflow, code, shows) in [
        ("run.json", hostile_run(), 0, run_shows),
        ("traceback.json", hostile_traceback(), 1, traceback_shows),
        ("failure.json", hostile_failure(), 1, failure_shows),
    ] {
        let path = workflow_file(dir.path(), name, &workflow);
        let out = run(&["submit", "--wait", &path, &url]).await;
        let what = format!("submit --wait {name}");
        assert_eq!(
            out.status.code(),
            Some(code),
            "{what}: {}",
            text(&out.stderr)
        );
        let stdout = assert_plain(&what, &out.stdout, LONGEST_LINE);
        let stderr = assert_plain(&what, &out.stderr, LONGEST_LINE);
        let all = format!("{stdout}{stderr}");
        for shown in shows {
            assert!(all.contains(&shown), "{what}: {shown:?} not in\n{all}");
        }
    }
    // Without --wait: the prompt id the server gave.
    let path = workflow_file(dir.path(), "again.json", &hostile_run());
    let out = run(&["submit", &path, &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_plain("submit", &out.stdout, LONGEST_LINE);
    assert_plain("submit (stderr)", &out.stderr, LONGEST_LINE);

    // A prompt that runs long enough for both to learn its graph: its node is named by its
    // title then, and the interrupt names it too.
    let long_run = queue_as_another_client(&url, hostile_long_run(), None).await;
    human.wait_for("node osc0ok \"csi-clearokcsi-redredok");
    json.wait_until("the long run's progress with its title", |line| {
        line.contains("\"event\":\"progress\"") && line.contains("\"node_title\":\"csi-clear")
    });
    client(&url).interrupt(Some(&long_run)).await.unwrap();
    human.wait_for("interrupted at node osc0ok \"csi-clearokcsi-redredok");

    run_as_another_client(&url, sentinel()).await;
    human.wait_for(SENTINEL);
    json.wait_for(SENTINEL);
    let (stdout, stderr) = human.stop();
    let watched = assert_plain("watch", &stdout, LONGEST_LINE);
    assert_plain("watch (stderr)", &stderr, LONGEST_LINE);
    // The progress text of every corpus string, made safe.
    let missing = missing_cleaned(&watched, CLEANED);
    assert!(missing.is_empty(), "watch lacks {missing:?}:\n{watched}");
    assert!(watched.contains("longLLLL"), "{watched}");
    let (stdout, stderr) = json.stop();
    let lines = assert_json_lines("watch --json", &stdout);
    assert_plain("watch --json (stderr)", &stderr, LONGEST_LINE);
    // The data stays exact: every corpus string as progress text, the node id and title, the
    // client id.
    for text in CORPUS {
        assert!(
            lines
                .iter()
                .any(|l| l["event"] == "progress_text" && l["text"] == text),
            "watch --json lacks {text:?}"
        );
    }
    // (The tracker keeps a title's first 256 characters.)
    let title_start = CORPUS[..3].concat();
    assert!(lines.iter().any(|l| {
        l["event"] == "progress"
            && l["node"] == HOSTILE_NODE_ID
            && l["node_title"]
                .as_str()
                .is_some_and(|t| t.starts_with(&title_start))
    }));
    assert!(
        lines
            .iter()
            .any(|l| l["relayed_owner"] == hostile_client_id())
    );

    append_hostile_frames(&record);
    // Malformed frames and bad lines make a replay fail: status 1.
    let out = run(&["replay", &record_arg]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let replayed = assert_plain("replay", &out.stdout, LONGEST_LINE);
    assert_plain("replay (stderr)", &out.stderr, LONGEST_LINE);
    let missing = missing_cleaned(&replayed, CLEANED);
    assert!(missing.is_empty(), "replay lacks {missing:?}:\n{replayed}");
    let out = run(&["replay", "--json", &record_arg]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let lines = assert_json_lines("replay --json", &out.stdout);
    assert_plain("replay --json (stderr)", &out.stderr, LONGEST_LINE);
    let unknown = lines.iter().find(|l| l["event"] == all_of_it());
    assert!(
        unknown.is_some_and(|l| l["data"]["m"] == all_of_it()),
        "{unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_and_cancel_print_hostile_server_text_only_made_safe() {
    let sim = bridged_server().await;
    let url = sim.url();
    // A failure in the history, a hostile prompt running and two waiting behind it.
    run_as_another_client(&url, hostile_failure()).await;
    let running = queue_as_another_client(&url, hostile_long_run(), None).await;
    until_running(&client(&url), &running).await;
    queue_as_another_client(&url, hostile_run(), Some(HOSTILE_PROMPT_ID)).await;
    queue_as_another_client(&url, hostile_traceback(), None).await;

    let out = run(&["queue", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = assert_plain("queue", &out.stdout, LONGEST_LINE);
    assert_plain("queue (stderr)", &out.stderr, LONGEST_LINE);
    assert!(table.contains("idok"), "{table}");
    assert!(table.contains("client csi-clearok"), "{table}");

    let out = run(&["queue", "--json", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines = assert_json_lines("queue --json", &out.stdout);
    // The data stays exact.
    for wanted in [HOSTILE_PROMPT_ID.to_string(), hostile_client_id()] {
        assert!(
            lines.iter().any(|l| holds_string(l, &wanted)),
            "queue --json lacks {wanted:?}: {lines:?}"
        );
    }
    assert_plain("queue --json (stderr)", &out.stderr, LONGEST_LINE);

    let out = run(&["cancel", "--all-pending", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = assert_plain("cancel --all-pending", &out.stdout, LONGEST_LINE);
    assert_plain("cancel --all-pending (stderr)", &out.stderr, LONGEST_LINE);
    assert!(said.contains("idok"), "{said}");

    let out = run(&["cancel", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = assert_plain("cancel", &out.stdout, LONGEST_LINE);
    assert_plain("cancel (stderr)", &out.stderr, LONGEST_LINE);
    assert!(said.contains("interrupted prompt"), "{said}");
    assert!(said.contains("in node [osc0ok] LabLongRun"), "{said}");
}

/// A server that answers every request with `status` and the corpus as its body.
async fn answering_the_corpus(status: u16) -> String {
    let body = format!("{}{}", all_of_it(), long_line());
    let status = axum::http::StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().fallback(move || async move { (status, body) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_of_a_server_are_printed_only_made_safe() {
    let dir = tempfile::tempdir().unwrap();
    let path = workflow_file(dir.path(), "small.json", &workflow("small_save.json"));
    // A server failing with the corpus as its error, and one answering it instead of JSON.
    for status in [500, 200] {
        let url = answering_the_corpus(status).await;
        // `submit --wait` asks for the WebSocket first, and says that it is refused.
        for (args, quotes) in [
            (vec!["queue", url.as_str()], true),
            (vec!["queue", "--json", url.as_str()], true),
            (vec!["cancel", url.as_str()], true),
            (vec!["submit", path.as_str(), url.as_str()], true),
            (vec!["submit", "--wait", path.as_str(), url.as_str()], false),
        ] {
            let out = run(&args).await;
            let what = format!("{args:?} answered {status}");
            assert_ne!(out.status.code(), Some(0), "{what}");
            assert_plain(&what, &out.stdout, LONGEST_LINE);
            let said = assert_plain(&what, &out.stderr, LONGEST_LINE);
            if quotes {
                assert!(said.contains(&CLEANED[..2].concat()), "{what}: {said}");
            }
        }
    }
}

/// A WebSocket close reason (at most 123 bytes) with a title set, a bidi override and a CSI.
const CLOSE_REASON: &str = "bye\x1b]0;pwned-title\x07\u{202e}\x1b[2Jok";

/// A server whose WebSocket sends text that is not JSON, a status with the corpus as its sid,
/// progress text of invalid UTF-8, then closes with [`CLOSE_REASON`]; its queue and history
/// are empty.
async fn closing_with_the_corpus() -> String {
    use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
    use axum::routing::get;
    let ws = |upgrade: WebSocketUpgrade| async move {
        upgrade.on_upgrade(|mut socket| async move {
            let status = json!({
                "type": "status",
                "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": all_of_it()},
            });
            let mut binary = b"\0\0\0\x03\0\0\0\x011".to_vec();
            binary.extend_from_slice(b"\x1b]52;c;aGVsbG8=\x07\xff\xc2\x9b2J");
            let frames = [
                Message::Text(status.to_string().into()),
                Message::Text(all_of_it().into()),
                Message::Binary(binary.into()),
                Message::Close(Some(CloseFrame {
                    code: 4000,
                    reason: CLOSE_REASON.into(),
                })),
            ];
            for frame in frames {
                if socket.send(frame).await.is_err() {
                    return;
                }
            }
            // Until the client answers the close.
            while let Some(Ok(_)) = socket.recv().await {}
        })
    };
    let app = axum::Router::new()
        .route("/ws", get(ws))
        .route(
            "/queue",
            get(|| async { axum::Json(json!({"queue_running": [], "queue_pending": []})) }),
        )
        .route("/history", get(|| async { axum::Json(json!({})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_websocket_says_and_its_close_reason_are_printed_only_made_safe() {
    let url = closing_with_the_corpus().await;
    let mut human = Watching::start(&["watch", &url]);
    let mut json = Watching::start(&["watch", "--json", &url]);
    human.wait_for("disconnected");
    json.wait_for("\"disconnected\"");
    let (stdout, stderr) = human.stop();
    let watched = assert_plain("watch", &stdout, LONGEST_LINE);
    assert_plain("watch (stderr)", &stderr, LONGEST_LINE);
    for shown in ["sid csi-clearokcsi-redredok", "malformed", "byeok"] {
        assert!(watched.contains(shown), "{shown:?} not in\n{watched}");
    }
    let (stdout, stderr) = json.stop();
    let lines = assert_json_lines("watch --json", &stdout);
    assert_plain("watch --json (stderr)", &stderr, LONGEST_LINE);
    assert!(lines.iter().any(|l| l["sid"] == all_of_it()), "{lines:?}");
    // The close reason is made safe where the connection reports it, for JSON too.
    assert!(
        lines.iter().any(|l| l["event"] == "disconnected"
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.ends_with("(code 4000: byeok)"))),
        "{lines:?}"
    );
}

/// What the dashboard may not write: the corpus' sequences other than the CSI ones it uses
/// itself (clearing, colours, cursor moves), and their payloads.
const DASHBOARD_FORBIDDEN: [&str; 9] = [
    "\x1b]52;",
    "\x1b]8;",
    "\x1b]0;",
    "\x1bP",
    "\x1b\\",
    "\x1b[21t",
    "\x1b[31mred",
    "\x1b[2J\x1b[Hok",
    "\x1b[0mok",
];

/// What the dashboard wrote of the corpus raw, if anything: a C0 control other than ESC
/// (newline and tab included: it places everything by cursor moves), a C1 or bidi character,
/// one of [`DASHBOARD_FORBIDDEN`] or of [`PAYLOADS`].
fn dashboard_problem(raw: &[u8]) -> Option<String> {
    match text_problem(raw, |c| c != '\x1b' && forbidden(c)) {
        Ok(text) => sequence_problem(text, DASHBOARD_FORBIDDEN.into_iter().chain(PAYLOADS)),
        Err(problem) => Some(problem),
    }
}

#[test]
fn the_dashboard_shows_hostile_server_text_only_made_safe() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(bridged_server());
    let url = sim.url();
    let mut app = PtyApp::spawn(
        &[&url, "--image-protocol", "none", "--notify", "off"],
        120,
        40,
    );
    let limit = Duration::from_secs(20);
    app.wait_for("the connection", limit, |s| s.contains("● connected"));
    runtime.block_on(async {
        run_as_another_client(&url, hostile_run()).await;
        run_as_another_client(&url, hostile_traceback()).await;
        run_as_another_client(&url, hostile_failure()).await;
    });
    // Settled before the next prompt: the tracker takes a prompt for gone when a /queue answer
    // asked for before the prompt's first live events comes after them without it, and this
    // test is not about that.
    app.wait_for("the finished prompts", limit, |s| {
        s.contains("History 3") && s.contains("queue is empty")
    });
    std::thread::sleep(Duration::from_millis(500));
    runtime.block_on(async {
        let running = queue_as_another_client(&url, hostile_long_run(), None).await;
        until_running(&client(&url), &running).await;
        queue_as_another_client(&url, hostile_run(), Some(HOSTILE_PROMPT_ID)).await;
    });
    // The pending prompt's id; the running node's title and the client id, live through the
    // bridge.
    app.wait_for("the prompts", limit, |s| {
        s.contains("History 3")
            && s.contains("idok")
            && s.contains("▶ csi-clearokcsi-redredok")
            && s.contains("⇄ csi-clear")
    });

    // The newest entry of the history: the failure, its message made safe and wrapped.
    app.send(b"\t\tg\r");
    app.wait_for("the failure's details", limit, |s| {
        s.contains("[LabRaiseError]: RuntimeError:")
            && s.contains("client_id csi-clearokcsi-redredok")
            && s.contains("belbscrnulvtdelokc1okbidiexe.gnpoklongLLLL")
            && s.contains(&"L".repeat(100))
    });
    app.send(b"\x1b");
    app.wait_for("the panels", limit, |s| s.contains("History 3"));
    // The next one: the traceback quotes the corpus, made safe.
    app.send(b"j\r");
    app.wait_for("the traceback", limit, |s| {
        s.contains("raise RuntimeError(\"csi-clearokcsi-redredok") && s.contains("Traceback")
    });
    app.send(b"\x1b");
    app.wait_for("the panels", limit, |s| s.contains("History 3"));
    // The run that succeeded: node titles and the output's file name.
    app.send(b"j\r");
    app.wait_for("the run's details", limit, |s| {
        s.contains("Nodes (15/15 complete)")
            && s.contains("✓ bidiexe.gnpok (21)")
            && s.contains("bidiexe.gnpok_00001")
            && s.contains("[output/hostile/csi-clearokcsi-redredok")
    });
    app.send(b"\x1b");
    app.wait_for("the panels", limit, |s| s.contains("History 3"));
    // The event log, then the server's log with the failure's lines.
    app.send(b"l");
    app.wait_for("the event log", limit, |s| s.contains("Events"));
    app.send(b"L");
    app.wait_for("the server log", limit, |s| {
        s.contains("Server log") && s.contains("RuntimeError: csi-clearokcsi-redredok")
    });
    app.send(b"q");
    assert_eq!(app.wait_exit(limit), 0);
    if let Some(problem) = dashboard_problem(&app.raw_output()) {
        panic!("the dashboard wrote {problem}");
    }
}

#[test]
fn the_dashboard_shows_a_hostile_websocket_only_made_safe() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let url = runtime.block_on(closing_with_the_corpus());
    let mut app = PtyApp::spawn(
        &[&url, "--image-protocol", "none", "--notify", "off"],
        120,
        40,
    );
    let limit = Duration::from_secs(20);
    app.wait_for("the close reason", limit, |s| {
        s.contains("closed the connection (code 4000: byeok)")
    });
    app.send(b"l");
    app.wait_for("the event log", limit, |s| {
        s.contains("sid csi-clearokcsi-redredok") && s.contains("not valid UTF-8")
    });
    app.send(b"q");
    assert_eq!(app.wait_exit(limit), 0);
    if let Some(problem) = dashboard_problem(&app.raw_output()) {
        panic!("the dashboard wrote {problem}");
    }
}
