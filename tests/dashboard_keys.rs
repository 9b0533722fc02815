//! The dashboard's control keys against the simulator over loopback: keys go through `update`,
//! the confirmed command runs as the dashboard's executor runs it, and the server's queue shows
//! that only what was targeted was hit.

mod support;

use comfytop::app::{Command, Event, Reply, State, update};
use comfytop::comfy::api::{History, PromptRequest};
use comfytop::comfy::connection::ConnEvent;
use comfytop::comfy::http::ComfyClient;
use comfytop::comfy::server_url::ServerUrl;
use comfytop::control::{Access, Done, ServerAction, history_outcome, perform};
use comfytop::dashboard::act;
use comfytop::tracker::{TrackerCommand, TrackerInput};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use support::*;

const US: &str = "0c0ffee0-comfytop";

async fn submit(client: &ComfyClient, client_id: &str) -> String {
    let request = PromptRequest {
        prompt: workflow("long_run_interruptible.json"),
        client_id: Some(client_id.to_string()),
        ..PromptRequest::default()
    };
    match perform(client, Access::ReadWrite, &ServerAction::submit(request))
        .await
        .unwrap()
    {
        Done::Queued { accepted, .. } => accepted.prompt_id,
        other => panic!("{other:?}"),
    }
}

/// A dashboard whose tracker has seen the server's queue as it is now.
struct Dashboard {
    state: State,
    client: ComfyClient,
    now: f64,
}

impl Dashboard {
    async fn connect(url: &str) -> Self {
        let mut state = State::new(ServerUrl::parse(url).unwrap(), US, 0.0);
        update(
            &mut state,
            0.0,
            Event::Conn(
                0,
                ConnEvent::Connected {
                    sid: Some(US.into()),
                    features: None,
                },
            ),
        );
        let mut dashboard = Self {
            state,
            client: client(url),
            now: 0.0,
        };
        dashboard.sync().await;
        dashboard
    }

    /// Answers a `/queue` fetch with what the server says now.
    async fn sync(&mut self) {
        self.now += 0.1;
        let snapshot = queue(&self.client).await;
        update(
            &mut self.state,
            self.now,
            Event::Reply(
                0,
                Reply::Tracker {
                    command: TrackerCommand::FetchQueue,
                    result: Ok(TrackerInput::Queue(snapshot)),
                },
            ),
        );
        update(
            &mut self.state,
            self.now,
            Event::Reply(
                0,
                Reply::Tracker {
                    command: TrackerCommand::FetchHistory { max_items: 64 },
                    result: Ok(TrackerInput::History(History::default())),
                },
            ),
        );
    }

    fn select_queue_row(&mut self, id: &str) {
        let rows: Vec<String> = self
            .state
            .queue_rows()
            .iter()
            .map(|p| p.id.clone())
            .collect();
        let index = rows.iter().position(|r| r == id).unwrap();
        self.press(KeyCode::Home);
        for _ in 0..index {
            self.press(KeyCode::Down);
        }
    }

    /// Presses a key and runs what it asks the server to do, as the executor does.
    async fn keys(&mut self, codes: &[KeyCode]) {
        for code in codes {
            let commands = self.press(*code);
            for command in commands {
                if let Command::Act(_, action) = command {
                    let reply = act(&self.client, self.state.access, action).await;
                    update(&mut self.state, self.now, Event::Reply(0, reply));
                }
            }
        }
    }

    fn press(&mut self, code: KeyCode) -> Vec<Command> {
        update(
            &mut self.state,
            self.now,
            Event::Key(KeyEvent::new(code, KeyModifiers::NONE)),
        )
    }

    fn notice(&self) -> String {
        self.state
            .ui
            .notice
            .as_ref()
            .map(|n| n.text.clone())
            .unwrap_or_default()
    }
}

async fn pending(client: &ComfyClient) -> Vec<String> {
    queue(client)
        .await
        .pending_in_run_order()
        .iter()
        .map(|i| i.prompt_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_hit_only_what_was_targeted() {
    let server = TestServer::start().await;
    let client = client(&server.url());
    let running = submit(&client, "web-ui").await;
    until_running(&client, &running).await;
    let a = submit(&client, "web-ui").await;
    let b = submit(&client, "script").await;
    let c = submit(&client, "web-ui").await;
    let mut dashboard = Dashboard::connect(&server.url()).await;

    // d on b, then y: only b leaves the queue.
    dashboard.select_queue_row(&b);
    dashboard.keys(&[KeyCode::Char('d')]).await;
    assert_eq!(
        pending(&client).await,
        [a.as_str(), &b, &c],
        "nothing before the yes"
    );
    dashboard.keys(&[KeyCode::Char('y')]).await;
    assert_eq!(
        dashboard.notice(),
        format!("deleted pending prompt {}", &b[..8])
    );
    assert_eq!(pending(&client).await, [a.as_str(), &c]);
    assert_eq!(queue(&client).await.queue_running[0].prompt_id, running);
    dashboard.sync().await;

    // r on a: the same graph, under our client id, in the queue at once.
    dashboard.select_queue_row(&a);
    dashboard.keys(&[KeyCode::Char('r')]).await;
    let rows: Vec<String> = dashboard
        .state
        .queue_rows()
        .iter()
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?} / {}", dashboard.notice());
    let requeued = rows[3].clone();
    assert!(
        dashboard
            .state
            .server()
            .tracker
            .prompt(&requeued)
            .unwrap()
            .ours
    );
    assert!(
        dashboard
            .notice()
            .starts_with(&format!("requeued {} as", &a[..8])),
        "{}",
        dashboard.notice()
    );
    // The graph the requeue fetched and sent back, as the server holds it.
    let item = client.queued_prompt(&requeued).await.unwrap().unwrap();
    assert_eq!(item.client_id(), Some(US));
    assert_eq!(item.prompt, workflow("long_run_interruptible.json"));
    assert_eq!(pending(&client).await, [a.as_str(), &c, &requeued]);

    // X, then y: every pending prompt goes; the running one stays.
    dashboard.sync().await;
    dashboard.keys(&[KeyCode::Char('X')]).await;
    assert_eq!(pending(&client).await.len(), 3, "nothing before the yes");
    dashboard.keys(&[KeyCode::Char('y')]).await;
    assert_eq!(dashboard.notice(), "removed 3 pending prompts");
    assert!(pending(&client).await.is_empty());
    assert_eq!(queue(&client).await.queue_running[0].prompt_id, running);

    // c, then y: the running prompt, and only it, is interrupted.
    dashboard.sync().await;
    dashboard
        .keys(&[KeyCode::Char('c'), KeyCode::Char('y')])
        .await;
    assert_eq!(
        server.interrupts().await,
        [format!("Interrupting prompt {running}")]
    );
    let entry = until_finished(&client, &running).await;
    assert_eq!(history_outcome(&running, &entry).label(), "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_keys_leave_the_server_alone() {
    let server = TestServer::start().await;
    let client = client(&server.url());
    let running = submit(&client, "web-ui").await;
    until_running(&client, &running).await;
    let a = submit(&client, "web-ui").await;
    let mut dashboard = Dashboard::connect(&server.url()).await;
    dashboard.state.access = Access::ReadOnly;
    dashboard.select_queue_row(&a);
    for key in ['d', 'y', 'X', 'y', 'c', 'y', 'r', 'F', 'u', 'y'] {
        dashboard.keys(&[KeyCode::Char(key)]).await;
    }
    assert!(dashboard.notice().starts_with("comfytop is read-only"));
    assert_eq!(pending(&client).await, [a.as_str()]);
    assert!(server.interrupts().await.is_empty());
}
