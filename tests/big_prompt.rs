//! Another client's huge prompt costs this client a bounded summary: the tracker keeps at most
//! a capped number of nodes of its graph and cut error strings, read over real loopback sockets
//! from the simulated server; only a requeue fetches a graph whole.

mod support;

use comfytop::comfy::api::{
    ERROR_TEXT_KEPT, NEW_CLASS_NODES_KEPT, NODES_KEPT, PromptRequest, fits_or_was_cut,
};
use comfytop::tracker::{Outcome, Phase, Tracker, TrackerInput};
use serde_json::{Map, Value, json};
use support::*;

/// `count` EmptyImage nodes and one PreviewImage of the first, like a generated stress graph.
fn stress_graph(count: usize) -> Value {
    let mut graph = Map::new();
    for i in 1..=count {
        graph.insert(
            i.to_string(),
            json!({"class_type": "EmptyImage",
                   "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}),
        );
    }
    graph.insert(
        (count + 1).to_string(),
        json!({"class_type": "PreviewImage", "inputs": {"images": ["1", 0]},
               "_meta": {"title": "The only output"}}),
    );
    Value::Object(graph)
}

fn from_another_client(prompt: Value) -> PromptRequest {
    PromptRequest {
        prompt,
        client_id: Some("someone-else".into()),
        ..PromptRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_huge_graph_is_kept_as_a_bounded_summary() {
    const NODES: usize = 50_000;
    let server = TestServer::start().await;
    let other = client(&server.url());
    // A long run first, so the huge prompt waits in the queue where `/queue` shows it.
    let blocker = other
        .submit(&from_another_client(workflow(
            "long_run_interruptible.json",
        )))
        .await
        .unwrap()
        .prompt_id;
    until_running(&other, &blocker).await;
    let big = other
        .submit(&from_another_client(stress_graph(NODES)))
        .await
        .unwrap()
        .prompt_id;

    let ours = client(&server.url());
    let mut tracker = Tracker::new("me");
    tracker.handle(1.0, TrackerInput::Queue(ours.queue().await.unwrap()));
    let record = tracker.prompt(&big).unwrap();
    assert_eq!(record.phase, Phase::Queued);
    assert!(!record.ours);
    let graph = &record.graph;
    assert_eq!(graph.node_count, NODES + 1);
    assert!(graph.nodes.len() <= NODES_KEPT + NEW_CLASS_NODES_KEPT);
    let output = (NODES + 1).to_string();
    assert_eq!(record.node_title(&output), Some("The only output"));
    // What runs is the output and the one node it reads: that much is known from the summary.
    assert_eq!(record.node_counts(), (0, 2));

    ours.interrupt(Some(&blocker)).await.unwrap();
    let entry = until_finished(&ours, &big).await;
    assert!(entry.prompt.prompt.nodes.len() <= NODES_KEPT + NEW_CLASS_NODES_KEPT);
    tracker.handle(
        2.0,
        TrackerInput::HistoryItem {
            prompt_id: big.clone(),
            entry: Some(entry),
        },
    );
    let record = tracker.prompt(&big).unwrap();
    assert_eq!(record.outcome(), Some(&Outcome::Success));
    assert!(record.graph.nodes.len() <= NODES_KEPT + NEW_CLASS_NODES_KEPT);

    // A requeue fetches the graph whole, for that one request.
    let whole = ours.queued_prompt(&big).await.unwrap().unwrap();
    assert_eq!(whole.prompt.as_object().unwrap().len(), NODES + 1);
    assert_eq!(whole.prompt, stress_graph(NODES));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_message_is_kept_cut() {
    let message = "boom ".repeat(400_000);
    let server = TestServer::start().await;
    let other = client(&server.url());
    let failing = json!({"1": {"class_type": "LabRaiseError", "inputs": {"message": message}}});
    let id = other
        .submit(&from_another_client(failing))
        .await
        .unwrap()
        .prompt_id;

    let ours = client(&server.url());
    let entry = until_finished(&ours, &id).await;
    let mut tracker = Tracker::new("me");
    tracker.handle(
        1.0,
        TrackerInput::HistoryItem {
            prompt_id: id.clone(),
            entry: Some(entry),
        },
    );
    let Some(Outcome::Error(error)) = tracker.prompt(&id).unwrap().outcome() else {
        panic!("{:?}", tracker.prompt(&id).unwrap().phase);
    };
    let kept = &error.exception_message;
    assert!(
        kept.len() < ERROR_TEXT_KEPT + 100,
        "{} bytes kept",
        kept.len()
    );
    assert!(fits_or_was_cut(kept, ERROR_TEXT_KEPT));
    // The server may add a line end to the message; the note counts what was left out of it.
    let (head, note) = kept.split_once('…').unwrap();
    assert_eq!(head.chars().count(), ERROR_TEXT_KEPT);
    let left_out: usize = note
        .trim_start_matches(" (")
        .trim_end_matches(" more characters)")
        .parse()
        .unwrap();
    let expected = message.len() - ERROR_TEXT_KEPT;
    assert!((expected..expected + 2).contains(&left_out), "{note}");
    assert!(message.starts_with(head));
    // The inputs the node failed with carry the message again: cut the same way.
    let inputs = serde_json::to_string(&error.current_inputs).unwrap();
    assert!(
        inputs.len() < 2 * ERROR_TEXT_KEPT,
        "{} bytes of inputs kept",
        inputs.len()
    );
    assert!(inputs.contains("more characters)"), "{inputs:.200}");
    for line in &error.traceback {
        assert!(line.chars().count() < ERROR_TEXT_KEPT + 40);
    }
}
