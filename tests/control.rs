//! The action layer the dashboard and the commands share, against a server on loopback: each
//! action makes the right call and leads to the right server state.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use comfytop::comfy::api::{FreeRequest, PromptRequest};
use comfytop::comfy::http::{ComfyClient, HttpTimeouts};
use comfytop::comfy::server_url::ServerUrl;
use comfytop::control::{Access, ActionError, Done, Located, ServerAction, locate, perform};
use serde_json::{Map, Value, json};
use support::*;

fn request(workflow_name: &str, client_id: &str) -> PromptRequest {
    PromptRequest {
        prompt: workflow(workflow_name),
        client_id: Some(client_id.to_string()),
        ..PromptRequest::default()
    }
}

async fn queued(client: &ComfyClient, action: ServerAction) -> String {
    match perform(client, Access::ReadWrite, &action).await.unwrap() {
        Done::Queued { accepted, .. } => accepted.prompt_id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_for_a_prompt_that_just_finished_hits_nothing() {
    let server = TestServer::start().await;
    let client = client(&server.url());
    let finished = queued(
        &client,
        ServerAction::submit(request("small_save.json", "me")),
    )
    .await;
    until_finished(&client, &finished).await;
    // Another prompt runs by the time the (stale) cancel arrives; 100 steps (1.5 s) give the
    // test time to see it running.
    let mut long_enough = request("slow_steps_full.json", "me");
    long_enough.prompt["1"]["inputs"]["steps"] = json!(100);
    let next = queued(&client, ServerAction::submit(long_enough)).await;
    until_running(&client, &next).await;

    let done = perform(
        &client,
        Access::ReadWrite,
        &ServerAction::Interrupt {
            prompt_id: finished.clone(),
        },
    )
    .await
    .unwrap();
    assert!(
        done.status_text()
            .contains("it stops only if it still runs")
    );
    assert_eq!(
        server.interrupts().await,
        [format!(
            "Prompt {finished} is not currently running, skipping interrupt"
        )]
    );
    let entry = until_finished(&client, &next).await;
    assert_eq!(entry.status.unwrap().status_str, "success", "not hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_deletes_the_prompts_seen_and_not_one_queued_since() {
    let server = TestServer::start().await;
    let client = client(&server.url());
    let running = queued(
        &client,
        ServerAction::submit(request("long_run_interruptible.json", "me")),
    )
    .await;
    until_running(&client, &running).await;
    let a = queued(
        &client,
        ServerAction::submit(request("small_save.json", "web-ui")),
    )
    .await;
    let b = queued(
        &client,
        ServerAction::submit(request("small_save.json", "me")),
    )
    .await;
    let seen: Vec<String> = queue(&client)
        .await
        .pending_in_run_order()
        .iter()
        .map(|i| i.prompt_id.clone())
        .collect();
    assert_eq!(seen, [a.clone(), b.clone()]);
    // Someone queues a prompt between the confirmation and the clear.
    let late = queued(
        &client,
        ServerAction::submit(request("small_save.json", "web-ui")),
    )
    .await;

    let done = perform(
        &client,
        Access::ReadWrite,
        &ServerAction::ClearPending { prompt_ids: seen },
    )
    .await
    .unwrap();
    assert_eq!(done.status_text(), "removed 2 pending prompts");
    let q = queue(&client).await;
    let pending: Vec<&str> = q
        .queue_pending
        .iter()
        .map(|i| i.prompt_id.as_str())
        .collect();
    assert_eq!(pending, [late.as_str()]);
    assert_eq!(q.queue_running[0].prompt_id, running);

    let done = perform(
        &client,
        Access::ReadWrite,
        &ServerAction::Delete {
            prompt_ids: vec![late.clone()],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        done.status_text(),
        format!("deleted pending prompt {}", &late[..8])
    );
    assert!(queue(&client).await.queue_pending.is_empty());
    client.interrupt(Some(&running)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_keeps_graph_and_extra_data_under_our_client_id() {
    let server = TestServer::start().await;
    let client = client(&server.url());
    let mut original = request("small_save.json", "web-ui");
    let extra: Map<String, Value> =
        serde_json::from_value(json!({"extra_pnginfo": {"workflow": {"nodes": []}}})).unwrap();
    original.extra_data = Some(extra.clone());
    let first = queued(&client, ServerAction::submit(original)).await;
    let entry = until_finished(&client, &first).await;

    // The graph as queued, which the client itself does not keep.
    let item = client.queued_prompt(&first).await.unwrap().unwrap();
    assert_eq!(entry.prompt.prompt_id, first);
    let action = ServerAction::requeue_fetched(first.clone(), "dashboard", false, true);
    let chosen = action.prompt_id().unwrap().to_string();
    let done = perform(&client, Access::ReadWrite, &action).await.unwrap();
    assert!(done.status_text().starts_with(&format!(
        "requeued {} as {}",
        &first[..8],
        &chosen[..8]
    )));

    until_finished(&client, &chosen).await;
    let again = client.queued_prompt(&chosen).await.unwrap().unwrap();
    assert_eq!(again.client_id(), Some("dashboard"));
    assert_eq!(again.extra_data["extra_pnginfo"], extra["extra_pnginfo"]);
    let (before, after) = (&item.prompt, &again.prompt);
    assert_ne!(before["1"]["inputs"]["seed"], after["1"]["inputs"]["seed"]);
    let mut same = after.clone();
    same["1"]["inputs"]["seed"] = before["1"]["inputs"]["seed"].clone();
    assert_eq!(&same, before, "only the seed changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_sends_nothing() {
    let server = TestServer::start().await;
    let client = client(&server.url());
    let running = queued(
        &client,
        ServerAction::submit(request("long_run_interruptible.json", "me")),
    )
    .await;
    until_running(&client, &running).await;
    let pending = queued(
        &client,
        ServerAction::submit(request("small_save.json", "me")),
    )
    .await;
    let actions = [
        ServerAction::Interrupt {
            prompt_id: running.clone(),
        },
        ServerAction::Delete {
            prompt_ids: vec![pending.clone()],
        },
        ServerAction::ClearPending {
            prompt_ids: vec![pending.clone()],
        },
        ServerAction::submit(request("small_save.json", "me")),
        ServerAction::Free(FreeRequest {
            unload_models: true,
            free_memory: true,
        }),
    ];
    for action in &actions {
        let error = perform(&client, Access::ReadOnly, action)
            .await
            .unwrap_err();
        assert!(matches!(error, ActionError::ReadOnly { .. }), "{error}");
        assert!(error.status_text().starts_with("comfytop is read-only"));
    }
    assert!(server.interrupts().await.is_empty());
    let q = queue(&client).await;
    assert_eq!(q.queue_running[0].prompt_id, running);
    let pending_ids: Vec<&str> = q
        .queue_pending
        .iter()
        .map(|i| i.prompt_id.as_str())
        .collect();
    assert_eq!(pending_ids, [pending.as_str()]);
    client.delete_queued(&[pending]).await.unwrap();
    client.interrupt(Some(&running)).await.unwrap();
}

/// A server that takes a submission but answers too late, and counts the POSTs.
async fn slow_acceptor(posts: Arc<Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/prompt",
        post(move |body: Bytes| {
            let posts = posts.clone();
            async move {
                posts
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                tokio::time::sleep(Duration::from_secs(30)).await;
                "{}"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_whose_answer_is_lost_is_reported_not_resent() {
    let posts = Arc::new(Mutex::new(Vec::new()));
    let url = slow_acceptor(posts.clone()).await;
    let timeouts = HttpTimeouts {
        request: Duration::from_millis(300),
        ..HttpTimeouts::default()
    };
    let client = ComfyClient::with_timeouts(ServerUrl::parse(&url).unwrap(), timeouts).unwrap();
    let action = ServerAction::submit(request("small_save.json", "me"));
    let error = perform(&client, Access::ReadWrite, &action)
        .await
        .unwrap_err();
    let ActionError::MaybeQueued { prompt_id, .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(prompt_id.as_deref(), action.prompt_id());
    assert!(
        error
            .to_string()
            .contains("may or may not have been queued; it was not sent again"),
        "{error}"
    );
    let posts = posts.lock().unwrap();
    assert_eq!(posts.len(), 1, "sent once");
    assert_eq!(posts[0]["prompt_id"].as_str(), action.prompt_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_is_located_by_the_id_chosen_before_sending() {
    let server = TestServer::start().await;
    let client = client(&server.url());
    let running = queued(
        &client,
        ServerAction::submit(request("long_run_interruptible.json", "me")),
    )
    .await;
    until_running(&client, &running).await;
    let action = ServerAction::submit(request("small_save.json", "me"));
    let chosen = action.prompt_id().unwrap().to_string();
    assert_eq!(queued(&client, action).await, chosen);
    assert!(matches!(
        locate(&client, &chosen).await.unwrap(),
        Located::Pending {
            position: 1,
            of: 1,
            ..
        }
    ));
    assert!(matches!(
        locate(&client, &running).await.unwrap(),
        Located::Running(_)
    ));
    assert_eq!(locate(&client, "nope").await.unwrap(), Located::Unknown);
    client.interrupt(Some(&running)).await.unwrap();
    until_finished(&client, &chosen).await;
    assert!(matches!(
        locate(&client, &chosen).await.unwrap(),
        Located::Finished(_)
    ));
}
