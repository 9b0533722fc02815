//! Serde types of the HTTP API's request and response bodies, shared by the client and the
//! simulated server.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::protocol::{ImageRef, MessageError, NodeId, NodeOutput, PromptId, ServerMessage};

/// An API-format workflow: node id to node.
pub type Workflow = BTreeMap<NodeId, WorkflowNode>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowNode {
    pub class_type: String,
    #[serde(default)]
    pub inputs: Map<String, Value>,
    #[serde(default, rename = "_meta", skip_serializing_if = "Option::is_none")]
    pub meta: Option<NodeMeta>,
}

impl WorkflowNode {
    /// `_meta.title` when the workflow has one, else the class type.
    pub fn title(&self) -> &str {
        self.meta
            .as_ref()
            .and_then(|m| m.title.as_deref())
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.class_type)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One queue or history item: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
/// Kept as raw JSON for the workflow too, so a requeue sends back exactly what was queued.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    /// Run order key: the queue is a min-heap on it (front items are negative).
    pub number: f64,
    pub prompt_id: PromptId,
    pub prompt: Value,
    pub extra_data: Map<String, Value>,
    pub outputs_to_execute: Vec<NodeId>,
}

impl QueueItem {
    /// Who queued it, from `extra_data.client_id`.
    pub fn client_id(&self) -> Option<&str> {
        self.extra_data.get("client_id").and_then(Value::as_str)
    }

    /// The workflow as typed nodes, skipping entries that are not nodes.
    pub fn workflow(&self) -> Workflow {
        let Value::Object(map) = &self.prompt else {
            return Workflow::new();
        };
        map.iter()
            .filter_map(|(id, node)| {
                serde_json::from_value::<WorkflowNode>(node.clone())
                    .ok()
                    .map(|n| (id.clone(), n))
            })
            .collect()
    }
}

impl Serialize for QueueItem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(5))?;
        if self.number.fract() == 0.0 && self.number.abs() < 9.0e15 {
            seq.serialize_element(&(self.number as i64))?;
        } else {
            seq.serialize_element(&self.number)?;
        }
        seq.serialize_element(&self.prompt_id)?;
        seq.serialize_element(&self.prompt)?;
        seq.serialize_element(&self.extra_data)?;
        seq.serialize_element(&self.outputs_to_execute)?;
        seq.end()
    }
}

impl<'de> Deserialize<'de> for QueueItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = QueueItem;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("[number, prompt_id, prompt, extra_data, outputs_to_execute]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<QueueItem, A::Error> {
                let number: f64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let prompt_id: String = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let prompt: Value = seq.next_element()?.unwrap_or(Value::Null);
                let extra_data: Option<Map<String, Value>> = seq.next_element()?;
                let outputs: Option<Vec<NodeId>> = seq.next_element()?;
                // Newer servers may append more fields; skip them.
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(QueueItem {
                    number,
                    prompt_id,
                    prompt,
                    extra_data: extra_data.unwrap_or_default(),
                    outputs_to_execute: outputs.unwrap_or_default(),
                })
            }
        }
        d.deserialize_seq(ItemVisitor)
    }
}

/// `GET /queue`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QueueSnapshot {
    #[serde(default)]
    pub queue_running: Vec<QueueItem>,
    /// Heap order on the wire; [`QueueSnapshot::pending_in_run_order`] sorts it.
    #[serde(default)]
    pub queue_pending: Vec<QueueItem>,
}

impl QueueSnapshot {
    /// Pending items in the order the server will run them (ascending number).
    pub fn pending_in_run_order(&self) -> Vec<&QueueItem> {
        let mut items: Vec<&QueueItem> = self.queue_pending.iter().collect();
        items.sort_by(|a, b| a.number.total_cmp(&b.number));
        items
    }
}

/// `GET /prompt`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PromptInfo {
    #[serde(default)]
    pub exec_info: super::protocol::ExecInfo,
}

/// One finished prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub prompt: QueueItem,
    #[serde(default)]
    pub outputs: BTreeMap<NodeId, NodeOutput>,
    #[serde(default)]
    pub status: Option<HistoryStatus>,
    #[serde(default)]
    pub meta: BTreeMap<NodeId, Value>,
}

impl HistoryEntry {
    /// Every image the prompt produced, in node order.
    pub fn images(&self) -> impl Iterator<Item = (&NodeId, &ImageRef)> {
        self.outputs
            .iter()
            .flat_map(|(node, out)| out.images.iter().map(move |img| (node, img)))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryStatus {
    /// `success` or `error` (interrupted prompts are `error` too).
    #[serde(default)]
    pub status_str: String,
    #[serde(default)]
    pub completed: bool,
    /// `[type, data]` pairs: execution_start, execution_cached, then the ending message.
    #[serde(default)]
    pub messages: Vec<(String, Value)>,
}

impl HistoryStatus {
    /// The status messages decoded as protocol messages; ones that do not decode are skipped.
    pub fn decoded_messages(&self) -> impl Iterator<Item = Result<ServerMessage, MessageError>> {
        self.messages
            .iter()
            .map(|(kind, data)| ServerMessage::from_parts(kind.clone(), data.clone()))
    }
}

/// `GET /history` and `GET /history/{id}`: prompt id to entry, in the server's order (completion
/// order, oldest first), which a map type would lose.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History(pub Vec<(PromptId, HistoryEntry)>);

impl History {
    pub fn get(&self, prompt_id: &str) -> Option<&HistoryEntry> {
        self.0
            .iter()
            .find(|(id, _)| id == prompt_id)
            .map(|(_, e)| e)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PromptId, &HistoryEntry)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for History {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for History {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HistoryVisitor;
        impl<'de> Visitor<'de> for HistoryVisitor {
            type Value = History;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of prompt id to history entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<History, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<PromptId, HistoryEntry>()? {
                    out.push((k, v));
                }
                Ok(History(out))
            }
        }
        d.deserialize_map(HistoryVisitor)
    }
}

/// `POST /prompt` body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PromptRequest {
    pub prompt: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<PromptId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_data: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_execution_targets: Option<Vec<NodeId>>,
}

/// `POST /prompt` 200 body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptAccepted {
    pub prompt_id: PromptId,
    #[serde(default)]
    pub number: f64,
    /// Broken output branches that were dropped while the valid ones were queued.
    #[serde(default)]
    pub node_errors: BTreeMap<NodeId, NodeError>,
}

/// `POST /prompt` 400 body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRejected {
    pub error: ValidationError,
    #[serde(default)]
    pub node_errors: BTreeMap<NodeId, NodeError>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationError {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: String,
    #[serde(default)]
    pub extra_info: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeError {
    #[serde(default)]
    pub errors: Vec<ValidationError>,
    #[serde(default)]
    pub dependent_outputs: Vec<NodeId>,
    #[serde(default)]
    pub class_type: String,
}

impl ValidationError {
    /// One line a user can act on: the input it is about, what is wrong, and the details.
    pub fn describe(&self) -> String {
        let message = one_line(&self.message);
        let details = one_line(&self.details);
        let input = self.extra_info.get("input_name").and_then(Value::as_str);
        let mut line = match input {
            Some(input) => {
                let input = one_line(input);
                // Details often repeat the input name ("width", "upscale_method: ...").
                let rest = details
                    .strip_prefix(input.as_str())
                    .map(|r| r.trim_start_matches(':').trim())
                    .unwrap_or(&details);
                if rest.is_empty() {
                    format!("input '{input}': {message}")
                } else {
                    format!("input '{input}': {message} ({rest})")
                }
            }
            None if details.is_empty() || details == message => message,
            None => format!("{message}: {details}"),
        };
        if let Some(kind) = self
            .extra_info
            .get("exception_type")
            .and_then(Value::as_str)
        {
            line.push_str(&format!(" [{}]", one_line(kind)));
        }
        line
    }
}

/// One line per input error: `node 2 (ImageScale): input 'upscale_method': Value not in list (...)`.
pub fn describe_node_errors(node_errors: &BTreeMap<NodeId, NodeError>) -> Vec<String> {
    let mut lines = Vec::new();
    for (id, node) in node_errors {
        let node_name = if node.class_type.is_empty() {
            format!("node {}", one_line(id))
        } else {
            format!("node {} ({})", one_line(id), one_line(&node.class_type))
        };
        if node.errors.is_empty() {
            lines.push(format!("{node_name}: invalid"));
        }
        for error in &node.errors {
            lines.push(format!("{node_name}: {}", error.describe()));
        }
    }
    lines
}

impl PromptRejected {
    /// What the server refused and why, one line per node input error.
    pub fn describe(&self) -> String {
        let message = one_line(&self.error.message);
        let details = one_line(&self.error.details);
        let mut text = if details.is_empty() || details == message {
            message
        } else {
            format!("{message} ({details})")
        };
        for line in describe_node_errors(&self.node_errors) {
            text.push_str("\n  - ");
            text.push_str(&line);
        }
        text
    }
}

impl PromptAccepted {
    /// When some output branches failed validation and were dropped (the rest was queued), what
    /// was dropped and why.
    pub fn dropped_outputs(&self) -> Option<String> {
        if self.node_errors.is_empty() {
            return None;
        }
        let outputs: BTreeSet<&str> = self
            .node_errors
            .values()
            .flat_map(|e| e.dependent_outputs.iter().map(String::as_str))
            .collect();
        let outputs: Vec<&str> = outputs.into_iter().collect();
        let mut text = format!(
            "queued without output node(s) {}, which failed validation:",
            one_line(&outputs.join(", "))
        );
        for line in describe_node_errors(&self.node_errors) {
            text.push_str("\n  - ");
            text.push_str(&line);
        }
        Some(text)
    }
}

/// Server text made safe for one terminal line.
fn one_line(text: &str) -> String {
    crate::text::one_line(text).into_owned()
}

/// `POST /queue` body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct QueueChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<Vec<PromptId>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clear: bool,
}

/// `POST /free` body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FreeRequest {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unload_models: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_memory: bool,
}

/// `GET /system_stats`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemStats {
    #[serde(default)]
    pub system: SystemInfo,
    #[serde(default)]
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemInfo {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub ram_total: u64,
    #[serde(default)]
    pub ram_free: u64,
    #[serde(default)]
    pub comfyui_version: String,
    #[serde(default)]
    pub python_version: String,
    #[serde(default)]
    pub pytorch_version: String,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Device {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub vram_total: u64,
    #[serde(default)]
    pub vram_free: u64,
    #[serde(default)]
    pub torch_vram_total: u64,
    #[serde(default)]
    pub torch_vram_free: u64,
}

/// `GET /internal/logs/raw`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RawLogs {
    #[serde(default)]
    pub entries: Vec<super::protocol::LogEntry>,
    #[serde(default)]
    pub size: Option<super::protocol::TerminalSize>,
}
