//! `submit`, `cancel` and `queue` as a user runs them: the real binary against a server on
//! loopback, judged by exit status, output, and what the server ends up holding.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use comfytop::comfy::api::{HistoryEntry, PromptRequest};
use comfytop::comfy::http::ComfyClient;
use comfytop::commands::Exit;
use serde_json::{Value, json};
use support::*;

/// An exit status as `std::process` reports it.
fn code(exit: Exit) -> Option<i32> {
    Some(i32::from(exit.code()))
}

async fn server() -> (TestServer, ComfyClient) {
    let server = TestServer::start().await;
    let client = client(&server.url());
    (server, client)
}

fn status_str(entry: &HistoryEntry) -> String {
    entry.status.as_ref().unwrap().status_str.clone()
}

fn interrupted(entry: &HistoryEntry) -> bool {
    entry
        .status
        .as_ref()
        .unwrap()
        .messages
        .iter()
        .any(|(kind, _)| kind == "execution_interrupted")
}

/// Submits `workflow` without waiting; returns the prompt id the binary printed.
async fn submit(url: &str, workflow: &str) -> String {
    let out = run(&["submit", &workflow_path(workflow), url]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_string()
}

/// Starts `submit --wait` and returns the child and the prompt id it printed.
async fn start_waiting(args: &[&str]) -> (std::process::Child, String) {
    let mut waiting = comfytop(args).spawn().unwrap();
    let stdout = waiting.stdout.take().unwrap();
    let id = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line.trim().to_string()
    })
    .await
    .unwrap();
    (waiting, id)
}

async fn finish(waiting: std::process::Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || waiting.wait_with_output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_prints_the_prompt_id_alone_and_the_prompt_runs() {
    let (server, client) = server().await;
    let out = run(&[
        "submit",
        &workflow_path("slow_steps_full.json"),
        &server.url(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let id = lines[0];
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let entry = until_finished(&client, id).await;
    assert_eq!(status_str(&entry), "success");
    // Queued under a client id of its own (so its events come to comfytop, not to someone else).
    let client_id = entry.prompt.client_id().unwrap();
    let kin = client_id.strip_prefix(comfytop::comfy::connection::COMFYTOP_CLIENT_PREFIX);
    assert!(
        kin.is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()),
        "{client_id}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_0_on_success_and_tells_the_nodes() {
    let (server, _client) = server().await;
    let out = run(&[
        "submit",
        "--wait",
        &workflow_path("slow_steps_full.json"),
        &server.url(),
    ])
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert!(stderr.contains("[1] Slow Steps"), "{stderr}");
    assert!(stderr.contains("[1] Slow Steps 6/6 100%"), "{stderr}");
    assert!(stderr.contains("[3] Save Image"), "{stderr}");
    assert!(
        stderr.lines().last().unwrap().starts_with("done after "),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_1_on_an_execution_error_naming_node_exception_and_message() {
    let (server, _client) = server().await;
    let out = run(&[
        "submit",
        "--wait",
        &workflow_path("error_after_progress.json"),
        &server.url(),
    ])
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::Failed), "{stderr}");
    assert!(
        stderr.contains("error in node [2] LabRaiseError after "),
        "{stderr}"
    );
    assert!(
        stderr.contains(": RuntimeError\n  lab: deliberate failure"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_exits_3_when_a_targeted_cancel_interrupts_it() {
    let (server, client) = server().await;
    let url = server.url();
    let (waiting, id) = start_waiting(&[
        "submit",
        "--wait",
        &workflow_path("long_run_interruptible.json"),
        &url,
    ])
    .await;
    until_running(&client, &id).await;

    let out = run(&["cancel", &id, &url]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("interrupted prompt {id} in node [1] LabLongRun")),
        "{stdout}"
    );
    assert_eq!(
        server.interrupts().await,
        [format!("Interrupting prompt {id}")]
    );

    let out = finish(waiting).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::Interrupted), "{stderr}");
    assert!(
        stderr.contains("interrupted in node [1] LabLongRun"),
        "{stderr}"
    );
    assert!(interrupted(&until_finished(&client, &id).await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_graphs_exit_5_with_every_node_and_input_named() {
    let (server, client) = server().await;
    let cases = [
        (
            "invalid_bad_inputs.json",
            vec![
                "node 1 (LabSlowSteps): input 'width': Value 4 smaller than min of 16",
                "node 1 (LabSlowSteps): input 'steps': Required input is missing",
            ],
        ),
        (
            "invalid_bad_combo.json",
            vec!["node 2 (ImageScale): input 'upscale_method': Value not in list"],
        ),
        ("invalid_unknown_class.json", vec!["NoSuchNodeType"]),
        ("invalid_no_outputs.json", vec!["Prompt has no outputs"]),
        ("invalid_bad_link.json", vec!["rejected the prompt"]),
    ];
    for (workflow, expected) in cases {
        let out = run(&["submit", "--wait", &workflow_path(workflow), &server.url()]).await;
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            code(Exit::NotDone),
            "{workflow}: {stderr}"
        );
        assert!(text(&out.stdout).is_empty(), "{workflow}: no prompt id");
        for line in expected {
            assert!(
                stderr.contains(line),
                "{workflow}: {line:?} not in {stderr}"
            );
        }
    }
    assert!(queue(&client).await.queue_pending.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partly_valid_graphs_are_queued_with_a_warning_about_dropped_outputs() {
    let (server, client) = server().await;
    let out = run(&[
        "submit",
        &workflow_path("partially_invalid.json"),
        &server.url(),
    ])
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: queued without output node(s) 4, which failed validation:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("node 3 (ImageScale): input 'upscale_method'"),
        "{stderr}"
    );
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(status_str(&until_finished(&client, &id).await), "success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_format_and_broken_json_are_refused_before_anything_is_sent() {
    let (server, client) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let ui = dir.path().join("ui.json");
    std::fs::write(
        &ui,
        r#"{"last_node_id": 9, "nodes": [{"id": 1}], "links": [], "version": 0.4}"#,
    )
    .unwrap();
    let out = run(&["submit", ui.to_str().unwrap(), &server.url()]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::NotDone), "{stderr}");
    assert!(
        stderr.contains("UI format") && stderr.contains("Export (API)"),
        "{stderr}"
    );

    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\n  \"1\": {\n    \"class_type\": ,\n").unwrap();
    let out = run(&["submit", broken.to_str().unwrap(), &server.url()]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::NotDone), "{stderr}");
    assert!(
        stderr.contains("is not valid JSON: expected value at line 3, column 19"),
        "{stderr}"
    );

    let out = run(&[
        "submit",
        &workflow_path("small_save.json"),
        &server.url(),
        "--set",
        "9.steps=1",
    ])
    .await;
    assert_eq!(out.status.code(), code(Exit::NotDone));
    assert!(
        text(&out.stderr).contains("no node \"9\""),
        "{}",
        text(&out.stderr)
    );

    let q = queue(&client).await;
    assert!(q.queue_pending.is_empty() && q.queue_running.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_and_random_seeds_change_what_the_server_received() {
    let (server, client) = server().await;
    let out = run(&[
        "submit",
        &workflow_path("small_save.json"),
        &server.url(),
        "--set",
        "1.steps=2",
        "--set",
        "2.filename_prefix=mine/run",
        "--random-seeds",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    until_finished(&client, &id).await;
    let item = client.queued_prompt(&id).await.unwrap().unwrap();
    let received = &item.prompt;
    let original = workflow("small_save.json");
    assert_eq!(received["1"]["inputs"]["steps"], 2);
    assert_eq!(received["2"]["inputs"]["filename_prefix"], "mine/run");
    assert_ne!(
        received["1"]["inputs"]["seed"],
        original["1"]["inputs"]["seed"]
    );
    assert!(received["1"]["inputs"]["seed"].is_u64());
    // Nothing else changed.
    for input in ["delay", "width", "height", "preview_size", "send_text"] {
        assert_eq!(
            received["1"]["inputs"][input], original["1"]["inputs"][input],
            "{input}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_queues_before_the_pending_prompts() {
    let (server, client) = server().await;
    let url = server.url();
    let long = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &long).await;
    let first = submit(&url, "small_save.json").await;
    let out = run(&["submit", "--front", &workflow_path("small_save.json"), &url]).await;
    let front = text(&out.stdout).trim().to_string();
    let q = queue(&client).await;
    let order: Vec<&str> = q
        .pending_in_run_order()
        .iter()
        .map(|i| i.prompt_id.as_str())
        .collect();
    assert_eq!(order, [front.as_str(), first.as_str()]);
    run(&["cancel", "--all-pending", &url]).await;
    run(&["cancel", &long, &url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_only_the_selected_pending_prompt() {
    let (server, client) = server().await;
    let url = server.url();
    let running = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &running).await;
    let a = submit(&url, "small_save.json").await;
    let b = submit(&url, "small_save.json").await;
    let c = submit(&url, "small_save.json").await;

    let out = run(&["cancel", &b, &url]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!("deleted pending prompt {b} (queued by client ")),
        "{stdout}"
    );
    assert!(stdout.contains(", SaveImage)"), "{stdout}");

    let q = queue(&client).await;
    let pending: Vec<&str> = q
        .pending_in_run_order()
        .iter()
        .map(|i| i.prompt_id.as_str())
        .collect();
    assert_eq!(pending, [a.as_str(), c.as_str()]);
    assert_eq!(q.queue_running[0].prompt_id, running);
    assert!(
        server.interrupts().await.is_empty(),
        "a pending prompt is deleted, never interrupted"
    );

    // Deleting it again: it is gone, nothing else is touched.
    let out = run(&["cancel", &b, &url]).await;
    assert_eq!(out.status.code(), code(Exit::Failed));
    assert!(
        text(&out.stdout).contains("neither queued nor in its history"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(queue(&client).await.queue_pending.len(), 2);

    run(&["cancel", "--all-pending", &url]).await;
    run(&["cancel", &running, &url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_without_an_id_interrupts_exactly_the_running_prompt() {
    let (server, client) = server().await;
    let url = server.url();
    let out = run(&["cancel", &url]).await;
    assert_eq!(out.status.code(), code(Exit::Failed));
    assert!(
        text(&out.stdout).starts_with("nothing is running on "),
        "{}",
        text(&out.stdout)
    );

    let running = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &running).await;
    let waiting = submit(&url, "small_save.json").await;
    let out = run(&["cancel", &url]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("interrupt sent for running prompt {running}")),
        "{stdout}"
    );
    assert_eq!(
        server.interrupts().await,
        [format!("Interrupting prompt {running}")]
    );
    assert!(interrupted(&until_finished(&client, &running).await));
    // The next prompt was not hit: it runs to success.
    assert_eq!(
        status_str(&until_finished(&client, &waiting).await),
        "success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_prompt_that_already_finished_hits_nothing() {
    let (server, client) = server().await;
    let url = server.url();
    let done = submit(&url, "small_save.json").await;
    until_finished(&client, &done).await;
    let next = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &next).await;

    let out = run(&["cancel", &done, &url]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), code(Exit::Failed), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "prompt {done} is not queued any more: it finished (success)"
        )),
        "{stdout}"
    );
    assert!(
        server.interrupts().await.is_empty(),
        "no interrupt was sent"
    );
    let q = queue(&client).await;
    assert_eq!(
        q.queue_running[0].prompt_id, next,
        "the running prompt goes on"
    );
    run(&["cancel", &next, &url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_pending_empties_the_queue_and_leaves_the_running_prompt() {
    let (server, client) = server().await;
    let url = server.url();
    let running = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &running).await;
    let a = submit(&url, "small_save.json").await;
    let b = submit(&url, "small_save.json").await;

    let out = run(&["cancel", "--all-pending", &url]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("deleted 2 pending prompts: "),
        "{stdout}"
    );
    assert!(stdout.contains(&a) && stdout.contains(&b), "{stdout}");
    let q = queue(&client).await;
    assert!(q.queue_pending.is_empty());
    assert_eq!(q.queue_running[0].prompt_id, running);

    let out = run(&["cancel", "--all-pending", &url]).await;
    assert_eq!(out.status.code(), code(Exit::Failed));
    assert!(
        text(&out.stdout).contains("has no pending prompts"),
        "{}",
        text(&out.stdout)
    );
    run(&["cancel", &running, &url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_refuses_to_submit_or_cancel() {
    let (server, client) = server().await;
    let url = server.url();
    let out = run(&[
        "submit",
        "--read-only",
        "--wait",
        &workflow_path("small_save.json"),
        &url,
    ])
    .await;
    assert_eq!(out.status.code(), code(Exit::NotDone));
    assert!(
        text(&out.stderr).contains("comfytop is read-only"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty());
    let q = queue(&client).await;
    assert!(q.queue_pending.is_empty() && q.queue_running.is_empty());

    let running = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &running).await;
    let pending = submit(&url, "small_save.json").await;
    for args in [
        vec!["cancel", "--read-only", running.as_str(), url.as_str()],
        vec!["cancel", "--read-only", pending.as_str(), url.as_str()],
        vec!["cancel", "--read-only", url.as_str()],
        vec!["cancel", "--read-only", "--all-pending", url.as_str()],
    ] {
        let out = run(&args).await;
        assert_eq!(out.status.code(), code(Exit::NotDone), "{args:?}");
        assert!(
            text(&out.stderr).contains("comfytop is read-only"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(server.interrupts().await.is_empty());
    let q = queue(&client).await;
    assert_eq!(q.queue_running[0].prompt_id, running);
    assert_eq!(q.queue_pending[0].prompt_id, pending);
    run(&["cancel", "--all-pending", &url]).await;
    run(&["cancel", &running, &url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_shows_running_then_pending_as_a_table_or_json() {
    let (server, client) = server().await;
    let url = server.url();
    let out = run(&["queue", &url]).await;
    assert_eq!(text(&out.stdout), "the queue is empty\n");

    let running = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &running).await;
    let later = submit(&url, "small_save.json").await;
    let sooner = text(
        &run(&[
            "submit",
            "--front",
            &workflow_path("slow_steps_full.json"),
            &url,
        ])
        .await
        .stdout,
    )
    .trim()
    .to_string();

    let out = run(&["queue", &url]).await;
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].contains("PROMPT_ID") && rows[0].contains("QUEUED BY"),
        "{table}"
    );
    assert!(
        rows[1].contains(&running) && rows[1].contains("running"),
        "{table}"
    );
    assert!(rows[1].ends_with("PreviewImage"), "{table}");
    assert!(
        rows[2].contains(&sooner) && rows[2].contains("pending"),
        "{table}"
    );
    assert!(rows[2].ends_with("SaveImage, PreviewImage"), "{table}");
    assert!(rows[3].contains(&later), "{table}");
    assert_eq!(rows[4], "1 running, 2 pending");

    let out = run(&["queue", &url, "--json"]).await;
    let json: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(json["running"][0]["prompt_id"], running.as_str());
    let pending: Vec<&str> = json["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["prompt_id"].as_str().unwrap())
        .collect();
    assert_eq!(pending, [sooner.as_str(), later.as_str()]);
    assert_eq!(json["pending"][0]["nodes"], 6);

    run(&["cancel", "--all-pending", &url]).await;
    run(&["cancel", &running, &url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_exits_5_and_nothing_is_claimed() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [vec!["submit", "--wait"], vec!["submit"]] {
        let path = workflow_path("small_save.json");
        let mut args = args.clone();
        args.extend([path.as_str(), url.as_str()]);
        let out = run(&args).await;
        assert_eq!(out.status.code(), code(Exit::NotDone), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("Nothing was queued"), "{args:?}: {stderr}");
        assert!(text(&out.stdout).is_empty());
    }
    let out = run(&["cancel", &url]).await;
    assert_eq!(out.status.code(), code(Exit::NotDone));
    let out = run(&["queue", &url]).await;
    assert_eq!(out.status.code(), code(Exit::NotDone));
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_goes_on_after_the_server_drops_the_socket() {
    let (server, client) = server().await;
    let url = server.url();
    let path = workflow_path("long_run_interruptible.json");
    let (waiting, id) = start_waiting(&["submit", "--wait", &path, &url]).await;
    until_running(&client, &id).await;
    server.disconnect_all();
    // Whatever the order of reconnect and interrupt, the end is learned.
    let out = run(&["cancel", &id, &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let out = finish(waiting).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::Interrupted), "{stderr}");
    assert!(stderr.contains("connection lost: "), "{stderr}");
    assert!(
        stderr.contains("interrupted in node [1] LabLongRun"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_survives_the_connection_dropping_while_the_prompt_ends() {
    let (server, client) = server().await;
    let proxy = CuttingProxy::start(&server.url()).await;
    let (waiting, id) = start_waiting(&[
        "submit",
        "--wait",
        &workflow_path("long_run_interruptible.json"),
        &proxy.url(),
    ])
    .await;
    until_running(&client, &id).await;

    // The connection drops, and the prompt ends while comfytop cannot hear about it.
    proxy.cut_and_block();
    client.interrupt(Some(&id)).await.unwrap();
    until_finished(&client, &id).await;
    proxy.unblock();

    let out = finish(waiting).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::Interrupted), "{stderr}");
    assert!(stderr.contains("connection lost: "), "{stderr}");
    // The outcome comes from whichever gets through first once the way is open again: the
    // fetches retrying with backoff, or the socket reconnecting (then it says so).
    assert!(
        stderr.contains("interrupted in node [1] LabLongRun"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_saves_every_output_under_its_own_name() {
    let (server, client) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = run(&[
        "submit",
        &workflow_path("slow_steps_full.json"),
        &server.url(),
        "--download",
        out_dir.to_str().unwrap(),
    ])
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let id = text(&out.stdout).trim().to_string();
    let entry = client.history_item(&id).await.unwrap().unwrap();
    let images: Vec<_> = entry.images().map(|(_, image)| image.clone()).collect();
    assert_eq!(images.len(), 2, "SaveImage and PreviewImage: {images:?}");

    let mut saved: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    saved.sort();
    let mut expected: Vec<String> = images.iter().map(|i| i.filename.clone()).collect();
    expected.sort();
    assert_eq!(saved, expected);
    for image in &images {
        let path = out_dir.join(&image.filename);
        let served = client.view(image).await.unwrap().bytes;
        assert_eq!(std::fs::read(&path).unwrap(), served.as_ref());
        assert!(
            stderr.contains(&format!("saved {}", path.display())),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_waiting_but_not_the_prompt() {
    let (server, client) = server().await;
    let url = server.url();
    let (waiting, id) = start_waiting(&[
        "submit",
        "--wait",
        &workflow_path("long_run_interruptible.json"),
        &url,
    ])
    .await;
    until_running(&client, &id).await;
    let pid = waiting.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = finish(waiting).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("To cancel it: comfytop cancel {id} {url}")),
        "{stderr}"
    );
    assert!(server.interrupts().await.is_empty());
    assert_eq!(queue(&client).await.queue_running[0].prompt_id, id);
    run(&["cancel", &id, &url]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_can_come_from_stdin() {
    let (server, client) = server().await;
    let mut command = comfytop(&["submit", "-", &server.url()]);
    command.stdin(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        let text = std::fs::read(workflow_path("small_save.json")).unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), &text).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    until_finished(&client, &id).await;
    let item = client.queued_prompt(&id).await.unwrap().unwrap();
    assert_eq!(item.prompt, workflow("small_save.json"));
}

/// A server behind a proxy that queues a submission but answers 502 (the proxy gave up), and
/// lists the prompt in its queue when `keeps_it`.
async fn gateway_timeout(keeps_it: bool) -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::{get, post};
    let posts: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen = posts.clone();
    let listed = posts.clone();
    let app = axum::Router::new()
        .route(
            "/prompt",
            post(move |body: axum::body::Bytes| async move {
                seen.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                (axum::http::StatusCode::BAD_GATEWAY, "upstream timed out")
            }),
        )
        .route(
            "/queue",
            get(move || async move {
                let pending: Vec<Value> = listed
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|_| keeps_it)
                    .map(|p| json!([7, p["prompt_id"], p["prompt"], {"client_id": p["client_id"]}, ["2"]]))
                    .collect();
                axum::Json(json!({"queue_running": [], "queue_pending": pending}))
            }),
        )
        .route("/history/{id}", get(|| async { axum::Json(json!({})) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_resolved_by_looking_for_the_prompt_never_by_resending() {
    let (url, posts) = gateway_timeout(true).await;
    let out = run(&["submit", &workflow_path("small_save.json"), &url]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let id = text(&out.stdout).trim().to_string();
    assert!(
        stderr.contains(&format!("it has prompt {id}: it was queued once")),
        "{stderr}"
    );
    assert_eq!(posts.lock().unwrap().len(), 1);
    assert_eq!(posts.lock().unwrap()[0]["prompt_id"], id.as_str());

    let (url, posts) = gateway_timeout(false).await;
    let out = run(&["submit", &workflow_path("small_save.json"), &url]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::NotDone), "{stderr}");
    assert!(text(&out.stdout).is_empty());
    assert!(stderr.contains("HTTP 502"), "{stderr}");
    assert!(
        stderr.contains("most likely not queued; it was not sent again"),
        "{stderr}"
    );
    assert_eq!(posts.lock().unwrap().len(), 1);
}

/// Queues `workflow` under a prompt id chosen by the test, as another client.
async fn submit_as(client: &ComfyClient, workflow_name: &str, prompt_id: &str) {
    client
        .submit(&PromptRequest {
            prompt: workflow(workflow_name),
            client_id: Some("another-client".into()),
            prompt_id: Some(prompt_id.into()),
            ..PromptRequest::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_takes_the_short_ids_queue_shows_and_lists_an_ambiguous_one() {
    let (server, client) = server().await;
    let url = server.url();
    let running = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &running).await;
    let first = "abcd1234-aaaa-4000-8000-000000000001";
    let second = "abcd1234-bbbb-4000-8000-000000000002";
    submit_as(&client, "small_save.json", first).await;
    submit_as(&client, "small_save.json", second).await;

    // The 8 characters `queue` shows name two prompts here: nothing is hit, both are listed.
    let out = run(&["cancel", "abcd1234", &url]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::Usage), "{stderr}");
    assert!(
        stderr.contains("2 prompts on ") && stderr.contains(" begin with abcd1234"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("  {first}  pending"))
            && stderr.contains(&format!("  {second}  pending")),
        "{stderr}"
    );
    assert_eq!(queue(&client).await.queue_pending.len(), 2);

    // A longer beginning is unique: that one is deleted.
    let out = run(&["cancel", "abcd1234-b", &url]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!("deleted pending prompt {second} ")),
        "{stdout}"
    );
    let pending: Vec<String> = queue(&client)
        .await
        .queue_pending
        .iter()
        .map(|i| i.prompt_id.clone())
        .collect();
    assert_eq!(pending, [first]);

    // The running prompt by the short id the dashboard shows.
    let short: String = running.chars().take(8).collect();
    let out = run(&["cancel", &short, &url]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("interrupted prompt {running}")),
        "{stdout}"
    );
    assert_eq!(
        server.interrupts().await,
        [format!("Interrupting prompt {running}")]
    );

    // A finished prompt by its short id: found in the history, nothing hit.
    until_finished(&client, first).await;
    let out = run(&["cancel", "abcd1234-a", &url]).await;
    assert_eq!(out.status.code(), code(Exit::Failed));
    assert!(
        text(&out.stdout).contains(&format!("prompt {first} is not queued any more")),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_refuses_an_input_the_node_does_not_have_and_suggests_close_names() {
    let (server, client) = server().await;
    let url = server.url();
    let path = workflow_path("small_save.json");
    for (spec, expected) in [
        (
            "1.nosuch=3",
            "node 1 (LabSlowSteps) has no input \"nosuch\"; its inputs are ",
        ),
        (
            "1.step=30",
            "node 1 (LabSlowSteps) has no input \"step\"; did you mean \"steps\"?",
        ),
    ] {
        let out = run(&["submit", &path, &url, "--set", spec]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), code(Exit::NotDone), "{spec}: {stderr}");
        assert!(stderr.contains(expected), "{spec}: {stderr}");
        assert!(text(&out.stdout).is_empty(), "{spec}: nothing was queued");
    }
    let q = queue(&client).await;
    assert!(q.queue_pending.is_empty() && q.queue_running.is_empty());

    // An optional input the workflow leaves out is one the server says the class takes.
    let dir = tempfile::tempdir().unwrap();
    let mut without = workflow("small_save.json");
    without["1"]["inputs"]
        .as_object_mut()
        .unwrap()
        .remove("preview_size");
    let without_path = dir.path().join("without.json");
    std::fs::write(&without_path, without.to_string()).unwrap();
    let out = run(&[
        "submit",
        without_path.to_str().unwrap(),
        &url,
        "--set",
        "1.preview_size=16",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    until_finished(&client, &id).await;
    let item = client.queued_prompt(&id).await.unwrap().unwrap();
    assert_eq!(item.prompt["1"]["inputs"]["preview_size"], 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_cancel_is_refused_even_with_nothing_to_cancel() {
    let (server, _client) = server().await;
    let url = server.url();
    for args in [
        vec!["cancel", "--read-only", url.as_str()],
        vec!["cancel", "--read-only", "--all-pending", url.as_str()],
        vec!["cancel", "--read-only", "abcd1234", url.as_str()],
    ] {
        let out = run(&args).await;
        assert_eq!(out.status.code(), code(Exit::NotDone), "{args:?}");
        assert!(
            text(&out.stderr).contains("comfytop is read-only"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_have_their_own_status() {
    for args in [
        vec!["submit", "--no-such-option", "w.json"],
        vec!["submit", "w.json", "ftp://box"],
        vec!["cancel", "--all-pending", "abcd1234", "box:8188"],
        vec!["queue", "gopher://box"],
        vec!["watch", "ftp://box"],
    ] {
        let out = run(&args).await;
        assert_eq!(out.status.code(), code(Exit::Usage), "{args:?}");
        assert_eq!(Exit::Usage.code(), 2, "clap's own status");
    }
    let out = run(&["submit", "--help"]).await;
    let help = text(&out.stdout);
    assert!(
        help.contains("Exit status (the same for every command):"),
        "{help}"
    );
    assert!(help.contains("4  lost: "), "{help}");
}

/// A web server that is not ComfyUI, answering as Python's `http.server` does: 404 to a GET of
/// a file it does not have, 501 to any POST.
async fn not_comfyui() -> String {
    use axum::http::{Method, StatusCode};
    let app = axum::Router::new().fallback(|method: Method| async move {
        if method == Method::POST {
            (
                StatusCode::NOT_IMPLEMENTED,
                "<html><body><h1>Error response</h1><p>Error code: 501</p>\
                 <p>Message: Unsupported method ('POST').</p></body></html>",
            )
        } else {
            (
                StatusCode::NOT_FOUND,
                "<html><body><h1>Error response</h1><p>Error code: 404</p>\
                 <p>Message: File not found.</p></body></html>",
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_says_when_the_server_is_not_comfyui() {
    let url = not_comfyui().await;
    let path = workflow_path("small_save.json");
    for args in [
        vec!["submit", path.as_str(), url.as_str()],
        vec!["submit", "--wait", path.as_str(), url.as_str()],
        vec!["submit", path.as_str(), url.as_str(), "--set", "1.steps=2"],
        vec!["cancel", url.as_str()],
        vec!["queue", url.as_str()],
    ] {
        let out = run(&args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), code(Exit::NotDone), "{args:?}: {stderr}");
        assert!(
            stderr.contains("does not look like ComfyUI"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("its log says why"), "{args:?}: {stderr}");
        assert!(text(&out.stdout).is_empty(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_prompt_gone_during_a_cut_is_lost_and_a_deleted_one_is_deleted() {
    let (server, client) = server().await;
    let url = server.url();
    let long = submit(&url, "long_run_interruptible.json").await;
    until_running(&client, &long).await;

    // Deleted while comfytop watches: the user's delete, "interrupted or deleted".
    let (waiting, id) =
        start_waiting(&["submit", "--wait", &workflow_path("small_save.json"), &url]).await;
    let out = run(&["cancel", &id, &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = finish(waiting).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::Interrupted), "{stderr}");
    assert!(
        stderr.contains("deleted from the queue before it ran"),
        "{stderr}"
    );

    // Gone while the connection was down, as a server restart empties the queue: lost.
    let proxy = CuttingProxy::start(&url).await;
    let (waiting, id) = start_waiting(&[
        "submit",
        "--wait",
        &workflow_path("small_save.json"),
        &proxy.url(),
    ])
    .await;
    proxy.cut_and_block();
    client
        .delete_queued(std::slice::from_ref(&id))
        .await
        .unwrap();
    proxy.unblock();
    let out = finish(waiting).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), code(Exit::Lost), "{stderr}");
    assert!(stderr.contains("connection lost: "), "{stderr}");
    assert!(
        stderr.contains("lost: the prompt left the queue"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(" after "),
        "no duration for a lost prompt: {stderr}"
    );
    client.interrupt(Some(&long)).await.unwrap();
}

#[test]
fn completions_and_the_man_page_end_quietly_when_their_reader_is_gone() {
    for args in [&["completions", "zsh"][..], &["man"][..]] {
        // A pipe whose reader is already closed: the first write fails (`| head` that left).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_comfytop"))
            .args(args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    }
}
