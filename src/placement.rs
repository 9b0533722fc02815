//! Where a prompt can go among several servers: which node types a server lacks (from its
//! `/object_info`), and the server with the shortest queue among those that have them all.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use serde_json::Value;

use crate::comfy::http::{ComfyClient, HttpError};

/// The node types (`class_type`s) an API-format graph uses.
pub fn node_types(graph: &Value) -> BTreeSet<String> {
    graph
        .as_object()
        .into_iter()
        .flat_map(|nodes| nodes.values())
        .filter_map(|node| node.get("class_type")?.as_str())
        .map(str::to_string)
        .collect()
}

/// The types of `types` the server does not know, asked one class at a time
/// (`GET /object_info/{class}` answers `{}` for a class it lacks): a few small answers instead
/// of the whole catalogue, which runs to megabytes on a box with many custom nodes.
pub async fn missing_node_types(
    client: &ComfyClient,
    types: &BTreeSet<String>,
) -> Result<Vec<String>, HttpError> {
    let answers = join_all(types.iter().map(|class| async move {
        let info = client.object_info(Some(class)).await?;
        Ok::<_, HttpError>((class, info.get(class.as_str()).is_some()))
    }))
    .await;
    let mut missing = Vec::new();
    for answer in answers {
        let (class, known) = answer?;
        if !known {
            missing.push(class.clone());
        }
    }
    Ok(missing)
}

/// One server a prompt may go to.
pub struct Candidate {
    pub name: String,
    pub client: ComfyClient,
}

/// What was learned of a candidate: its queue (running and pending), or why it cannot take the
/// prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    Queue(usize),
    Lacks(Vec<String>),
    Unreachable(String),
}

/// Looks at every candidate at once and picks the one with the shortest queue among those that
/// have every node type in `types` (the first given on a tie). Returns its index and what was
/// learned of each, in the candidates' order, or `None` when none fits.
pub async fn choose(
    candidates: &[Candidate],
    types: &BTreeSet<String>,
) -> (Option<usize>, Vec<Fit>) {
    let fits: Vec<Fit> = join_all(candidates.iter().map(|candidate| async move {
        let (queue, missing) = tokio::join!(
            candidate.client.queue(),
            missing_node_types(&candidate.client, types)
        );
        match (queue, missing) {
            (Err(e), _) | (_, Err(e)) => Fit::Unreachable(e.to_string()),
            (Ok(_), Ok(missing)) if !missing.is_empty() => Fit::Lacks(missing),
            (Ok(queue), Ok(_)) => Fit::Queue(queue.queue_running.len() + queue.queue_pending.len()),
        }
    }))
    .await;
    let best = fits
        .iter()
        .enumerate()
        .filter_map(|(index, fit)| match fit {
            Fit::Queue(length) => Some((*length, index)),
            _ => None,
        })
        .min()
        .map(|(_, index)| index);
    (best, fits)
}

/// One line per candidate saying what was learned, for the user to see why one was chosen.
pub fn report(candidates: &[Candidate], fits: &[Fit], chosen: Option<usize>) -> Vec<String> {
    candidates
        .iter()
        .zip(fits)
        .enumerate()
        .map(|(index, (candidate, fit))| {
            let name = crate::text::one_line(&candidate.name);
            let mark = if Some(index) == chosen { "→" } else { " " };
            match fit {
                Fit::Queue(length) => format!("{mark} {name}: queue {length}"),
                Fit::Lacks(types) => format!(
                    "{mark} {name}: skipped, it lacks {}",
                    crate::text::one_line(&types.join(", "))
                ),
                Fit::Unreachable(why) => {
                    format!("{mark} {name}: skipped, {}", crate::text::one_line(why))
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_types_are_the_class_types_of_the_graph() {
        let graph = serde_json::json!({
            "1": {"class_type": "KSampler", "inputs": {}},
            "2": {"class_type": "SaveImage", "inputs": {}},
            "3": {"class_type": "KSampler", "inputs": {}},
            "4": {"inputs": {}},
        });
        let types: Vec<String> = node_types(&graph).into_iter().collect();
        assert_eq!(types, ["KSampler", "SaveImage"]);
        assert!(node_types(&serde_json::json!([1, 2])).is_empty());
    }
}
