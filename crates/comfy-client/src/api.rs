//! Serde types of the HTTP API's request and response bodies, shared by the client and the
//! simulated server.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
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

/// Nodes of a prompt's graph kept in its summary, in the order the server lists them.
pub const NODES_KEPT: usize = 1000;
/// Past [`NODES_KEPT`], the first node of each class type not kept yet is kept too, up to this
/// many more: the one `PreviewImage` after 330,000 `EmptyImage` nodes still gets its name.
pub const NEW_CLASS_NODES_KEPT: usize = 100;
/// Upstream links kept per node.
pub const LINKS_KEPT: usize = 64;
/// Longest node id, class type or client id kept.
pub const NAME_KEPT: usize = 256;
/// Longest node title (`_meta.title`) kept.
pub const TITLE_KEPT: usize = 256;
/// Longest string kept from status messages and node outputs: exception messages, traceback
/// entries, input values.
pub const ERROR_TEXT_KEPT: usize = 64 * 1024;
/// Items kept of any list or map in status messages, node outputs and `extra_data`.
pub const ITEMS_KEPT: usize = 256;
/// Longest string kept from `extra_data` (only `client_id` is needed from it).
pub const EXTRA_TEXT_KEPT: usize = 1024;

/// Cuts `text` to `max_chars` characters, saying how many were left out. Text already cut
/// (while it was read, say) is cut again with the count of both cuts.
pub fn cut_text(text: &str, max_chars: usize) -> String {
    let (head, left_out_before) = split_cut_note(text);
    match head.char_indices().nth(max_chars) {
        Some((end, _)) => {
            let left_out = head[end..].chars().count() + left_out_before;
            format!("{}… ({left_out} more characters)", &head[..end])
        }
        None => text.to_string(),
    }
}

/// Whether `text` is at most `max_chars` long, or was already cut there (or shorter) by
/// [`cut_text`].
pub fn fits_or_was_cut(text: &str, max_chars: usize) -> bool {
    split_cut_note(text).0.chars().count() <= max_chars
}

/// The text before a note "… (N more characters)" at its end, and N; the whole text and 0 when
/// it has no such note.
fn split_cut_note(text: &str) -> (&str, usize) {
    let cut = text.strip_suffix(" more characters)").and_then(|rest| {
        let (head, count) = rest.rsplit_once("… (")?;
        let all_digits = !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit());
        Some((head, count.parse().ok().filter(|_| all_digits)?))
    });
    cut.unwrap_or((text, 0))
}

/// What the view needs of one node of a prompt's graph.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeSummary {
    pub class_type: String,
    /// `_meta.title`, when the workflow has one.
    pub title: Option<String>,
    /// Ids of the nodes its inputs link to, in input order.
    pub links: Vec<NodeId>,
}

impl NodeSummary {
    /// `_meta.title` when the workflow has one, else the class type.
    pub fn title(&self) -> &str {
        self.title
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.class_type)
    }
}

/// What the view keeps of a prompt's graph: a summary of at most [`NODES_KEPT`] +
/// [`NEW_CLASS_NODES_KEPT`] nodes, and how many nodes it has. Read from `/queue` and `/history`
/// without building the graph, which can be tens of megabytes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptGraph {
    pub nodes: BTreeMap<NodeId, NodeSummary>,
    /// Every node of the graph, kept or not.
    pub node_count: usize,
}

impl PromptGraph {
    pub fn get(&self, id: &str) -> Option<&NodeSummary> {
        self.nodes.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.node_count == 0
    }

    /// Some nodes were left out of the summary.
    pub fn is_truncated(&self) -> bool {
        self.nodes.len() < self.node_count
    }

    /// The summary of a graph held as JSON (a request this client built).
    pub fn from_value(prompt: &Value) -> Self {
        serde_json::from_value(prompt.clone()).unwrap_or_default()
    }
}

/// Written back as a minimal API graph (class type, title, links), which reads back the same.
impl Serialize for PromptGraph {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.nodes.len()))?;
        for (id, node) in &self.nodes {
            let inputs: Map<String, Value> = node
                .links
                .iter()
                .enumerate()
                .map(|(i, up)| (format!("link{i}"), serde_json::json!([up, 0])))
                .collect();
            let mut entry = Map::new();
            entry.insert("class_type".into(), Value::from(node.class_type.as_str()));
            entry.insert("inputs".into(), Value::Object(inputs));
            if let Some(title) = &node.title {
                entry.insert("_meta".into(), serde_json::json!({ "title": title }));
            }
            map.serialize_entry(id, &entry)?;
        }
        map.end()
    }
}

/// Visitor methods that accept any other JSON type, skip it and give the default (`None`), so
/// a summary never fails on a shape it does not expect.
macro_rules! skip_other_types {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

macro_rules! skip_strings {
    () => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

macro_rules! skip_seqs {
    () => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

macro_rules! skip_maps {
    () => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Default::default())
        }
    };
}

/// A string cut to `max_chars`; `None` for any other type.
#[derive(Clone, Copy)]
struct TextSeed {
    max_chars: usize,
}

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextSeed {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(cut_text(text, self.max_chars)))
    }
    skip_other_types!();
    skip_seqs!();
    skip_maps!();
}

/// The upstream node id of a link (`[node_id, output_index]`); `None` for any other value,
/// skipped without being copied (a 50 MB string input costs nothing).
struct LinkSeed;

impl<'de> DeserializeSeed<'de> for LinkSeed {
    type Value = Option<NodeId>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LinkSeed {
    type Value = Option<NodeId>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a link or an input value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let id = seq.next_element_seed(TextSeed {
            max_chars: NAME_KEPT,
        })?;
        let index = seq.next_element_seed(IndexSeed)?;
        let mut more = false;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            more = true;
        }
        Ok(match (id, index, more) {
            (Some(Some(id)), Some(true), false) => Some(id),
            _ => None,
        })
    }
    skip_other_types!();
    skip_strings!();
    skip_maps!();
}

/// Whether a value is an integer (an output index).
struct IndexSeed;

impl<'de> DeserializeSeed<'de> for IndexSeed {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IndexSeed {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an output index")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    skip_strings!();
    skip_seqs!();
    skip_maps!();
}

/// The upstream ids of a node's `inputs`, at most [`LINKS_KEPT`].
struct LinksSeed;

impl<'de> DeserializeSeed<'de> for LinksSeed {
    type Value = Vec<NodeId>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LinksSeed {
    type Value = Vec<NodeId>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map of inputs")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut links = Vec::new();
        while map.next_key::<IgnoredAny>()?.is_some() {
            if let Some(up) = map.next_value_seed(LinkSeed)?
                && links.len() < LINKS_KEPT
            {
                links.push(up);
            }
        }
        Ok(links)
    }
    skip_other_types!();
    skip_strings!();
    skip_seqs!();
}

/// The keys of a node the summary reads; the rest are skipped.
enum NodeKey {
    ClassType,
    Inputs,
    Meta,
    Title,
    Other,
}

impl<'de> Deserialize<'de> for NodeKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = NodeKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<NodeKey, E> {
                Ok(match key {
                    "class_type" => NodeKey::ClassType,
                    "inputs" => NodeKey::Inputs,
                    "_meta" => NodeKey::Meta,
                    "title" => NodeKey::Title,
                    _ => NodeKey::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// `_meta.title`.
struct MetaSeed;

impl<'de> DeserializeSeed<'de> for MetaSeed {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetaSeed {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a _meta map")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut title = None;
        while let Some(key) = map.next_key::<NodeKey>()? {
            match key {
                NodeKey::Title => {
                    title = map.next_value_seed(TextSeed {
                        max_chars: TITLE_KEPT,
                    })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(title)
    }
    skip_other_types!();
    skip_strings!();
    skip_seqs!();
}

/// One node; `None` when it has no string `class_type` (not a node).
struct NodeSeed;

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Option<NodeSummary>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed {
    type Value = Option<NodeSummary>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a node")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut class_type = None;
        let mut node = NodeSummary::default();
        while let Some(key) = map.next_key::<NodeKey>()? {
            match key {
                NodeKey::ClassType => {
                    class_type = map.next_value_seed(TextSeed {
                        max_chars: NAME_KEPT,
                    })?
                }
                NodeKey::Inputs => node.links = map.next_value_seed(LinksSeed)?,
                NodeKey::Meta => node.title = map.next_value_seed(MetaSeed)?,
                NodeKey::Title | NodeKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(class_type.map(|class_type| NodeSummary { class_type, ..node }))
    }
    skip_other_types!();
    skip_strings!();
    skip_seqs!();
}

impl<'de> Deserialize<'de> for PromptGraph {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct GraphVisitor;
        impl<'de> Visitor<'de> for GraphVisitor {
            type Value = PromptGraph;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an API workflow")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PromptGraph, A::Error> {
                let mut graph = PromptGraph::default();
                let mut classes_kept: HashSet<String> = HashSet::new();
                let mut past_the_cap = 0;
                let name = TextSeed {
                    max_chars: NAME_KEPT,
                };
                while let Some(id) = map.next_key_seed(name)? {
                    let Some(node) = map.next_value_seed(NodeSeed)? else {
                        continue;
                    };
                    let Some(id) = id else { continue };
                    graph.node_count += 1;
                    let keep = if graph.nodes.len() < NODES_KEPT {
                        true
                    } else if past_the_cap < NEW_CLASS_NODES_KEPT
                        && !classes_kept.contains(&node.class_type)
                    {
                        past_the_cap += 1;
                        true
                    } else {
                        false
                    };
                    if keep {
                        classes_kept.insert(node.class_type.clone());
                        graph.nodes.insert(id, node);
                    }
                }
                Ok(graph)
            }
            skip_other_types!();
            skip_strings!();
            skip_seqs!();
        }
        d.deserialize_any(GraphVisitor)
    }
}

/// Any JSON value, with every string cut to `max_chars` and every list or map to `max_items`:
/// what is kept of server data the view shows only in part (error messages, outputs).
#[derive(Clone, Copy)]
struct BoundedSeed {
    max_chars: usize,
    max_items: usize,
}

impl<'de> DeserializeSeed<'de> for BoundedSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundedSeed {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(cut_text(v, self.max_chars)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while items.len() < self.max_items {
            match seq.next_element_seed(self)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Map::new();
        let key = TextSeed {
            max_chars: self.max_chars,
        };
        while let Some(k) = map.next_key_seed(key)? {
            match k {
                Some(k) if entries.len() < self.max_items => {
                    let v = map.next_value_seed(self)?;
                    entries.insert(k, v);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(entries))
    }
}

/// Status messages with strings cut to [`ERROR_TEXT_KEPT`]; malformed ones are skipped.
fn bounded_messages<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Value)>, D::Error> {
    let seed = BoundedSeed {
        max_chars: ERROR_TEXT_KEPT,
        max_items: ITEMS_KEPT,
    };
    let Value::Array(items) = seed.deserialize(d)? else {
        return Ok(Vec::new());
    };
    Ok(items
        .into_iter()
        .filter_map(|item| match item {
            Value::Array(pair) => match <[Value; 2]>::try_from(pair) {
                Ok([Value::String(kind), data]) => Some((kind, data)),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

/// A map of node id to JSON, bounded like status messages.
fn bounded_node_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<NodeId, Value>, D::Error> {
    let seed = BoundedSeed {
        max_chars: ERROR_TEXT_KEPT,
        max_items: ITEMS_KEPT,
    };
    Ok(match seed.deserialize(d)? {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    })
}

/// Node outputs, bounded like status messages; an output that is not one is skipped.
fn bounded_outputs<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<NodeId, NodeOutput>, D::Error> {
    Ok(bounded_node_map(d)?
        .into_iter()
        .filter_map(|(id, output)| Some((id, serde_json::from_value(output).ok()?)))
        .collect())
}

/// `extra_data` as the summary keeps it: short strings, few entries.
struct BoundedExtra(Map<String, Value>);

impl<'de> Deserialize<'de> for BoundedExtra {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seed = BoundedSeed {
            max_chars: EXTRA_TEXT_KEPT,
            max_items: ITEMS_KEPT,
        };
        Ok(Self(match seed.deserialize(d)? {
            Value::Object(map) => map,
            _ => Map::new(),
        }))
    }
}

/// `outputs_to_execute`, at most [`NODES_KEPT`] ids.
struct BoundedIds(Vec<NodeId>);

impl<'de> Deserialize<'de> for BoundedIds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdsVisitor;
        impl<'de> Visitor<'de> for IdsVisitor {
            type Value = BoundedIds;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of node ids")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BoundedIds, A::Error> {
                let mut ids = Vec::new();
                let name = TextSeed {
                    max_chars: NAME_KEPT,
                };
                while let Some(id) = seq.next_element_seed(name)? {
                    if let Some(id) = id
                        && ids.len() < NODES_KEPT
                    {
                        ids.push(id);
                    }
                }
                Ok(BoundedIds(ids))
            }
        }
        d.deserialize_seq(IdsVisitor)
    }
}

/// One queue or history item: `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
///
/// As the client reads it (`QueueItem`), the graph is a bounded [`PromptGraph`] summary and
/// `extra_data` is bounded too; [`FullQueueItem`] keeps both whole (the simulated server, and a
/// requeue, which fetches the one graph it sends back).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem<P = PromptGraph> {
    /// Run order key: the queue is a min-heap on it (front items are negative).
    pub number: f64,
    pub prompt_id: PromptId,
    pub prompt: P,
    pub extra_data: Map<String, Value>,
    pub outputs_to_execute: Vec<NodeId>,
}

/// A queue item with its graph and `extra_data` exactly as queued.
pub type FullQueueItem = QueueItem<Value>;

impl<P> QueueItem<P> {
    /// Who queued it, from `extra_data.client_id`.
    pub fn client_id(&self) -> Option<&str> {
        self.extra_data.get("client_id").and_then(Value::as_str)
    }
}

impl<P: Serialize> Serialize for QueueItem<P> {
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

/// Reads `[number, prompt_id, prompt, extra_data, outputs_to_execute]` with the given types for
/// the last three.
struct ItemVisitor<P, X, O>(std::marker::PhantomData<(P, X, O)>);

type ItemParts<P, X, O> = (f64, PromptId, Option<P>, Option<X>, Option<O>);

impl<'de, P, X, O> Visitor<'de> for ItemVisitor<P, X, O>
where
    P: Deserialize<'de>,
    X: Deserialize<'de>,
    O: Deserialize<'de>,
{
    type Value = ItemParts<P, X, O>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("[number, prompt_id, prompt, extra_data, outputs_to_execute]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let number: f64 = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let prompt_id: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let prompt: Option<P> = seq.next_element()?;
        let extra_data: Option<X> = seq.next_element()?;
        let outputs: Option<O> = seq.next_element()?;
        // Newer servers may append more fields; skip them.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((number, prompt_id, prompt, extra_data, outputs))
    }
}

impl<'de> Deserialize<'de> for QueueItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (number, prompt_id, prompt, extra, outputs) =
            d.deserialize_seq(ItemVisitor::<PromptGraph, BoundedExtra, BoundedIds>(
                std::marker::PhantomData,
            ))?;
        Ok(QueueItem {
            number,
            prompt_id,
            prompt: prompt.unwrap_or_default(),
            extra_data: extra.map(|e| e.0).unwrap_or_default(),
            outputs_to_execute: outputs.map(|o| o.0).unwrap_or_default(),
        })
    }
}

impl<'de> Deserialize<'de> for FullQueueItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (number, prompt_id, prompt, extra, outputs) =
            d.deserialize_seq(ItemVisitor::<Value, Map<String, Value>, Vec<NodeId>>(
                std::marker::PhantomData,
            ))?;
        Ok(QueueItem {
            number,
            prompt_id,
            prompt: prompt.unwrap_or(Value::Null),
            extra_data: extra.unwrap_or_default(),
            outputs_to_execute: outputs.unwrap_or_default(),
        })
    }
}

/// `GET /queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "I: Deserialize<'de>"))]
pub struct QueueSnapshot<I = QueueItem> {
    #[serde(default = "Vec::new")]
    pub queue_running: Vec<I>,
    /// Heap order on the wire; [`QueueSnapshot::pending_in_run_order`] sorts it.
    #[serde(default = "Vec::new")]
    pub queue_pending: Vec<I>,
}

impl<I> Default for QueueSnapshot<I> {
    fn default() -> Self {
        Self {
            queue_running: Vec::new(),
            queue_pending: Vec::new(),
        }
    }
}

impl<P> QueueSnapshot<QueueItem<P>> {
    /// Pending items in the order the server will run them (ascending number).
    pub fn pending_in_run_order(&self) -> Vec<&QueueItem<P>> {
        let mut items: Vec<&QueueItem<P>> = self.queue_pending.iter().collect();
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

/// One finished prompt. As the client reads it, messages, outputs and meta are bounded (see
/// [`ERROR_TEXT_KEPT`], [`ITEMS_KEPT`]) and the graph is summarized; [`FullHistoryEntry`]
/// keeps the graph whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "I: Deserialize<'de>"))]
pub struct HistoryEntry<I = QueueItem> {
    pub prompt: I,
    #[serde(default, deserialize_with = "bounded_outputs")]
    pub outputs: BTreeMap<NodeId, NodeOutput>,
    #[serde(default)]
    pub status: Option<HistoryStatus>,
    #[serde(default, deserialize_with = "bounded_node_map")]
    pub meta: BTreeMap<NodeId, Value>,
}

/// A history entry with its graph and `extra_data` exactly as queued.
pub type FullHistoryEntry = HistoryEntry<FullQueueItem>;

impl<I> HistoryEntry<I> {
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
    #[serde(default, deserialize_with = "bounded_messages")]
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
#[derive(Debug, Clone, PartialEq)]
pub struct History<E = HistoryEntry>(pub Vec<(PromptId, E)>);

impl<E> Default for History<E> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<E> History<E> {
    pub fn get(&self, prompt_id: &str) -> Option<&E> {
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

    pub fn iter(&self) -> impl Iterator<Item = (&PromptId, &E)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<E: Serialize> Serialize for History<E> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, E: Deserialize<'de>> Deserialize<'de> for History<E> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HistoryVisitor<E>(std::marker::PhantomData<E>);
        impl<'de, E: Deserialize<'de>> Visitor<'de> for HistoryVisitor<E> {
            type Value = History<E>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of prompt id to history entry")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<History<E>, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<PromptId, E>()? {
                    out.push((k, v));
                }
                Ok(History(out))
            }
        }
        d.deserialize_map(HistoryVisitor(std::marker::PhantomData))
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

/// The version of the comfytop bridge's wire format this client speaks (see
/// [`super::protocol::Relayed`] and [`super::binary::RELAYED`]).
pub const BRIDGE_PROTOCOL: u32 = 1;

/// `GET /comfytop/bridge`: the comfytop bridge, a custom node that relays every prompt's
/// execution events to the clients that ask (`assets/bridge/` in comfytop's source).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BridgeInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub protocol: u32,
    /// False when it found this ComfyUI lacking a hook it needs; `reason` says which.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub watchers: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The `body` of a recorded reply, as the text the server sent.
    fn recorded_body(name: &str) -> String {
        let path = format!("{}/http/{name}.json", crate::FIXTURES);
        let text = std::fs::read_to_string(path).unwrap();
        let recorded: Value = serde_json::from_str(&text).unwrap();
        serde_json::to_string(&recorded["body"]).unwrap()
    }

    /// What the summary of a graph should hold, worked out from the whole graph.
    fn expected_summary(graph: &Value) -> PromptGraph {
        let mut expected = PromptGraph::default();
        for (id, node) in graph.as_object().unwrap() {
            let links = node["inputs"]
                .as_object()
                .map(|inputs| {
                    inputs
                        .values()
                        .filter_map(|v| match v.as_array()?.as_slice() {
                            [Value::String(up), index] if index.is_u64() => Some(up.clone()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let summary = NodeSummary {
                class_type: node["class_type"].as_str().unwrap().to_string(),
                title: node["_meta"]["title"].as_str().map(str::to_string),
                links,
            };
            expected.nodes.insert(id.clone(), summary);
            expected.node_count += 1;
        }
        expected
    }

    #[test]
    fn recorded_queue_items_are_summarized_node_for_node() {
        let body = recorded_body("get_queue_running_and_pending");
        let compact: QueueSnapshot = serde_json::from_str(&body).unwrap();
        let full: QueueSnapshot<FullQueueItem> = serde_json::from_str(&body).unwrap();
        let items = compact.queue_running.iter().chain(&compact.queue_pending);
        let full_items = full.queue_running.iter().chain(&full.queue_pending);
        let mut compared = 0;
        for (item, whole) in items.zip(full_items) {
            assert_eq!(item.prompt_id, whole.prompt_id);
            assert_eq!(item.number, whole.number);
            assert_eq!(item.client_id(), whole.client_id());
            assert_eq!(item.outputs_to_execute, whole.outputs_to_execute);
            assert_eq!(item.prompt, expected_summary(&whole.prompt));
            assert!(!item.prompt.is_truncated());
            compared += 1;
        }
        assert_eq!(compared, 4);
        // Some recorded nodes link to others, so links are really compared.
        assert!(
            compact.queue_running[0]
                .prompt
                .nodes
                .values()
                .any(|n| !n.links.is_empty())
        );
    }

    #[test]
    fn recorded_history_entries_keep_everything_small_bodies_have() {
        for name in [
            "get_history",
            "get_history_id_cached",
            "get_history_id_error",
            "get_history_id_interrupted",
            "get_history_id_success",
            "get_history_max_items_2",
        ] {
            let body = recorded_body(name);
            let compact: History = serde_json::from_str(&body).unwrap();
            let full: History<FullHistoryEntry> = serde_json::from_str(&body).unwrap();
            let whole: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(compact.len(), full.len(), "{name}");
            assert!(!compact.is_empty(), "{name}");
            for ((id, entry), (full_id, full_entry)) in compact.iter().zip(full.iter()) {
                assert_eq!(id, full_id);
                assert_eq!(
                    entry.prompt.prompt,
                    expected_summary(&full_entry.prompt.prompt)
                );
                assert_eq!(entry.outputs, full_entry.outputs, "{name} {id}");
                assert_eq!(entry.meta, full_entry.meta, "{name} {id}");
                let status = entry.status.as_ref().unwrap();
                let messages: Vec<(String, Value)> =
                    serde_json::from_value(whole[id]["status"]["messages"].clone()).unwrap();
                assert_eq!(status.messages, messages, "{name} {id}");
                assert_eq!(status.status_str, whole[id]["status"]["status_str"]);
            }
        }
    }

    /// `count` EmptyImage nodes, then one PreviewImage fed by the first; every node carries a
    /// long string input.
    fn big_graph(count: usize) -> Value {
        let mut graph = Map::new();
        let filler = "x".repeat(1000);
        for i in 1..=count {
            graph.insert(
                i.to_string(),
                json!({"class_type": "EmptyImage", "inputs": {"width": 8, "note": filler},
                       "_meta": {"title": format!("Empty {i}")}}),
            );
        }
        graph.insert(
            (count + 1).to_string(),
            json!({"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}),
        );
        Value::Object(graph)
    }

    #[test]
    fn a_huge_graph_keeps_a_bounded_summary_with_its_odd_one_out() {
        let count = 5 * NODES_KEPT;
        let item =
            json!([3, "p", big_graph(count), {"client_id": "other"}, [(count + 1).to_string()]]);
        let item: QueueItem = serde_json::from_str(&item.to_string()).unwrap();
        let graph = &item.prompt;
        assert_eq!(graph.node_count, count + 1);
        assert!(graph.is_truncated());
        assert!(graph.nodes.len() <= NODES_KEPT + NEW_CLASS_NODES_KEPT);
        // The output node comes after the cap, and is kept as the first of its class.
        let preview = graph.get(&(count + 1).to_string()).unwrap();
        assert_eq!(preview.class_type, "PreviewImage");
        assert_eq!(preview.links, ["1"]);
        assert_eq!(graph.get("1").unwrap().title(), "Empty 1");
        assert_eq!(item.client_id(), Some("other"));
    }

    #[test]
    fn strings_and_lists_are_cut_where_they_are_read() {
        let message = "é".repeat(ERROR_TEXT_KEPT + 500);
        let title = "t".repeat(TITLE_KEPT * 4);
        let links: Map<String, Value> = (0..LINKS_KEPT * 2)
            .map(|i| (format!("in{i}"), json!(["1", 0])))
            .collect();
        let entry = json!({
            "prompt": [1, "p", {"1": {"class_type": "LabRaiseError", "inputs": links,
                                       "_meta": {"title": title}}}, {}, ["1"]],
            "outputs": {},
            "status": {"status_str": "error", "completed": false, "messages": [
                ["execution_error", {"prompt_id": "p", "node_id": "1",
                 "exception_message": message,
                 "traceback": vec!["frame"; ITEMS_KEPT * 3]}],
                "not a message",
            ]},
        });
        let entry: HistoryEntry = serde_json::from_str(&entry.to_string()).unwrap();
        let node = entry.prompt.prompt.get("1").unwrap();
        assert_eq!(
            node.title().chars().count(),
            TITLE_KEPT + "… (768 more characters)".chars().count()
        );
        assert!(node.title().ends_with("… (768 more characters)"));
        assert_eq!(node.links.len(), LINKS_KEPT);
        let status = entry.status.unwrap();
        assert_eq!(status.messages.len(), 1, "the malformed one is skipped");
        let data = &status.messages[0].1;
        let kept = data["exception_message"].as_str().unwrap();
        assert!(
            kept.ends_with("… (500 more characters)"),
            "{}",
            &kept[kept.len() - 40..]
        );
        assert!(fits_or_was_cut(kept, ERROR_TEXT_KEPT));
        assert!(!fits_or_was_cut(&message, ERROR_TEXT_KEPT));
        assert_eq!(data["traceback"].as_array().unwrap().len(), ITEMS_KEPT);
    }

    #[test]
    fn a_summary_written_back_reads_the_same() {
        let body = recorded_body("get_queue_running_and_pending");
        let snapshot: QueueSnapshot = serde_json::from_str(&body).unwrap();
        let again: QueueSnapshot =
            serde_json::from_value(serde_json::to_value(&snapshot).unwrap()).unwrap();
        assert_eq!(again, snapshot);
    }
}
