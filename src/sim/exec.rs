//! The worker: takes prompts from the queue one at a time and runs them the way ComfyUI's
//! `PromptExecutor` does: the same node order (its `ExecutionList` and "UX-friendly" pick), the
//! same output cache between prompts, and the same messages to the same sockets.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use super::hub::Target;
use super::nodes::{self, Data, InputValue, Inputs, NodeFailure};
use super::queue::{KeyOrder, Pending};
use super::registry::{NodeType, registry};
use super::state::{ExecView, InterruptWatch, Sim};
use super::{logbook::epoch_millis, pyfmt};
use crate::comfy::api::{HistoryEntry, HistoryStatus};
use crate::comfy::binary::{BinaryFrame, ImageFormat, PreviewImage, PreviewMetadata};
use crate::comfy::protocol::{
    Executed, Executing, ExecutionCached, ExecutionError, ExecutionInterrupted, ExecutionStart,
    ExecutionSuccess, NodeId, NodeOutput, NodeProgress, NodeRunState, Progress, ProgressState,
    ServerMessage,
};

/// Graph depth at which signatures stop following links (validation rejects deeper graphs).
const MAX_DEPTH: usize = 256;

/// The worker task: runs until the simulator shuts down (the task is then aborted).
pub(crate) async fn run_worker(sim: Arc<Sim>) {
    let mut cache = OutputCache::default();
    loop {
        let pending = loop {
            apply_free_flags(&sim, &mut cache);
            if let Some(p) = sim.start_next() {
                break p;
            }
            sim.work_ready.notified().await;
        };
        let started = Instant::now();
        let client_id = pending
            .item
            .extra_data
            .get("client_id")
            .filter(|c| !c.is_null())
            .map(pyfmt::str);
        let outcome = execute(&sim, &mut cache, &pending, client_id.clone()).await;
        sim.finish(outcome);
        if let Some(client) = &client_id {
            let done = ServerMessage::Executing(Executing {
                node: None,
                display_node: None,
                prompt_id: Some(pending.item.prompt_id.clone()),
            });
            sim.hub.send_message(Target::Client(client), &done);
        }
        sim.log(&format!(
            "Prompt executed in {:.2} seconds",
            started.elapsed().as_secs_f64()
        ));
    }
}

/// `POST /free`: ComfyUI's worker honours it between prompts.
fn apply_free_flags(sim: &Sim, cache: &mut OutputCache) {
    let Some(flags) = sim.queue().free.take() else {
        return;
    };
    if flags.unload_models || flags.free_memory {
        sim.machine().loaded.clear();
    }
    if flags.free_memory {
        cache.entries.clear();
    }
}

/// A node's cached results.
#[derive(Clone)]
struct CacheEntry {
    outputs: Arc<Vec<Data>>,
    ui: Option<UiRecord>,
}

#[derive(Clone)]
struct UiRecord {
    output: NodeOutput,
    meta: Value,
}

/// Outputs keyed by a node's signature (class, inputs, and the signatures of what it links
/// to), kept only for nodes of the latest prompt, like ComfyUI's classic cache.
#[derive(Default)]
struct OutputCache {
    entries: HashMap<u64, CacheEntry>,
}

/// One workflow node, ready to run.
struct GraphNode {
    node_type: &'static NodeType,
    inputs: Map<String, Value>,
    /// Input names in the order the client wrote them.
    input_order: Vec<String>,
}

struct Graph {
    order: Vec<NodeId>,
    nodes: HashMap<NodeId, GraphNode>,
}

impl Graph {
    fn new(prompt: &Value, order: &KeyOrder) -> Self {
        let mut nodes = HashMap::new();
        for id in &order.nodes {
            let node = &prompt[id];
            let Some(node_type) = node["class_type"].as_str().and_then(|c| registry().get(c))
            else {
                continue;
            };
            let inputs = node["inputs"].as_object().cloned().unwrap_or_default();
            let mut input_order: Vec<String> = order.inputs.get(id).cloned().unwrap_or_default();
            // Inputs validation added (converted values) keep their place; any others follow.
            for name in inputs.keys() {
                if !input_order.contains(name) {
                    input_order.push(name.clone());
                }
            }
            nodes.insert(
                id.clone(),
                GraphNode {
                    node_type,
                    inputs,
                    input_order,
                },
            );
        }
        Self {
            order: order.nodes.clone(),
            nodes,
        }
    }

    /// The links into a node, in input order: `(input name, from node, slot)`.
    fn links(&self, id: &str) -> Vec<(String, NodeId, usize)> {
        let Some(node) = self.nodes.get(id) else {
            return Vec::new();
        };
        node.input_order
            .iter()
            .filter_map(|name| match node.inputs.get(name) {
                Some(Value::Array(link)) if link.len() == 2 => {
                    let from = link[0].as_str()?;
                    let slot = link[1].as_u64()? as usize;
                    self.nodes
                        .contains_key(from)
                        .then(|| (name.clone(), from.to_string(), slot))
                }
                _ => None,
            })
            .collect()
    }

    fn is_output(&self, id: &str) -> bool {
        self.nodes.get(id).is_some_and(|n| n.node_type.is_output)
    }

    fn signatures(&self) -> HashMap<NodeId, u64> {
        let mut memo = HashMap::new();
        for id in &self.order {
            self.signature(id, &mut memo, &mut Vec::new());
        }
        memo
    }

    fn signature(&self, id: &str, memo: &mut HashMap<NodeId, u64>, path: &mut Vec<NodeId>) -> u64 {
        if let Some(&s) = memo.get(id) {
            return s;
        }
        let mut h = DefaultHasher::new();
        let Some(node) = self.nodes.get(id) else {
            id.hash(&mut h);
            return h.finish();
        };
        if path.len() > MAX_DEPTH || path.iter().any(|p| p == id) {
            ("cycle", id).hash(&mut h);
            return h.finish();
        }
        path.push(id.to_string());
        node.node_type.info["name"].to_string().hash(&mut h);
        // Sorted input names, as ComfyUI's signature does.
        for (name, value) in &node.inputs {
            name.hash(&mut h);
            match value {
                Value::Array(link)
                    if link.len() == 2
                        && link[0].as_str().is_some_and(|f| self.nodes.contains_key(f)) =>
                {
                    let from = link[0].as_str().unwrap_or_default();
                    (
                        "link",
                        self.signature(from, memo, path),
                        link[1].to_string(),
                    )
                        .hash(&mut h);
                }
                literal => literal.to_string().hash(&mut h),
            }
        }
        path.pop();
        let s = h.finish();
        memo.insert(id.to_string(), s);
        s
    }
}

/// ComfyUI's `ExecutionList`: pending nodes in insertion order, how many unfinished inputs
/// block each, and which nodes each one blocks.
struct ExecutionList<'g> {
    graph: &'g Graph,
    cached: HashSet<NodeId>,
    pending: Vec<NodeId>,
    block_count: HashMap<NodeId, usize>,
    blocking: HashMap<NodeId, Vec<NodeId>>,
}

impl<'g> ExecutionList<'g> {
    fn new(graph: &'g Graph, cached: HashSet<NodeId>) -> Self {
        Self {
            graph,
            cached,
            pending: Vec::new(),
            block_count: HashMap::new(),
            blocking: HashMap::new(),
        }
    }

    fn add_node(&mut self, id: &str) {
        let mut stack = vec![id.to_string()];
        let mut links = Vec::new();
        while let Some(current) = stack.pop() {
            if self.pending.contains(&current) {
                continue;
            }
            self.pending.push(current.clone());
            self.block_count.insert(current.clone(), 0);
            self.blocking.insert(current.clone(), Vec::new());
            for (_, from, _) in self.graph.links(&current) {
                if !self.cached.contains(&from) {
                    stack.push(from.clone());
                }
                links.push((from, current.clone()));
            }
        }
        for (from, to) in links {
            if self.cached.contains(&from) {
                continue;
            }
            self.add_node(&from);
            let blocked = self.blocking.entry(from).or_default();
            if !blocked.contains(&to) {
                blocked.push(to.clone());
                *self.block_count.entry(to).or_default() += 1;
            }
        }
    }

    /// The next node to run, `Ok(None)` when all ran, `Err` with a node stuck in a cycle.
    fn stage(&self) -> Result<Option<NodeId>, NodeId> {
        let ready: Vec<&NodeId> = self
            .pending
            .iter()
            .filter(|id| self.block_count.get(*id) == Some(&0))
            .collect();
        if ready.is_empty() {
            return match self.pending.first() {
                Some(stuck) => Err(stuck.clone()),
                None => Ok(None),
            };
        }
        Ok(Some(self.pick(&ready).clone()))
    }

    /// `ux_friendly_pick_node`: output nodes first, then nodes feeding an output directly, then
    /// at two removes, else the first ready one.
    fn pick<'a>(&self, ready: &[&'a NodeId]) -> &'a NodeId {
        let blocks = |id: &str| self.blocking.get(id).map(Vec::as_slice).unwrap_or_default();
        if let Some(id) = ready.iter().find(|id| self.graph.is_output(id)) {
            return id;
        }
        if let Some(id) = ready
            .iter()
            .find(|id| blocks(id).iter().any(|b| self.graph.is_output(b)))
        {
            return id;
        }
        if let Some(id) = ready.iter().find(|id| {
            blocks(id)
                .iter()
                .any(|b| blocks(b).iter().any(|b1| self.graph.is_output(b1)))
        }) {
            return id;
        }
        ready[0]
    }

    fn complete(&mut self, id: &str) {
        self.pending.retain(|p| p != id);
        for to in self.blocking.remove(id).unwrap_or_default() {
            if let Some(count) = self.block_count.get_mut(&to) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

/// The per-node progress ComfyUI tracks for `progress_state`, in first-touched order.
#[derive(Default)]
struct ProgressRegistry {
    nodes: Vec<(NodeId, f64, f64, NodeRunState)>,
}

impl ProgressRegistry {
    fn entry(&mut self, id: &str) -> &mut (NodeId, f64, f64, NodeRunState) {
        let index = match self.nodes.iter().position(|n| n.0 == id) {
            Some(i) => i,
            None => {
                self.nodes
                    .push((id.to_string(), 0.0, 1.0, NodeRunState::Pending));
                self.nodes.len() - 1
            }
        };
        &mut self.nodes[index]
    }

    fn start(&mut self, id: &str) {
        let e = self.entry(id);
        (e.1, e.2, e.3) = (0.0, 1.0, NodeRunState::Running);
    }

    fn update(&mut self, id: &str, value: f64, max: f64) {
        let e = self.entry(id);
        (e.1, e.2, e.3) = (value, max, NodeRunState::Running);
    }

    fn finish(&mut self, id: &str) {
        let e = self.entry(id);
        (e.1, e.3) = (e.2, NodeRunState::Finished);
    }

    fn snapshot(&self, prompt_id: &str) -> ServerMessage {
        let nodes: BTreeMap<NodeId, NodeProgress> = self
            .nodes
            .iter()
            .filter(|n| n.3 != NodeRunState::Pending)
            .map(|(id, value, max, state)| {
                (
                    id.clone(),
                    NodeProgress {
                        value: *value,
                        max: *max,
                        state: *state,
                        node_id: id.clone(),
                        prompt_id: prompt_id.to_string(),
                        display_node_id: Some(id.clone()),
                        parent_node_id: None,
                        real_node_id: Some(id.clone()),
                    },
                )
            })
            .collect();
        ServerMessage::ProgressState(ProgressState {
            prompt_id: prompt_id.to_string(),
            nodes,
        })
    }
}

/// An encoded preview image a node reports with its progress.
pub(crate) struct Preview {
    pub format: ImageFormat,
    pub data: Bytes,
}

/// What a running node reports through: progress (with previews), progress text, interruptible
/// sleeps. It routes every message as ComfyUI's progress hook does.
pub(crate) struct Reporter {
    pub sim: Arc<Sim>,
    pub prompt_id: String,
    pub client_id: Option<String>,
    /// The node running now.
    pub node_id: String,
    progress: ProgressRegistry,
    interrupt: InterruptWatch,
}

impl Reporter {
    fn owner_or_all(&self) -> Target<'_> {
        Target::owner_or_all(self.client_id.as_deref())
    }

    fn send_progress_state(&self) {
        self.sim.hub.send_message(
            self.owner_or_all(),
            &self.progress.snapshot(&self.prompt_id),
        );
    }

    fn check_interrupt(&self) -> Result<(), NodeFailure> {
        if self.interrupt.is_set() {
            Err(NodeFailure::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Waits, ending early (as an interrupt) when the prompt is interrupted.
    pub(crate) async fn sleep(&mut self, duration: Duration) -> Result<(), NodeFailure> {
        self.check_interrupt()?;
        tokio::select! {
            () = tokio::time::sleep(duration) => {}
            () = self.interrupt.requested() => {}
        }
        self.check_interrupt()
    }

    /// ComfyUI's progress hook: interrupt check, `progress_state`, a type-4 preview for an
    /// owner that asked for metadata, `progress`, else a type-1 preview.
    pub(crate) fn progress(
        &mut self,
        value: f64,
        max: f64,
        preview: Option<Preview>,
    ) -> Result<(), NodeFailure> {
        self.check_interrupt()?;
        let node = self.node_id.clone();
        self.progress.update(&node, value, max);
        self.send_progress_state();
        let metadata = self
            .sim
            .hub
            .supports_preview_metadata(self.client_id.as_deref());
        if let (Some(p), true, Some(client)) = (&preview, metadata, &self.client_id) {
            let frame = BinaryFrame::Preview(PreviewImage {
                format: p.format,
                metadata: Some(PreviewMetadata {
                    node_id: node.clone(),
                    prompt_id: self.prompt_id.clone(),
                    display_node_id: Some(node.clone()),
                    parent_node_id: None,
                    real_node_id: Some(node.clone()),
                    image_type: p.format.mime().into(),
                }),
                data: p.data.clone(),
            });
            self.sim.hub.send_binary(Target::Client(client), &frame);
        }
        let message = ServerMessage::Progress(Progress {
            value,
            max,
            prompt_id: Some(self.prompt_id.clone()),
            node: Some(node),
        });
        self.sim.hub.send_message(self.owner_or_all(), &message);
        if let (Some(p), false) = (preview, metadata) {
            let frame = BinaryFrame::Preview(PreviewImage {
                format: p.format,
                metadata: None,
                data: p.data,
            });
            self.sim.hub.send_binary(self.owner_or_all(), &frame);
        }
        Ok(())
    }

    /// Progress text (binary type 3): nodes send it without a target, so everyone gets it.
    pub(crate) fn text(&self, text: &str) {
        let frame = BinaryFrame::ProgressText {
            node_id: self.node_id.clone(),
            text: text.to_string(),
        };
        self.sim.hub.send_binary(Target::All, &frame);
    }
}

/// One prompt's run.
struct Run<'a> {
    rep: Reporter,
    graph: &'a Graph,
    signatures: HashMap<NodeId, u64>,
    messages: Vec<(String, Value)>,
    ui_outputs: BTreeMap<NodeId, UiRecord>,
    executed: Vec<NodeId>,
}

impl Run<'_> {
    /// ComfyUI's `add_message`: kept for the history, sent to the owner, or to everyone when
    /// `broadcast` and the prompt has no owner.
    fn add_message(&mut self, message: ServerMessage, broadcast: bool) {
        self.messages
            .push((message.kind().to_string(), message.data()));
        match (&self.rep.client_id, broadcast) {
            (Some(client), _) => self
                .rep
                .sim
                .hub
                .send_message(Target::Client(client), &message),
            (None, true) => self.rep.sim.hub.send_message(Target::All, &message),
            (None, false) => {}
        }
    }

    fn to_owner(&self, message: &ServerMessage) {
        if let Some(client) = &self.rep.client_id {
            self.rep
                .sim
                .hub
                .send_message(Target::Client(client), message);
        }
    }

    /// The node's inputs: literals as validated, links as the linked node's cached output.
    fn resolve_inputs(&self, id: &str, cache: &OutputCache) -> Inputs {
        let node = &self.graph.nodes[id];
        let mut values = BTreeMap::new();
        for spec in &node.node_type.inputs {
            let Some(value) = node.inputs.get(&spec.name) else {
                continue;
            };
            let resolved = match value {
                Value::Array(link) if link.len() == 2 => {
                    let from = link[0].as_str().unwrap_or_default();
                    let slot = link[1].as_u64().unwrap_or(0) as usize;
                    let data = self
                        .signatures
                        .get(from)
                        .and_then(|s| cache.entries.get(s))
                        .and_then(|e| e.outputs.get(slot).cloned());
                    match data {
                        Some(d) => InputValue::Data(d),
                        None => InputValue::Literal(Value::Null),
                    }
                }
                literal => InputValue::Literal(literal.clone()),
            };
            values.insert(spec.name.clone(), resolved);
        }
        Inputs {
            node_type: node.node_type,
            values,
        }
    }

    /// Runs (or serves from cache) one node, with its messages.
    async fn execute_node(
        &mut self,
        id: &str,
        cache: &mut OutputCache,
    ) -> Result<(), (NodeFailure, Map<String, Value>)> {
        let signature = self.signatures.get(id).copied().unwrap_or_default();
        self.rep.node_id = id.to_string();
        if let Some(entry) = cache.entries.get(&signature).cloned() {
            self.to_owner(&ServerMessage::Executed(Executed {
                node: id.to_string(),
                display_node: Some(id.to_string()),
                output: entry.ui.as_ref().map(|u| u.output.clone()),
                prompt_id: Some(self.rep.prompt_id.clone()),
            }));
            if let Some(ui) = entry.ui {
                self.ui_outputs.insert(id.to_string(), ui);
            }
            self.rep.progress.finish(id);
            self.rep.send_progress_state();
            return Ok(());
        }

        self.rep.progress.start(id);
        self.rep.send_progress_state();
        let inputs = self.resolve_inputs(id, cache);
        if self.rep.client_id.is_some() {
            self.rep.sim.set_last_node(Some(id.to_string()));
            self.to_owner(&ServerMessage::Executing(Executing {
                node: Some(id.to_string()),
                display_node: Some(id.to_string()),
                prompt_id: Some(self.rep.prompt_id.clone()),
            }));
        }
        // ComfyUI checks for an interrupt before every node.
        if let Err(f) = self.rep.check_interrupt() {
            return Err((f, inputs.python_view()));
        }
        let kind = self.graph.nodes[id].node_type.kind;
        let result = match nodes::run(kind, &inputs, &mut self.rep).await {
            Ok(r) => r,
            Err(f) => return Err((f, inputs.python_view())),
        };
        let ui = result
            .ui
            .filter(|u| !u.images.is_empty() || !u.other.is_empty());
        let ui = ui.map(|output| UiRecord {
            output,
            meta: nodes::ui_meta(id),
        });
        if let Some(record) = &ui {
            self.ui_outputs.insert(id.to_string(), record.clone());
            self.to_owner(&ServerMessage::Executed(Executed {
                node: id.to_string(),
                display_node: Some(id.to_string()),
                output: Some(record.output.clone()),
                prompt_id: Some(self.rep.prompt_id.clone()),
            }));
        }
        cache.entries.insert(
            signature,
            CacheEntry {
                outputs: Arc::new(result.outputs),
                ui,
            },
        );
        self.rep.progress.finish(id);
        self.rep.send_progress_state();
        self.executed.push(id.to_string());
        Ok(())
    }

    fn report_failure(&mut self, id: &str, failure: NodeFailure, inputs: Map<String, Value>) {
        let node_type = self.graph.nodes.get(id).map(|n| {
            n.node_type.info["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let timestamp = Some(epoch_millis());
        match failure {
            NodeFailure::Interrupted => {
                self.rep.sim.log("Processing interrupted");
                let message = ServerMessage::ExecutionInterrupted(ExecutionInterrupted {
                    prompt_id: self.rep.prompt_id.clone(),
                    node_id: Some(id.to_string()),
                    node_type,
                    executed: self.executed.clone(),
                    timestamp,
                });
                self.add_message(message, true);
            }
            NodeFailure::Exception(ex) => {
                self.rep.sim.log(&format!(
                    "!!! Exception during processing !!! {}",
                    ex.message
                ));
                self.rep.sim.log(&format!(
                    "Traceback (most recent call last):\n{}{}: {}",
                    ex.traceback.concat(),
                    ex.kind,
                    ex.message
                ));
                let tips = if ex.kind == "torch.OutOfMemoryError" {
                    "This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number."
                } else {
                    ""
                };
                let message = ServerMessage::ExecutionError(ExecutionError {
                    prompt_id: self.rep.prompt_id.clone(),
                    node_id: Some(id.to_string()),
                    node_type,
                    executed: self.executed.clone(),
                    exception_message: format!("{}\n{tips}", ex.message),
                    exception_type: ex.kind,
                    traceback: ex.traceback,
                    current_inputs: inputs,
                    current_outputs: Value::from(self.graph.order.clone()),
                    timestamp,
                });
                self.add_message(message, false);
            }
        }
    }
}

/// `PromptExecutor.execute`: runs one prompt and returns its history entry.
async fn execute(
    sim: &Arc<Sim>,
    cache: &mut OutputCache,
    pending: &Pending,
    client_id: Option<String>,
) -> HistoryEntry {
    let prompt_id = pending.item.prompt_id.clone();
    let interrupt = sim.interrupts.watch();
    sim.set_exec_view(ExecView {
        client_id: client_id.clone(),
        last_node: None,
    });
    let graph = Graph::new(&pending.item.prompt, &pending.order);
    let signatures = graph.signatures();
    let mut run = Run {
        rep: Reporter {
            sim: sim.clone(),
            prompt_id: prompt_id.clone(),
            client_id,
            node_id: String::new(),
            progress: ProgressRegistry::default(),
            interrupt,
        },
        graph: &graph,
        signatures,
        messages: Vec::new(),
        ui_outputs: BTreeMap::new(),
        executed: Vec::new(),
    };
    run.add_message(
        ServerMessage::ExecutionStart(ExecutionStart {
            prompt_id: prompt_id.clone(),
            timestamp: Some(epoch_millis()),
        }),
        false,
    );

    // Keep only what this prompt can use, then see what it finds there.
    let wanted: HashSet<u64> = run.signatures.values().copied().collect();
    cache.entries.retain(|k, _| wanted.contains(k));
    let cached: Vec<NodeId> = graph
        .order
        .iter()
        .filter(|id| {
            run.signatures
                .get(*id)
                .is_some_and(|s| cache.entries.contains_key(s))
        })
        .cloned()
        .collect();
    run.add_message(
        ServerMessage::ExecutionCached(ExecutionCached {
            nodes: cached.clone(),
            prompt_id: prompt_id.clone(),
            timestamp: Some(epoch_millis()),
        }),
        false,
    );

    let mut list = ExecutionList::new(&graph, cached.into_iter().collect());
    for output in &pending.item.outputs_to_execute {
        if graph.nodes.contains_key(output) {
            list.add_node(output);
        }
    }
    let success = loop {
        let id = match list.stage() {
            Ok(Some(id)) => id,
            Ok(None) => break true,
            Err(stuck) => {
                let failure = NodeFailure::Exception(nodes::Exception {
                    kind: "graph.DependencyCycleError".into(),
                    message: "Dependency cycle detected".into(),
                    traceback: Vec::new(),
                });
                run.report_failure(&stuck, failure, Map::new());
                break false;
            }
        };
        match run.execute_node(&id, cache).await {
            Ok(()) => list.complete(&id),
            Err((failure, inputs)) => {
                run.report_failure(&id, failure, inputs);
                break false;
            }
        }
    };
    if success {
        run.add_message(
            ServerMessage::ExecutionSuccess(ExecutionSuccess {
                prompt_id: prompt_id.clone(),
                timestamp: Some(epoch_millis()),
            }),
            false,
        );
    }
    sim.set_last_node(None);

    HistoryEntry {
        prompt: pending.item.clone(),
        outputs: run
            .ui_outputs
            .iter()
            .map(|(id, ui)| (id.clone(), ui.output.clone()))
            .collect(),
        status: Some(HistoryStatus {
            status_str: if success { "success" } else { "error" }.into(),
            completed: success,
            messages: run.messages,
        }),
        meta: run
            .ui_outputs
            .into_iter()
            .map(|(id, ui)| (id, ui.meta))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn graph(prompt: Value) -> Graph {
        let nodes: Vec<String> = prompt.as_object().unwrap().keys().cloned().collect();
        let order = KeyOrder {
            nodes,
            inputs: HashMap::new(),
        };
        Graph::new(&prompt, &order)
    }

    fn full_workflow() -> Value {
        json!({
            "1": {"class_type": "LabSlowSteps", "inputs": {"steps": 6, "delay": 0.3, "seed": 101, "width": 96, "height": 96}},
            "2": {"class_type": "ImageScale", "inputs": {"upscale_method": "bilinear", "width": 64, "height": 64, "crop": "disabled", "image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "lab/full", "images": ["6", 0]}},
            "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
            "5": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16746496}},
            "6": {"class_type": "ImageBlend", "inputs": {"image1": ["2", 0], "image2": ["5", 0], "blend_factor": 0.5, "blend_mode": "normal"}}
        })
    }

    fn run_order(graph: &Graph, outputs: &[&str], cached: &[&str]) -> Vec<NodeId> {
        let mut list = ExecutionList::new(graph, cached.iter().map(|s| s.to_string()).collect());
        for o in outputs {
            list.add_node(o);
        }
        let mut order = Vec::new();
        while let Ok(Some(id)) = list.stage() {
            list.complete(&id);
            order.push(id);
        }
        order
    }

    #[test]
    fn node_order_matches_the_recorded_runs() {
        let g = graph(full_workflow());
        // Recorded in b: 1, 4, 5, 2, 6, 3; in c (5 cached): 1, 4, 2, 6, 3.
        assert_eq!(
            run_order(&g, &["4", "3"], &[]),
            ["1", "4", "5", "2", "6", "3"]
        );
        assert_eq!(
            run_order(&g, &["4", "3"], &["5"]),
            ["1", "4", "2", "6", "3"]
        );
        // Everything cached (d): only the output nodes come up, 4 before 3.
        assert_eq!(
            run_order(&g, &["4", "3"], &["1", "2", "3", "4", "5", "6"]),
            ["4", "3"]
        );
    }

    #[test]
    fn signatures_follow_content_not_ids() {
        let g = graph(full_workflow());
        let s = g.signatures();
        let mut renamed = full_workflow();
        renamed["1"]["inputs"]["seed"] = json!(102);
        let r = graph(renamed).signatures();
        assert_eq!(s["5"], r["5"], "EmptyImage did not change");
        assert_ne!(s["1"], r["1"]);
        assert_ne!(s["6"], r["6"], "downstream of the change");
        let same = json!({
            "7": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16746496}}
        });
        assert_eq!(graph(same).signatures()["7"], s["5"]);
    }

    #[test]
    fn progress_state_lists_only_touched_nodes() {
        let mut p = ProgressRegistry::default();
        p.start("1");
        p.update("1", 3.0, 6.0);
        p.finish("1");
        p.start("4");
        let ServerMessage::ProgressState(s) = p.snapshot("p") else {
            panic!()
        };
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.nodes["1"].state, NodeRunState::Finished);
        assert_eq!(s.nodes["1"].value, 6.0);
        assert_eq!(s.nodes["4"].state, NodeRunState::Running);
    }
}
