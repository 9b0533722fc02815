//! Serde types of every JSON message a ComfyUI server sends over its WebSocket.
//!
//! Each message is an envelope `{"type": <string>, "data": <object>}`. Known types decode into
//! typed structs; anything else (custom nodes send their own) is kept whole as
//! [`ServerMessage::Unknown`]. Unknown fields are ignored, missing optional fields default, and
//! numbers may be ints or floats. Serialization writes the same shape the real server writes, so
//! the simulated server uses these types too.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub type NodeId = String;
pub type PromptId = String;

/// One decoded JSON message.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Status(Status),
    FeatureFlags(FeatureFlags),
    ExecutionStart(ExecutionStart),
    ExecutionCached(ExecutionCached),
    Executing(Executing),
    Executed(Executed),
    Progress(Progress),
    ProgressState(ProgressState),
    ExecutionSuccess(ExecutionSuccess),
    ExecutionError(ExecutionError),
    ExecutionInterrupted(ExecutionInterrupted),
    Logs(Logs),
    /// A copy of a message ComfyUI sent to another client, relayed by the comfytop bridge.
    Relayed(Relayed),
    /// A type this client does not know (custom nodes), kept as it came.
    Unknown {
        kind: String,
        data: Value,
    },
}

/// Why a text frame could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    #[error("text frame is not JSON: {0}")]
    NotJson(String),
    #[error("text frame has no string \"type\" field")]
    NoType,
    #[error("\"{kind}\" message has an unexpected shape: {reason}")]
    BadData { kind: String, reason: String },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// A message's data: the text of a frame, or a tree already parsed (a history entry's).
enum Data<'a> {
    Text(&'a str),
    Tree(Value),
}

impl Data<'_> {
    fn typed<T: DeserializeOwned>(self, kind: &str) -> Result<T, MessageError> {
        match self {
            Self::Text(text) => serde_json::from_str(text),
            Self::Tree(tree) => serde_json::from_value(tree),
        }
        .map_err(|e| MessageError::BadData {
            kind: kind.to_string(),
            reason: e.to_string(),
        })
    }

    fn tree(self) -> Result<Value, MessageError> {
        match self {
            Self::Text(text) => {
                serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))
            }
            Self::Tree(tree) => Ok(tree),
        }
    }
}

impl ServerMessage {
    /// Decodes one text frame.
    pub fn from_json(text: &str) -> Result<Self, MessageError> {
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|e| MessageError::NotJson(e.to_string()))?;
        let Some(Value::String(kind)) = envelope.kind else {
            return Err(MessageError::NoType);
        };
        // Straight from the text into its type: with a `Value` tree in between, a recorded
        // run took twice as long to decode.
        let data = envelope.data.map_or("null", RawValue::get);
        Self::decode(kind, Data::Text(data))
    }

    /// Decodes a message from its type and data, as found in a history entry's
    /// `status.messages` list.
    pub fn from_parts(kind: String, data: Value) -> Result<Self, MessageError> {
        Self::decode(kind, Data::Tree(data))
    }

    fn decode(kind: String, data: Data<'_>) -> Result<Self, MessageError> {
        let k = kind.as_str();
        Ok(match k {
            "status" => Self::Status(data.typed(k)?),
            "feature_flags" => Self::FeatureFlags(data.typed(k)?),
            "execution_start" => Self::ExecutionStart(data.typed(k)?),
            "execution_cached" => Self::ExecutionCached(data.typed(k)?),
            "executing" => Self::Executing(data.typed(k)?),
            "executed" => Self::Executed(data.typed(k)?),
            "progress" => Self::Progress(data.typed(k)?),
            "progress_state" => Self::ProgressState(data.typed(k)?),
            "execution_success" => Self::ExecutionSuccess(data.typed(k)?),
            "execution_error" => Self::ExecutionError(data.typed(k)?),
            "execution_interrupted" => Self::ExecutionInterrupted(data.typed(k)?),
            "logs" => Self::Logs(data.typed(k)?),
            RELAYED => Self::Relayed(Relayed::from_data(data.tree()?)?),
            _ => Self::Unknown {
                data: data.tree()?,
                kind,
            },
        })
    }

    /// The wire name of the message type.
    pub fn kind(&self) -> &str {
        match self {
            Self::Status(_) => "status",
            Self::FeatureFlags(_) => "feature_flags",
            Self::ExecutionStart(_) => "execution_start",
            Self::ExecutionCached(_) => "execution_cached",
            Self::Executing(_) => "executing",
            Self::Executed(_) => "executed",
            Self::Progress(_) => "progress",
            Self::ProgressState(_) => "progress_state",
            Self::ExecutionSuccess(_) => "execution_success",
            Self::ExecutionError(_) => "execution_error",
            Self::ExecutionInterrupted(_) => "execution_interrupted",
            Self::Logs(_) => "logs",
            Self::Relayed(_) => RELAYED,
            Self::Unknown { kind, .. } => kind,
        }
    }

    /// The `data` object as the server would send it.
    pub fn data(&self) -> Value {
        fn to<T: Serialize>(v: &T) -> Value {
            // Serializing these plain structs cannot fail: no maps with non-string keys.
            serde_json::to_value(v).unwrap_or(Value::Null)
        }
        match self {
            Self::Status(m) => to(m),
            Self::FeatureFlags(m) => to(m),
            Self::ExecutionStart(m) => to(m),
            Self::ExecutionCached(m) => to(m),
            Self::Executing(m) => to(m),
            Self::Executed(m) => to(m),
            Self::Progress(m) => to(m),
            Self::ProgressState(m) => to(m),
            Self::ExecutionSuccess(m) => to(m),
            Self::ExecutionError(m) => to(m),
            Self::ExecutionInterrupted(m) => to(m),
            Self::Logs(m) => to(m),
            Self::Relayed(m) => serde_json::json!({
                "owner": m.owner,
                "type": m.message.kind(),
                "data": m.message.data(),
            }),
            Self::Unknown { data, .. } => data.clone(),
        }
    }

    /// The whole envelope `{"type", "data"}` as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::json!({ "type": self.kind(), "data": self.data() })
    }

    /// The whole envelope as a text frame.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    /// The prompt this message is about, when it names one.
    pub fn prompt_id(&self) -> Option<&str> {
        match self {
            Self::ExecutionStart(m) => Some(&m.prompt_id),
            Self::ExecutionCached(m) => Some(&m.prompt_id),
            Self::Executing(m) => m.prompt_id.as_deref(),
            Self::Executed(m) => m.prompt_id.as_deref(),
            Self::Progress(m) => m.prompt_id.as_deref(),
            Self::ProgressState(m) => Some(&m.prompt_id),
            Self::ExecutionSuccess(m) => Some(&m.prompt_id),
            Self::ExecutionError(m) => Some(&m.prompt_id),
            Self::ExecutionInterrupted(m) => Some(&m.prompt_id),
            Self::Relayed(m) => m.message.prompt_id(),
            Self::Status(_) | Self::FeatureFlags(_) | Self::Logs(_) | Self::Unknown { .. } => None,
        }
    }
}

/// The wire name of a message the comfytop bridge relays (see [`Relayed`]).
pub const RELAYED: &str = "comfytop_bridge";

/// `comfytop_bridge`: `{"owner": <client id>, "type": <event>, "data": <its data>}`, a copy of
/// an execution event ComfyUI sent to the client `owner`, relayed by the comfytop bridge (a
/// custom node, see `assets/bridge/`) to the clients that asked to watch every prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Relayed {
    pub owner: String,
    pub message: Box<ServerMessage>,
}

impl Relayed {
    fn from_data(data: Value) -> Result<Self, MessageError> {
        let bad = |reason: &str| MessageError::BadData {
            kind: RELAYED.to_string(),
            reason: reason.to_string(),
        };
        let Value::Object(mut fields) = data else {
            return Err(bad("data is not an object"));
        };
        let Some(Value::String(owner)) = fields.remove("owner") else {
            return Err(bad("no string \"owner\""));
        };
        let Some(Value::String(kind)) = fields.remove("type") else {
            return Err(bad("no string \"type\""));
        };
        if kind == RELAYED {
            return Err(bad("a relayed message holds another relayed message"));
        }
        let inner = fields.remove("data").unwrap_or(Value::Null);
        Ok(Self {
            owner,
            message: Box::new(ServerMessage::from_parts(kind, inner)?),
        })
    }
}

impl ServerMessage {
    /// The message itself, and whose prompt it is about when the bridge relayed it.
    pub fn unrelayed(&self) -> (&ServerMessage, Option<&str>) {
        match self {
            Self::Relayed(r) => (&r.message, Some(&r.owner)),
            message => (message, None),
        }
    }
}

/// Numbers on the wire may be ints or floats; whole values are written back as ints, as the
/// server writes them.
mod number {
    use serde::Serializer;

    pub fn ser<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            s.serialize_i64(*v as i64)
        } else {
            s.serialize_f64(*v)
        }
    }

    pub fn ser_opt<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => ser(v, s),
            None => s.serialize_none(),
        }
    }
}

/// `status`: broadcast on every queue change, with `sid` in the first one after connect.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub status: StatusBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Status {
    pub fn queue_remaining(&self) -> u64 {
        self.status.exec_info.queue_remaining
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StatusBody {
    #[serde(default)]
    pub exec_info: ExecInfo,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExecInfo {
    /// Pending plus running prompts.
    #[serde(default)]
    pub queue_remaining: u64,
}

/// `feature_flags`: the server's capabilities, answering ours. Kept as a map since servers add
/// flags over time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FeatureFlags(pub Map<String, Value>);

impl FeatureFlags {
    pub fn supports_preview_metadata(&self) -> bool {
        self.0
            .get("supports_preview_metadata")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn max_upload_size(&self) -> Option<u64> {
        self.0.get("max_upload_size").and_then(Value::as_u64)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStart {
    pub prompt_id: PromptId,
    /// Milliseconds since the epoch, server clock.
    #[serde(default, serialize_with = "number::ser_opt")]
    pub timestamp: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionCached {
    #[serde(default)]
    pub nodes: Vec<NodeId>,
    pub prompt_id: PromptId,
    #[serde(default, serialize_with = "number::ser_opt")]
    pub timestamp: Option<f64>,
}

/// `executing`: a node started; `node: None` means the prompt is over. On reconnect of the owner
/// the server sends only `node`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executing {
    #[serde(default)]
    pub node: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_node: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<PromptId>,
}

/// `executed`: a node with UI output finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Executed {
    pub node: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_node: Option<NodeId>,
    #[serde(default)]
    pub output: Option<NodeOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_id: Option<PromptId>,
}

/// A node's UI output: images are typed, every other key (text, audio, animated, ...) is kept.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NodeOutput {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageRef>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A file the server can serve through `/view`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    pub filename: String,
    #[serde(default)]
    pub subfolder: String,
    /// `output`, `temp` or `input`.
    #[serde(rename = "type", default = "default_folder")]
    pub folder: String,
}

fn default_folder() -> String {
    "output".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    #[serde(serialize_with = "number::ser")]
    pub value: f64,
    #[serde(serialize_with = "number::ser")]
    pub max: f64,
    #[serde(default)]
    pub prompt_id: Option<PromptId>,
    #[serde(default)]
    pub node: Option<NodeId>,
}

/// `progress_state`: a snapshot of every node of the prompt that is no longer pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressState {
    pub prompt_id: PromptId,
    #[serde(default)]
    pub nodes: BTreeMap<NodeId, NodeProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeProgress {
    #[serde(default, serialize_with = "number::ser")]
    pub value: f64,
    #[serde(default, serialize_with = "number::ser")]
    pub max: f64,
    #[serde(default)]
    pub state: NodeRunState,
    #[serde(default)]
    pub node_id: NodeId,
    #[serde(default)]
    pub prompt_id: PromptId,
    #[serde(default)]
    pub display_node_id: Option<NodeId>,
    #[serde(default)]
    pub parent_node_id: Option<NodeId>,
    #[serde(default)]
    pub real_node_id: Option<NodeId>,
}

/// A node's state in `progress_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRunState {
    #[default]
    Pending,
    Running,
    Finished,
    Error,
    /// A state a newer server might add.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSuccess {
    pub prompt_id: PromptId,
    #[serde(default, serialize_with = "number::ser_opt")]
    pub timestamp: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionError {
    pub prompt_id: PromptId,
    #[serde(default)]
    pub node_id: Option<NodeId>,
    #[serde(default)]
    pub node_type: Option<String>,
    #[serde(default)]
    pub executed: Vec<NodeId>,
    #[serde(default)]
    pub exception_message: String,
    #[serde(default)]
    pub exception_type: String,
    #[serde(default)]
    pub traceback: Vec<String>,
    /// Input name to a list of `repr()` strings of its values.
    #[serde(default)]
    pub current_inputs: Map<String, Value>,
    #[serde(default)]
    pub current_outputs: Value,
    #[serde(default, serialize_with = "number::ser_opt")]
    pub timestamp: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInterrupted {
    pub prompt_id: PromptId,
    #[serde(default)]
    pub node_id: Option<NodeId>,
    #[serde(default)]
    pub node_type: Option<String>,
    #[serde(default)]
    pub executed: Vec<NodeId>,
    #[serde(default, serialize_with = "number::ser_opt")]
    pub timestamp: Option<f64>,
}

/// `logs`: server log lines, for clients that subscribed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logs {
    #[serde(default)]
    pub entries: Vec<LogEntry>,
    #[serde(default)]
    pub size: Option<TerminalSize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Local ISO time on the server.
    #[serde(default)]
    pub t: String,
    #[serde(default)]
    pub m: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub cols: u32,
    pub rows: u32,
}

/// The first message a client sends: its own feature flags.
pub fn client_feature_flags() -> String {
    serde_json::json!({
        "type": "feature_flags",
        "data": { "supports_preview_metadata": true }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_is_kept_whole() {
        let m =
            ServerMessage::from_json(r#"{"type":"crystools.monitor","data":{"cpu":3.5}}"#).unwrap();
        assert_eq!(m.kind(), "crystools.monitor");
        assert_eq!(m.data(), serde_json::json!({"cpu": 3.5}));
    }

    #[test]
    fn reconnect_executing_has_no_prompt_id() {
        let m = ServerMessage::from_json(r#"{"type":"executing","data":{"node":"3"}}"#).unwrap();
        let ServerMessage::Executing(e) = &m else {
            panic!("not executing: {m:?}")
        };
        assert_eq!(e.node.as_deref(), Some("3"));
        assert!(e.prompt_id.is_none());
        assert_eq!(m.to_value()["data"], serde_json::json!({"node": "3"}));
    }

    #[test]
    fn ints_and_floats_both_decode_and_whole_values_encode_as_ints() {
        let m = ServerMessage::from_json(
            r#"{"type":"progress","data":{"value":1.0,"max":6,"prompt_id":"p","node":"1"}}"#,
        )
        .unwrap();
        let ServerMessage::Progress(p) = &m else {
            panic!()
        };
        assert_eq!((p.value, p.max), (1.0, 6.0));
        assert_eq!(m.to_value()["data"]["value"], serde_json::json!(1));
    }

    #[test]
    fn known_type_with_wrong_shape_is_an_error_not_unknown() {
        let err = ServerMessage::from_json(r#"{"type":"progress","data":{"value":"x"}}"#);
        assert!(matches!(err, Err(MessageError::BadData { .. })), "{err:?}");
        assert!(ServerMessage::from_json("[1,2]").is_err());
        assert!(ServerMessage::from_json("{}").is_err());
        assert!(ServerMessage::from_json("not json").is_err());
    }

    #[test]
    fn a_relayed_message_decodes_its_inner_message_and_owner() {
        let text = r#"{"type":"comfytop_bridge","data":{"owner":"tab-1","type":"progress","data":{"value":3,"max":20,"prompt_id":"p1","node":"3"}}}"#;
        let m = ServerMessage::from_json(text).unwrap();
        assert_eq!(m.kind(), "comfytop_bridge");
        assert_eq!(m.prompt_id(), Some("p1"));
        let (inner, owner) = m.unrelayed();
        assert_eq!(owner, Some("tab-1"));
        let ServerMessage::Progress(p) = inner else {
            panic!("not progress: {inner:?}")
        };
        assert_eq!((p.value, p.max), (3.0, 20.0));
        // Written back the way the bridge writes it.
        assert_eq!(ServerMessage::from_json(&m.to_json()).unwrap(), m);
        let plain = ServerMessage::from_json(r#"{"type":"status","data":{}}"#).unwrap();
        assert_eq!(plain.unrelayed(), (&plain, None));
    }

    /// A frame's text and a history entry's tree are decoded by two paths; on every text frame
    /// ComfyUI sent in the recorded transcripts, and on data that is missing, null or of the
    /// wrong shape, they agree.
    #[test]
    fn a_frame_decodes_as_its_parsed_tree_does() {
        let dir = format!("{}/transcripts", crate::FIXTURES);
        let mut texts = vec![
            r#"{"type":"progress"}"#.to_string(),
            r#"{"type":"progress","data":null}"#.to_string(),
            r#"{"type":"my.node"}"#.to_string(),
            r#"{"type":"status","data":[1]}"#.to_string(),
            r#"{"type":"executing","data":{"node":null,"prompt_id":"p","extra":{"deep":[1,2.5]}}}"#
                .to_string(),
        ];
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "jsonl") {
                continue;
            }
            files += 1;
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let record: Value = serde_json::from_str(line).unwrap();
                if record["kind"] == "text" {
                    texts.push(record["data"].to_string());
                }
            }
        }
        assert!(
            files >= 10 && texts.len() > 300,
            "{files} files, {}",
            texts.len()
        );
        for text in &texts {
            let tree: Value = serde_json::from_str(text).unwrap();
            let kind = tree["type"].as_str().unwrap().to_string();
            let from_tree = ServerMessage::from_parts(kind, tree["data"].clone());
            let from_text = ServerMessage::from_json(text);
            match (&from_text, &from_tree) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
                (Err(MessageError::BadData { .. }), Err(MessageError::BadData { .. })) => {}
                _ => panic!("{text}: {from_text:?} against {from_tree:?}"),
            }
        }
    }

    #[test]
    fn a_relayed_message_without_owner_or_inside_another_is_bad_data() {
        for text in [
            r#"{"type":"comfytop_bridge","data":{"type":"progress","data":{}}}"#,
            r#"{"type":"comfytop_bridge","data":{"owner":"a","data":{}}}"#,
            r#"{"type":"comfytop_bridge","data":[1]}"#,
            r#"{"type":"comfytop_bridge","data":{"owner":"a","type":"comfytop_bridge","data":{"owner":"b","type":"status","data":{}}}}"#,
            r#"{"type":"comfytop_bridge","data":{"owner":"a","type":"progress","data":{"value":"x"}}}"#,
        ] {
            let err = ServerMessage::from_json(text);
            assert!(
                matches!(err, Err(MessageError::BadData { .. })),
                "{text}: {err:?}"
            );
        }
        // An unknown relayed type is kept, as it would be unrelayed.
        let m = ServerMessage::from_json(
            r#"{"type":"comfytop_bridge","data":{"owner":"a","type":"my.node","data":{"k":1}}}"#,
        )
        .unwrap();
        assert_eq!(m.unrelayed().0.kind(), "my.node");
    }
}
