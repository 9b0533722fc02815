//! The kept clientId: a comfytop killed while its prompt runs and started again gets that
//! prompt's live events again (ComfyUI sends them only to the id that queued it), and a second
//! comfytop on the same server takes a fresh id instead of silencing the first.

mod support;

use std::io::{BufRead as _, BufReader};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comfy_sim::{SimConfig, SimServer};
use support::{comfytop, text, workflow_path};

/// A running `comfytop watch --json` and the lines it printed so far.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(url: &str, state: &std::path::Path) -> Self {
        let mut command = comfytop(&["watch", url, "--json"]);
        command.env("COMFYTOP_STATE_DIR", state);
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// Waits (at most 20 s) for a line `wanted` accepts.
    async fn until(&self, what: &str, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.lines.lock().unwrap().iter().any(|l| wanted(l)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {what} in {:#?}", self.lines.lock().unwrap());
    }

    fn kill(mut self) -> String {
        let _ = self.child.kill();
        let out = self.child.wait_with_output().unwrap();
        text(&out.stderr)
    }
}

fn is_progress_of(line: &str, prompt_id: &str) -> bool {
    line.contains("\"event\":\"progress\"") && line.contains(prompt_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_comfytop_gets_the_live_progress_of_its_prompt_again() {
    let sim = SimServer::start(SimConfig {
        step: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let url = sim.url();
    let state = tempfile::tempdir().unwrap();

    let first = Watch::start(&url, state.path());
    first
        .until("connection", |l| l.contains("\"event\":\"connected\""))
        .await;
    // Queued under the kept id, as the dashboard's requeue or `submit` would.
    let workflow = workflow_path("slow_steps_full.json");
    let mut submit = comfytop(&[
        "submit",
        &workflow,
        &url,
        "--set",
        "1.steps=400",
        "--set",
        "1.delay=1.0",
    ]);
    submit.env("COMFYTOP_STATE_DIR", state.path());
    let submitted = tokio::task::spawn_blocking(move || submit.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let prompt_id = text(&submitted.stdout).trim().to_string();
    first
        .until("progress of our prompt", |l| is_progress_of(l, &prompt_id))
        .await;

    // Killed mid-prompt, no goodbye: the next one must get the same id and the same events.
    first.kill();
    let second = Watch::start(&url, state.path());
    second
        .until("progress after the restart", |l| {
            is_progress_of(l, &prompt_id)
        })
        .await;

    // A third on the same server while the second runs takes a fresh id and says so.
    let third = Watch::start(&url, state.path());
    third
        .until("connection", |l| l.contains("\"event\":\"connected\""))
        .await;
    let said = third.kill();
    assert!(
        said.contains("another comfytop on this machine follows this server")
            && said.contains("fresh id"),
        "{said}"
    );
    // The second kept getting its prompt's events.
    let seen = second.lines.lock().unwrap().len();
    second
        .until("more progress", |l| is_progress_of(l, &prompt_id))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(second.lines.lock().unwrap().len() > seen);
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_client_id_is_used_as_it_is_and_a_bad_one_is_refused() {
    let state = tempfile::tempdir().unwrap();
    let mut bad = comfytop(&["watch", "127.0.0.1:9", "--client-id", "two words"]);
    bad.env("COMFYTOP_STATE_DIR", state.path());
    let out = tokio::task::spawn_blocking(move || bad.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot be a client id"),
        "{}",
        text(&out.stderr)
    );
}
