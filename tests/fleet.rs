//! Several servers at once against three simulators: the fleet view, switching servers by
//! number and bracket in a pseudo-terminal, the server bar's flags, one server killed while the
//! others keep updating, and `watch` and `queue --json` over several servers.

mod support;

use std::time::Duration;

use comfy_sim::{SimConfig, SimFleet, SimHandle};
use comfytop::comfy::api::PromptRequest;
use support::pty::{Answers, PtyApp};
use support::{client, comfytop, run, run_prompt_from_elsewhere, text, until_finished, workflow};

fn fleet(runtime: &tokio::runtime::Runtime) -> Vec<SimHandle> {
    let base = SimConfig {
        step: Duration::from_millis(5),
        ..SimConfig::default()
    };
    runtime
        .block_on(SimFleet::start(SimFleet::configs(&base, 3)))
        .unwrap()
        .servers
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

#[test]
fn the_fleet_view_switches_servers_flags_news_and_survives_one_going_down() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut sims = fleet(&runtime);
    let urls: Vec<String> = sims.iter().map(SimHandle::url).collect();
    let names: Vec<String> = urls.iter().map(|u| host_port(u)).collect();
    let args: Vec<&str> = urls
        .iter()
        .map(String::as_str)
        .chain(["--image-protocol", "none"])
        .collect();
    let mut app = PtyApp::spawn_with(&args, &[], 130, 30, Answers::Status);
    let screen = app.wait_for("three connected rows", Duration::from_secs(20), |s| {
        s.contains("Fleet 3 servers") && s.matches("● connected").count() >= 3
    });
    for name in &names {
        assert!(screen.contains(name.as_str()), "{screen}");
    }

    // 2 opens the second server's dashboard; ] and [ go round.
    app.send(b"2");
    let screen = app.wait_for("server 2", Duration::from_secs(10), |s| {
        s.lines()
            .next()
            .is_some_and(|top| top.contains(names[1].as_str()))
            && s.contains("Queue")
    });
    assert!(!screen.contains("Fleet 3 servers"), "{screen}");
    app.send(b"]");
    app.wait_for("server 3", Duration::from_secs(10), |s| {
        s.lines()
            .next()
            .is_some_and(|top| top.contains(names[2].as_str()))
    });
    app.send(b"[");
    app.wait_for("server 2 again", Duration::from_secs(10), |s| {
        s.lines()
            .next()
            .is_some_and(|top| top.contains(names[1].as_str()))
    });

    // A prompt that ends on server 3 while server 2 is shown flags it in the server bar.
    run_prompt_from_elsewhere(&runtime, &urls[2]);
    app.wait_for("server 3 flagged", Duration::from_secs(10), |s| {
        s.lines()
            .nth(1)
            .is_some_and(|bar| bar.contains(&format!("3 {} ●✓", names[2])))
    });

    // Server 1 goes away: the fleet says so, and server 3 keeps updating.
    let first = sims.remove(0);
    runtime.block_on(first.shutdown());
    app.send(b"0");
    app.wait_for("server 1 down", Duration::from_secs(20), |s| {
        s.lines().any(|line| {
            line.contains(names[0].as_str())
                && (line.contains("offline")
                    || line.contains("reconnecting")
                    || line.contains("connecting"))
        })
    });
    run_prompt_from_elsewhere(&runtime, &urls[2]);
    app.wait_for("server 3 still updating", Duration::from_secs(20), |s| {
        s.lines()
            .any(|line| line.contains(names[2].as_str()) && line.contains("✓ success"))
    });
    // s sorts by queue, then by state: the server in trouble first.
    app.send(b"ss");
    let screen = app.wait_for("sorted by state", Duration::from_secs(10), |s| {
        s.contains("sorted by state")
    });
    let first_row = screen
        .lines()
        .find(|line| names.iter().any(|n| line.contains(&format!(" {n} "))) && line.contains('│'))
        .unwrap_or_default();
    assert!(first_row.contains(names[0].as_str()), "{screen}");
    app.send(b"q");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_queue_over_several_servers_name_each_line() {
    let base = SimConfig {
        step: Duration::from_millis(5),
        ..SimConfig::default()
    };
    let sims = SimFleet::start(SimFleet::configs(&base, 2)).await.unwrap();
    let urls = sims.urls();
    let names: Vec<String> = urls.iter().map(|u| host_port(u)).collect();

    // Each line starts with its server's name; both connect.
    let mut child = comfytop(&["watch", &urls[0], &urls[1]]).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let wanted = names.clone();
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            lines.push(line);
            let connected = |name: &String| {
                lines
                    .iter()
                    .any(|l| l.starts_with(name.as_str()) && l.contains("-- connected to"))
            };
            if wanted.iter().all(connected) {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(20), reader).await;
    let _ = child.kill();
    let _ = child.wait();
    let lines = lines.expect("both servers connect within 20 s").unwrap();
    assert!(
        lines
            .iter()
            .all(|l| names.iter().any(|n| l.starts_with(&format!("{n} │ ")))),
        "{lines:#?}"
    );

    let dead = format!("127.0.0.1:{}", free_port());
    let out = run(&["queue", &urls[0], &urls[1], &dead, "--json"]).await;
    assert_eq!(out.status.code(), Some(5), "one of three is down");
    let objects: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let named: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["server_name"].as_str())
        .collect();
    assert_eq!(named, [names[0].as_str(), names[1].as_str()]);
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
    sims.shutdown().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A ComfyUI stand-in with an empty queue that lacks one node type: `GET /object_info/{class}`
/// answers `{}` for it, as ComfyUI does for a class it does not have.
async fn server_without(missing: &'static str) -> String {
    use axum::extract::Path;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/queue",
            get(|| async {
                axum::Json(serde_json::json!({"queue_running": [], "queue_pending": []}))
            }),
        )
        .route(
            "/object_info/{class}",
            get(move |Path(class): Path<String>| async move {
                let mut info = serde_json::Map::new();
                if class != missing {
                    info.insert(class, serde_json::json!({"input": {}}));
                }
                axum::Json(serde_json::Value::Object(info))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_to_auto_takes_the_shortest_queue_among_servers_with_every_node_type() {
    let base = SimConfig {
        step: Duration::from_millis(5),
        ..SimConfig::default()
    };
    let sims = SimFleet::start(SimFleet::configs(&base, 2)).await.unwrap();
    let urls = sims.urls();
    let lacking = server_without("SaveImage").await;
    // The first is busy: a long prompt runs and two wait.
    let busy = client(&urls[0]);
    let mut slow = workflow("slow_steps_full.json");
    slow["1"]["inputs"]["steps"] = 400.into();
    slow["1"]["inputs"]["delay"] = 1.0.into();
    for _ in 0..3 {
        let request = PromptRequest {
            prompt: slow.clone(),
            ..PromptRequest::default()
        };
        busy.submit(&request).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[servers.busy]\nurl = \"{}\"\n[servers.idle]\nurl = \"{}\"\n[servers.lacking]\nurl = \"{lacking}\"\n",
            urls[0], urls[1]
        ),
    )
    .unwrap();
    let workflow_file = support::workflow_path("small_save.json");
    let out = run(&[
        "submit",
        &workflow_file,
        "--to",
        "auto",
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("  busy: queue 3"), "{said}");
    assert!(said.contains("→ idle: queue 0"), "{said}");
    assert!(
        said.contains("  lacking: skipped, it lacks SaveImage"),
        "{said}"
    );
    let prompt_id = text(&out.stdout).trim().to_string();
    until_finished(&client(&urls[1]), &prompt_id).await;
    sims.shutdown().await;
}

#[test]
fn a_history_prompt_is_requeued_on_another_server_with_its_graph_or_refused_for_a_missing_node() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sims = fleet(&runtime);
    let urls: Vec<String> = sims.iter().map(SimHandle::url).collect();
    let lacking = runtime.block_on(server_without("SaveImage"));
    run_prompt_from_elsewhere(&runtime, &urls[0]);
    let args = [
        urls[0].as_str(),
        urls[1].as_str(),
        lacking.as_str(),
        "--image-protocol",
        "none",
    ];
    let mut app = PtyApp::spawn_with(&args, &[], 130, 30, Answers::Status);
    app.wait_for("the fleet", Duration::from_secs(20), |s| {
        s.contains("Fleet 3 servers")
    });
    // Server 1's history: its one prompt, selected.
    app.send(b"1");
    app.wait_for("server 1's history", Duration::from_secs(10), |s| {
        s.contains("History 1")
    });
    app.send(b"\t\t");
    app.send(b"T");
    let question = app.wait_for("the question", Duration::from_secs(10), |s| {
        s.contains("graph on") && s.contains(&host_port(&urls[1]))
    });
    assert!(question.contains("[ ] another server"), "{question}");
    app.send(b"y");
    // The same graph, on the other server, under our id there.
    let (source, target) = (client(&urls[0]), client(&urls[1]));
    let requeued_id = runtime.block_on(support::eventually("the requeued prompt", || async {
        let history = target.history(Some(10), None).await.ok()?;
        history.0.into_iter().next().map(|(id, _)| id)
    }));
    let original_id = runtime
        .block_on(source.history(Some(10), None))
        .unwrap()
        .0
        .into_iter()
        .next()
        .unwrap()
        .0;
    let requeued = runtime
        .block_on(target.queued_prompt(&requeued_id))
        .unwrap()
        .unwrap();
    let original = runtime
        .block_on(source.queued_prompt(&original_id))
        .unwrap()
        .unwrap();
    assert_eq!(requeued.prompt, original.prompt);
    assert!(
        requeued
            .extra_data
            .get("client_id")
            .and_then(|v| v.as_str())
            .is_some_and(|id| id.starts_with("comfytop-")),
        "{:?}",
        requeued.extra_data
    );

    // To the server without SaveImage: refused, and it says why.
    app.send(b"T");
    app.wait_for("the question", Duration::from_secs(10), |s| {
        s.contains("graph on")
    });
    app.send(b"]");
    app.wait_for("the other target", Duration::from_secs(10), |s| {
        s.contains(&format!("graph on {}", host_port(&lacking)))
    });
    app.send(b"y");
    app.wait_for("the refusal", Duration::from_secs(10), |s| {
        s.contains("not requeued") && s.contains("lacks SaveImage")
    });
    app.send(b"q");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
}
