//! The worker: takes prompts from the queue one at a time and runs them the way ComfyUI's
//! `PromptExecutor` does: the same node order (its `ExecutionList` and "UX-friendly" pick), the
//! same output cache between prompts, and the same messages to the same sockets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use super::graph::{ExecutionList, Graph};
use super::hub::Target;
use super::nodes::{self, Data, InputValue, Inputs, NodeFailure};
use super::queue::Pending;
use super::queue::SimHistoryEntry;
use super::state::{ExecView, InterruptWatch, Sim};
use super::{logbook::epoch_millis, pyfmt};
use comfy_client::api::{HistoryEntry, HistoryStatus};
use comfy_client::binary::{BinaryFrame, ImageFormat, PreviewImage, PreviewMetadata};
use comfy_client::protocol::{
    Executed, Executing, ExecutionCached, ExecutionError, ExecutionInterrupted, ExecutionStart,
    ExecutionSuccess, NodeId, NodeOutput, NodeProgress, NodeRunState, Progress, ProgressState,
    ServerMessage,
};

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
) -> SimHistoryEntry {
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

    #[test]
    fn random_accepted_workflows_run_without_killing_the_worker() {
        use crate::ordered::Ordered;
        use crate::validate::arbitrary;
        use proptest::test_runner::{Config, TestRunner};
        use serde_json::json;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = Arc::new(Sim::new(
            Duration::from_millis(1),
            "127.0.0.1:0".parse().unwrap(),
            false,
        ));
        let worker = runtime.spawn(run_worker(sim.clone()));
        let mut runner = TestRunner::new(Config {
            cases: 64,
            ..Config::default()
        });
        runner
            .run(&arbitrary::any_runnable_workflow(), |prompt| {
                sim.submit(&Ordered::from_value(&json!({ "prompt": prompt })));
                runtime.block_on(async {
                    // Long runs are stopped after a moment; everything must drain.
                    let started = Instant::now();
                    while sim.queue_remaining() > 0 {
                        if started.elapsed() > Duration::from_millis(200) {
                            sim.interrupt(None);
                        }
                        assert!(started.elapsed() < Duration::from_secs(20), "stuck");
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                });
                proptest::prop_assert!(!worker.is_finished(), "the worker died");
                Ok(())
            })
            .unwrap();
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
