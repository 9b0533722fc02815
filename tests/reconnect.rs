//! How soon the connection comes back after outages, against the simulated ComfyUI behind a
//! TCP proxy that cuts connections and refuses new ones while blocked.

mod support;

use std::time::Duration;

use comfytop::comfy::connection::{ConnEvent, Connection, ConnectionConfig, new_client_id};
use comfytop::comfy::server_url::ServerUrl;
use support::*;
use tokio::sync::mpsc;
use tokio::time::Instant;

fn config(url: &str) -> ConnectionConfig {
    let mut config = ConnectionConfig::new(ServerUrl::parse(url).unwrap(), new_client_id());
    config.close_timeout = Duration::from_millis(200);
    config
}

/// Skips events up to the next `Connected`; panics after [`PATIENCE`].
async fn until_connected(events: &mut mpsc::Receiver<ConnEvent>) {
    until(events, |e| matches!(e, ConnEvent::Connected { .. })).await;
}

async fn until(
    events: &mut mpsc::Receiver<ConnEvent>,
    wanted: impl Fn(&ConnEvent) -> bool,
) -> ConnEvent {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the awaited connection event never came")
            .expect("the connection task ended");
        if wanted(&event) {
            return event;
        }
    }
}

/// A kill that comes shortly after a reconnect must not inherit the long waits of the outage
/// before: the server is reached again within a short wait of being back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_soon_after_a_reconnect_is_recovered_within_a_short_wait() {
    let server = TestServer::start().await;
    let proxy = CuttingProxy::start(&server.url()).await;
    // The real schedule scaled down by ten: 50 ms doubling, at most 0.25 s while fresh.
    let mut config = config(&proxy.url());
    config.backoff_initial = Duration::from_millis(50);
    config.backoff_max_early = Duration::from_millis(250);
    let (tx, mut events) = mpsc::channel(256);
    let connection = Connection::spawn(config, tx);
    until_connected(&mut events).await;

    // A first outage, long enough for the waits to grow.
    proxy.cut_and_block();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.unblock();
    until_connected(&mut events).await;

    // Killed again right after the reconnect, then back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut_and_block();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let back = Instant::now();
    proxy.unblock();
    until_connected(&mut events).await;
    let blind = back.elapsed();
    // Waits are capped at 0.25 s; with the old schedule (no reset, cap 30 s) over 3.7 s.
    assert!(
        blind < Duration::from_secs(2),
        "reconnected {blind:?} after the server was back"
    );
    connection.close().await;
}

/// With the real schedule: a 0.3 s refusal after a healthy run is retried within about a
/// second, even when reaching the server at the start took several attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_refusal_after_a_healthy_run_is_retried_within_a_second() {
    let server = TestServer::start().await;
    let proxy = CuttingProxy::start(&server.url()).await;
    proxy.cut_and_block();
    let (tx, mut events) = mpsc::channel(256);
    let connection = Connection::spawn(config(&proxy.url()), tx);
    // Started before the server: three refused attempts (0.5 s, 1 s, then a 2 s wait).
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.unblock();
    until_connected(&mut events).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut_and_block();
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.unblock();
    until(&mut events, |e| matches!(e, ConnEvent::Connecting { .. })).await;
    let retried = cut.elapsed();
    until_connected(&mut events).await;
    let reconnected = cut.elapsed();
    // The first wait after a healthy connection is 0.5 s at most; before, it was 4 s.
    assert!(
        retried < Duration::from_millis(1200),
        "retried after {retried:?}"
    );
    assert!(
        reconnected < Duration::from_millis(2500),
        "reconnected after {reconnected:?}"
    );
    connection.close().await;
}

/// `retry_now` ends a long wait at once; asked for while connected, it is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_ends_the_wait_and_a_stale_request_does_not() {
    let server = TestServer::start().await;
    let proxy = CuttingProxy::start(&server.url()).await;
    let mut config = config(&proxy.url());
    config.backoff_initial = Duration::from_secs(40);
    config.backoff_max_early = Duration::from_secs(40);
    config.backoff_max = Duration::from_secs(40);
    let (tx, mut events) = mpsc::channel(256);
    let connection = Connection::spawn(config, tx);
    until_connected(&mut events).await;

    // Asked for while all is well: must not shorten the wait after the next failure.
    connection.retry_now();
    proxy.cut_and_block();
    let ConnEvent::Reconnecting { delay, .. } =
        until(&mut events, |e| matches!(e, ConnEvent::Reconnecting { .. })).await
    else {
        unreachable!()
    };
    assert!(delay >= Duration::from_secs(30), "{delay:?}");
    proxy.unblock();
    let early = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
    assert!(
        early.is_err(),
        "a stale retry request cut the wait: {early:?}"
    );

    let asked = Instant::now();
    connection.retry_now();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("retry_now did not end the wait"),
        Some(ConnEvent::Connecting { attempt: 1 })
    );
    until_connected(&mut events).await;
    assert!(asked.elapsed() < Duration::from_secs(10));
    connection.close().await;
}
