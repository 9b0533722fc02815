//! A queued workflow as the worker sees it, and ComfyUI's `ExecutionList`: which node runs
//! next (its "UX-friendly" pick), and the input signatures that key the output cache.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde_json::{Map, Value};

use super::queue::KeyOrder;
use super::registry::{NodeType, registry};
use comfy_client::protocol::NodeId;

/// Graph depth at which signatures stop following links (validation rejects deeper graphs).
const MAX_DEPTH: usize = 256;

/// One workflow node, ready to run.
pub(crate) struct GraphNode {
    pub node_type: &'static NodeType,
    pub inputs: Map<String, Value>,
    /// Input names in the order the client wrote them.
    input_order: Vec<String>,
}

pub(crate) struct Graph {
    pub order: Vec<NodeId>,
    pub nodes: HashMap<NodeId, GraphNode>,
}

impl Graph {
    pub(crate) fn new(prompt: &Value, order: &KeyOrder) -> Self {
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

    pub(crate) fn signatures(&self) -> HashMap<NodeId, u64> {
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
pub(crate) struct ExecutionList<'g> {
    graph: &'g Graph,
    cached: HashSet<NodeId>,
    pending: Vec<NodeId>,
    block_count: HashMap<NodeId, usize>,
    blocking: HashMap<NodeId, Vec<NodeId>>,
}

impl<'g> ExecutionList<'g> {
    pub(crate) fn new(graph: &'g Graph, cached: HashSet<NodeId>) -> Self {
        Self {
            graph,
            cached,
            pending: Vec::new(),
            block_count: HashMap::new(),
            blocking: HashMap::new(),
        }
    }

    pub(crate) fn add_node(&mut self, id: &str) {
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
    pub(crate) fn stage(&self) -> Result<Option<NodeId>, NodeId> {
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

    pub(crate) fn complete(&mut self, id: &str) {
        self.pending.retain(|p| p != id);
        for to in self.blocking.remove(id).unwrap_or_default() {
            if let Some(count) = self.block_count.get_mut(&to) {
                *count = count.saturating_sub(1);
            }
        }
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
}
