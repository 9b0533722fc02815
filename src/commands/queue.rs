//! `comfytop queue [URL] [--json]`: what runs and what waits, in run order.

use clap::Args;
use serde::Serialize;

use crate::comfy::api::{QueueItem, QueueSnapshot};
use crate::comfy::http::ComfyClient;
use crate::control::{node_count, output_classes, output_nodes, owner_label};
use crate::text::terminal_safe_json;

use super::{Exit, clean, fail};
use crate::cli::targets;
use crate::config::Config;

#[derive(Debug, Clone, Args)]
#[command(after_help = super::EXIT_STATUS_HELP)]
pub struct QueueArgs {
    /// ComfyUI servers: URLs, names from the config (gpu1 or @gpu1) or groups (@studio)
    /// [default: $COMFYUI_URL, else the config's default, else http://127.0.0.1:8188]
    #[arg(value_name = "URL|NAME")]
    pub urls: Vec<String>,

    /// Every server the config names
    #[arg(long, conflicts_with = "urls")]
    pub all: bool,

    #[command(flatten)]
    pub connection: crate::cli::ConnectionArgs,

    /// Print JSON: {"running": [...], "pending": [...]}, pending in run order; with several
    /// servers one object per line, each with "server_name" first
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: QueueArgs, config: &Config) -> Exit {
    let targets = match targets(&args.urls, args.all, &args.connection, config) {
        Ok(targets) => targets,
        Err(message) => {
            fail(message);
            return Exit::Usage;
        }
    };
    let several = targets.len() > 1;
    // Every server asked at once: one that is slow or down holds up none of the others.
    let snapshots = futures_util::future::join_all(targets.iter().map(|target| async move {
        match ComfyClient::new(target.server.clone()) {
            Ok(client) => client.queue().await,
            Err(e) => Err(e),
        }
    }))
    .await;
    let mut exit = Exit::Success;
    for (target, snapshot) in targets.iter().zip(snapshots) {
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(e) => {
                fail(e);
                exit = Exit::NotDone;
                continue;
            }
        };
        let name = server_name(target);
        match (args.json, several) {
            (true, false) => println!("{}", queue_json(&snapshot, None)),
            (true, true) => println!("{}", queue_json(&snapshot, Some(&name))),
            (false, false) => print!("{}", queue_table(&snapshot, None)),
            (false, true) => {
                println!("{}:", clean(&name));
                print!("{}", queue_table(&snapshot, None));
            }
        }
    }
    exit
}

/// What a server is called in the output of several: its name in the config, else its
/// address.
fn server_name(target: &crate::cli::Target) -> String {
    target
        .name
        .clone()
        .unwrap_or_else(|| crate::format::server_name(&target.server))
}

#[derive(Serialize)]
struct JsonQueue<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    server_name: Option<&'a str>,
    running: Vec<JsonItem<'a>>,
    pending: Vec<JsonItem<'a>>,
}

#[derive(Serialize)]
struct JsonItem<'a> {
    number: serde_json::Value,
    prompt_id: &'a str,
    client_id: Option<&'a str>,
    nodes: usize,
    outputs: Vec<JsonOutput<'a>>,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    node: &'a str,
    class_type: Option<&'a str>,
}

impl<'a> JsonItem<'a> {
    fn new(item: &'a QueueItem) -> Self {
        Self {
            number: number_json(item.number),
            prompt_id: &item.prompt_id,
            client_id: item.client_id(),
            nodes: node_count(item),
            outputs: output_nodes(item)
                .into_iter()
                .map(|node| JsonOutput {
                    node,
                    class_type: item.prompt.get(node).map(|n| n.class_type.as_str()),
                })
                .collect(),
        }
    }
}

/// A queue number as JSON: an integer when it is whole (the server's are), as `27` rather
/// than `27.0`.
pub fn number_json(number: f64) -> serde_json::Value {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        (number as i64).into()
    } else {
        number.into()
    }
}

/// The queue as one JSON object, pending prompts in run order, safe to print raw to a terminal;
/// `server` names it when several are listed.
pub fn queue_json(snapshot: &QueueSnapshot, server: Option<&str>) -> String {
    let queue = JsonQueue {
        server_name: server,
        running: snapshot.queue_running.iter().map(JsonItem::new).collect(),
        pending: snapshot
            .pending_in_run_order()
            .into_iter()
            .map(JsonItem::new)
            .collect(),
    };
    terminal_safe_json(&queue)
}

/// The queue as a table: running first, then pending in run order. `ours` marks prompts of
/// this client.
pub fn queue_table(snapshot: &QueueSnapshot, ours: Option<&str>) -> String {
    let rows: Vec<[String; 6]> = snapshot
        .queue_running
        .iter()
        .map(|item| row(item, "running", ours))
        .chain(
            snapshot
                .pending_in_run_order()
                .into_iter()
                .map(|item| row(item, "pending", ours)),
        )
        .collect();
    if rows.is_empty() {
        return "the queue is empty\n".to_string();
    }
    let header = ["#", "STATE", "PROMPT_ID", "QUEUED BY", "NODES", "OUTPUTS"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(header.map(str::to_string)).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let pad = width.saturating_sub(cell.chars().count());
            match i {
                // Numbers right-aligned, the last column not padded.
                0 | 4 => line.push_str(&format!("{}{cell}  ", " ".repeat(pad))),
                5 => line.push_str(cell),
                _ => line.push_str(&format!("{cell}{}  ", " ".repeat(pad))),
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let pending = snapshot.queue_pending.len();
    out.push_str(&format!(
        "{} running, {pending} pending\n",
        snapshot.queue_running.len()
    ));
    out
}

fn row(item: &QueueItem, state: &str, ours: Option<&str>) -> [String; 6] {
    let number = if item.number.fract() == 0.0 && item.number.abs() < 1e15 {
        format!("{}", item.number as i64)
    } else {
        format!("{}", item.number)
    };
    let classes = output_classes(item);
    [
        number,
        state.to_string(),
        clean(&item.prompt_id),
        owner_label(item.client_id(), ours),
        node_count(item).to_string(),
        if classes.is_empty() {
            "-".to_string()
        } else {
            classes.join(", ")
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const REFERENCE: &str = crate::FIXTURES;

    fn snapshot() -> QueueSnapshot {
        let path = format!("{REFERENCE}/http/get_queue_running_and_pending.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::from_value(v["body"].clone()).unwrap()
    }

    #[test]
    fn the_table_lists_running_then_pending_in_run_order() {
        let table = queue_table(&snapshot(), Some("lab-g-2ba58b69"));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            " #  STATE    PROMPT_ID                             QUEUED BY      NODES  OUTPUTS"
        );
        assert_eq!(
            lines[1],
            " 5  running  c2faa6db-62e2-4918-a1c0-285915b3a878  this comfytop      2  SaveImage"
        );
        let numbers: Vec<&str> = lines[1..lines.len() - 1]
            .iter()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(numbers, ["5", "-8", "6", "7"]);
        assert_eq!(*lines.last().unwrap(), "1 running, 3 pending");
        let theirs = queue_table(&snapshot(), None);
        assert!(theirs.contains("client lab-g-2b"), "{theirs}");
    }

    #[test]
    fn json_has_pending_in_run_order_and_output_classes() {
        let v: Value = serde_json::from_str(&queue_json(&snapshot(), None)).unwrap();
        assert!(v.get("server_name").is_none());
        let named: Value = serde_json::from_str(&queue_json(&snapshot(), Some("gpu1"))).unwrap();
        assert_eq!(named["server_name"], "gpu1");
        let numbers: Vec<f64> = v["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["number"].as_f64().unwrap())
            .collect();
        assert_eq!(numbers, [-8.0, 6.0, 7.0]);
        assert_eq!(v["running"][0]["client_id"], "lab-g-2ba58b69");
        assert_eq!(
            v["running"][0]["outputs"],
            serde_json::json!([{"node": "2", "class_type": "SaveImage"}])
        );
        assert_eq!(v["running"][0]["nodes"], 2);
    }

    #[test]
    fn whole_numbers_are_integers_in_json() {
        assert_eq!(number_json(58.0).to_string(), "58");
        assert_eq!(number_json(-8.0).to_string(), "-8");
        assert_eq!(number_json(2.5).to_string(), "2.5");
    }

    #[test]
    fn an_empty_queue_says_so() {
        assert_eq!(
            queue_table(&QueueSnapshot::default(), None),
            "the queue is empty\n"
        );
    }
}
