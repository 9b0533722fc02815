//! The WebSocket connection task against in-test servers on loopback.

use std::time::Duration;

use bytes::Bytes;
use comfytop::comfy::binary::BinaryFrame;
use comfytop::comfy::connection::{ConnEvent, Connection, ConnectionConfig, ReceivedFrame};
use comfytop::comfy::protocol::ServerMessage;
use comfytop::comfy::server_url::ServerUrl;
use comfytop::comfy::{Decoded, RawFrame};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const CLIENT_ID: &str = "5b0c1f4e-2a63-4a0e-9d3f-7f1e8f2f9a11";

/// Guards against a hung test only; no test depends on how long anything takes.
const HANG_GUARD: Duration = Duration::from_secs(20);

type ServerSocket = WebSocketStream<TcpStream>;

fn config(listener: &TcpListener) -> ConnectionConfig {
    let addr = listener.local_addr().unwrap();
    let server = ServerUrl::parse(&format!("http://{addr}")).unwrap();
    let mut config = ConnectionConfig::new(server, CLIENT_ID);
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_secs(30);
    config.close_timeout = Duration::from_millis(500);
    config
}

async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Accepts one WebSocket and returns it with the request's path and query.
async fn accept(listener: &TcpListener) -> (ServerSocket, String) {
    let (stream, _) = listener.accept().await.unwrap();
    accept_stream(stream).await
}

// The callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn accept_stream(stream: TcpStream) -> (ServerSocket, String) {
    let mut uri = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(
        stream,
        |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
            uri = request.uri().to_string();
            Ok(response)
        },
    )
    .await
    .unwrap();
    (ws, uri)
}

/// Plays ComfyUI's side of the handshake: reads the client's first message (returned), answers
/// with the connect-time status (sid = clientId) and the feature flags.
async fn comfy_handshake(ws: &mut ServerSocket) -> Message {
    let first = ws.next().await.unwrap().unwrap();
    ws.send(Message::text(status_json(0, Some(CLIENT_ID))))
        .await
        .unwrap();
    ws.send(Message::text(server_flags_json())).await.unwrap();
    first
}

fn status_json(queue_remaining: u64, sid: Option<&str>) -> String {
    let mut data = json!({"status": {"exec_info": {"queue_remaining": queue_remaining}}});
    if let Some(sid) = sid {
        data["sid"] = json!(sid);
    }
    json!({"type": "status", "data": data}).to_string()
}

fn server_flags_json() -> String {
    json!({"type": "feature_flags", "data": {"supports_preview_metadata": true, "max_upload_size": 104857600}})
        .to_string()
}

async fn next_event(events: &mut mpsc::Receiver<ConnEvent>) -> ConnEvent {
    tokio::time::timeout(HANG_GUARD, events.recv())
        .await
        .expect("no event in time")
        .expect("event channel closed")
}

async fn next_frame(events: &mut mpsc::Receiver<ConnEvent>) -> ReceivedFrame {
    match next_event(events).await {
        ConnEvent::Frame(frame) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// Skips events up to and including the next `Connected`.
async fn until_connected(events: &mut mpsc::Receiver<ConnEvent>) -> ConnEvent {
    loop {
        let event = next_event(events).await;
        if matches!(event, ConnEvent::Connected { .. }) {
            return event;
        }
    }
}

fn message_kind(frame: &ReceivedFrame) -> &str {
    match &frame.decoded {
        Decoded::Message(m) => m.kind(),
        Decoded::Binary(_) => "binary",
        Decoded::Malformed { .. } => "malformed",
    }
}

fn query_client_id(uri: &str) -> Option<String> {
    let url = url::Url::parse(&format!("http://x{uri}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "clientId")
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn sends_flags_first_and_passes_every_frame_in_order_even_garbage() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let connection = Connection::spawn(config(&listener), tx);

    let preview = BinaryFrame::parse(Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xd8]))
        .unwrap()
        .encode();
    let server = tokio::spawn(async move {
        let (mut ws, uri) = accept(&listener).await;
        let first = comfy_handshake(&mut ws).await;
        let executing = json!({"type": "executing", "data": {"node": "3", "prompt_id": "p1"}});
        ws.send(Message::text(executing.to_string())).await.unwrap();
        ws.send(Message::binary(preview)).await.unwrap();
        ws.send(Message::text("this is not json")).await.unwrap();
        ws.send(Message::binary(Bytes::from_static(&[0, 0, 0])))
            .await
            .unwrap();
        ws.send(Message::text(status_json(1, None))).await.unwrap();
        (uri, first, ws)
    });

    assert_eq!(
        next_event(&mut events).await,
        ConnEvent::Connecting { attempt: 1 }
    );
    let ConnEvent::Connected { sid, features } = next_event(&mut events).await else {
        panic!("expected Connected");
    };
    assert_eq!(sid.as_deref(), Some(CLIENT_ID));
    let features = features.expect("server flags");
    assert!(features.supports_preview_metadata());
    assert_eq!(features.max_upload_size(), Some(104857600));

    let mut frames = Vec::new();
    for _ in 0..7 {
        frames.push(next_frame(&mut events).await);
    }
    let kinds: Vec<&str> = frames.iter().map(message_kind).collect();
    assert_eq!(
        kinds,
        [
            "status",
            "feature_flags",
            "executing",
            "binary",
            "malformed",
            "malformed",
            "status"
        ]
    );
    assert_eq!(frames[4].raw, RawFrame::Text("this is not json".into()));
    assert!(frames.windows(2).all(|w| w[0].t <= w[1].t));
    let Decoded::Message(ServerMessage::Status(last)) = &frames[6].decoded else {
        panic!("last frame is not a status");
    };
    assert_eq!(last.queue_remaining(), 1);

    let (uri, first, _ws) = server.await.unwrap();
    assert!(uri.starts_with("/ws?"), "{uri}");
    assert_eq!(query_client_id(&uri).as_deref(), Some(CLIENT_ID));
    let Message::Text(first) = first else {
        panic!("first client message is not text: {first:?}");
    };
    let first: Value = serde_json::from_str(first.as_str()).unwrap();
    assert_eq!(
        first,
        json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
    );
    connection.close().await;
}

#[tokio::test]
async fn reconnects_with_the_same_id_and_a_fresh_backoff_after_each_healthy_socket() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let connection = Connection::spawn(config(&listener), tx);

    let server = tokio::spawn(async move {
        let mut uris = Vec::new();
        for round in 0..4 {
            let (mut ws, uri) = accept(&listener).await;
            uris.push(uri);
            comfy_handshake(&mut ws).await;
            match round {
                // A clean close: Close frame, wait for the answer.
                0 => {
                    ws.close(None).await.unwrap();
                    while let Some(Ok(_)) = ws.next().await {}
                }
                // An abrupt drop of the TCP connection.
                1 | 2 => drop(ws),
                // Stays up.
                _ => return (uris, ws),
            }
        }
        unreachable!()
    });

    let mut delays = Vec::new();
    let mut connected = 0;
    while connected < 4 {
        match next_event(&mut events).await {
            ConnEvent::Connected { sid, .. } => {
                assert_eq!(sid.as_deref(), Some(CLIENT_ID));
                connected += 1;
            }
            ConnEvent::Disconnected { reason } => {
                assert!(reason.contains("127.0.0.1"), "{reason}");
            }
            // Every socket got its status: each outage starts the schedule over.
            ConnEvent::Reconnecting { attempt, delay } => {
                assert_eq!(attempt, 1);
                delays.push(delay);
            }
            ConnEvent::Connecting { attempt } => assert_eq!(attempt, 1),
            ConnEvent::Frame(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delays.len(), 3, "{delays:?}");
    assert!(
        delays.iter().all(|d| *d <= Duration::from_millis(20)),
        "{delays:?}"
    );

    let (uris, _ws) = server.await.unwrap();
    for uri in &uris {
        assert_eq!(query_client_id(uri).as_deref(), Some(CLIENT_ID), "{uri}");
    }
    connection.close().await;
}

/// True when the peer has closed `stream` (EOF or reset); reads only what is already there.
fn peer_has_closed(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn a_silent_server_is_dropped_and_its_socket_closed_before_reconnecting() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let mut config = config(&listener);
    config.ping_interval = Duration::from_millis(50);
    config.ping_timeout = Duration::from_millis(100);
    config.close_timeout = Duration::from_millis(100);
    let connection = Connection::spawn(config, tx);

    let server = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        comfy_handshake(&mut ws).await;
        // Go silent: keep the TCP connection open but never read, so pings get no pong.
        let silent = ws.into_inner();
        let (stream, _) = listener.accept().await.unwrap();
        // By the time the client connects again, the old socket must be closed.
        let old_socket_closed = peer_has_closed(&silent);
        let (mut ws, uri) = accept_stream(stream).await;
        comfy_handshake(&mut ws).await;
        (old_socket_closed, uri, ws)
    });

    until_connected(&mut events).await;
    let reason = loop {
        match next_event(&mut events).await {
            ConnEvent::Disconnected { reason } => break reason,
            ConnEvent::Frame(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(reason.contains("no answer"), "{reason}");
    // It had its status: the first attempt of a new outage.
    assert!(matches!(
        next_event(&mut events).await,
        ConnEvent::Reconnecting { attempt: 1, .. }
    ));
    assert_eq!(
        next_event(&mut events).await,
        ConnEvent::Connecting { attempt: 1 }
    );
    until_connected(&mut events).await;

    let (old_socket_closed, uri, _ws) = server.await.unwrap();
    assert!(
        old_socket_closed,
        "reconnected while the old socket was open"
    );
    assert_eq!(query_client_id(&uri).as_deref(), Some(CLIENT_ID));
    connection.close().await;
}

/// Answers one HTTP request with `response`, as a web server that is not ComfyUI would.
async fn answer_http(listener: &TcpListener, response: &str) {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        stream.readable().await.unwrap();
        match stream.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("{e}"),
        }
    }
    stream.write_all(response.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_server_that_is_not_comfyui_is_named_as_such_and_retried() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let connection = Connection::spawn(config(&listener), tx);

    let server = tokio::spawn(async move {
        answer_http(
            &listener,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nConnection: close\r\n\r\nNot Found",
        )
        .await;
        let page = "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>";
        answer_http(
            &listener,
            &format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            ),
        )
        .await;
        listener
    });

    let mut reasons = Vec::new();
    while reasons.len() < 2 {
        if let ConnEvent::Disconnected { reason } = next_event(&mut events).await {
            reasons.push(reason);
        }
    }
    for reason in &reasons {
        assert!(reason.contains("does not look like ComfyUI"), "{reason}");
        assert!(reason.contains("http://127.0.0.1:"), "{reason}");
    }
    assert!(reasons[0].contains("404"), "{}", reasons[0]);
    assert!(reasons[1].contains("HTML page"), "{}", reasons[1]);
    // It keeps trying.
    assert!(matches!(
        next_event(&mut events).await,
        ConnEvent::Reconnecting { attempt: 3, .. }
    ));
    let _listener = server.await.unwrap();
    connection.close().await;
}

#[tokio::test]
async fn a_closed_port_is_reported_unreachable_and_retried() {
    let listener = listen().await;
    let config = config(&listener);
    drop(listener);
    let (tx, mut events) = mpsc::channel(64);
    let connection = Connection::spawn(config, tx);

    assert_eq!(
        next_event(&mut events).await,
        ConnEvent::Connecting { attempt: 1 }
    );
    let ConnEvent::Disconnected { reason } = next_event(&mut events).await else {
        panic!("expected Disconnected");
    };
    assert!(reason.contains("cannot reach"), "{reason}");
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(matches!(
        next_event(&mut events).await,
        ConnEvent::Reconnecting { attempt: 2, .. }
    ));
    assert_eq!(
        next_event(&mut events).await,
        ConnEvent::Connecting { attempt: 2 }
    );
    connection.close().await;
}

#[tokio::test]
async fn refused_attempts_wait_longer_each_time_up_to_the_early_cap() {
    let listener = listen().await;
    let mut config = config(&listener);
    drop(listener);
    config.backoff_max_early = Duration::from_millis(80);
    let (tx, mut events) = mpsc::channel(64);
    let connection = Connection::spawn(config, tx);

    let mut delays = Vec::new();
    while delays.len() < 5 {
        if let ConnEvent::Reconnecting { attempt, delay } = next_event(&mut events).await {
            assert_eq!(attempt as usize, delays.len() + 2);
            delays.push(delay.as_secs_f64());
        }
    }
    // 20, 40, 80, 80, 80 ms, each 75–100 % of that.
    for (delay, base) in delays.iter().zip([0.02, 0.04, 0.08, 0.08, 0.08]) {
        assert!(*delay <= base && *delay >= base * 0.75, "{delays:?}");
    }
    connection.close().await;
}

#[tokio::test]
async fn a_silent_socket_is_reported_quiet_until_data_flows_again() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let mut config = config(&listener);
    config.ping_interval = Duration::from_millis(50);
    // Dead only after a long silence: this test is about what comes before.
    config.ping_timeout = Duration::from_secs(15);
    config.quiet_after = Duration::from_millis(300);
    config.quiet_every = Duration::from_millis(200);
    let connection = Connection::spawn(config, tx);

    let (speak, speak_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        comfy_handshake(&mut ws).await;
        // Never reads, so pings go unanswered; speaks once told to.
        let _ = speak_rx.await;
        ws.send(Message::text(status_json(3, None))).await.unwrap();
        ws
    });

    until_connected(&mut events).await;
    let mut silences = Vec::new();
    while silences.len() < 2 {
        match next_event(&mut events).await {
            ConnEvent::Quiet { silent_for } => silences.push(silent_for),
            ConnEvent::Frame(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(silences[0] >= Duration::from_millis(300), "{silences:?}");
    assert!(silences[1] > silences[0], "{silences:?}");
    speak.send(()).unwrap();
    loop {
        match next_event(&mut events).await {
            ConnEvent::Quiet { .. } => {}
            ConnEvent::Resumed => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let frame = next_frame(&mut events).await;
    assert_eq!(message_kind(&frame), "status");
    let _ws = server.await.unwrap();
    connection.close().await;
}

#[tokio::test]
async fn close_sends_a_close_frame_and_ends_the_task() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let connection = Connection::spawn(config(&listener), tx);

    let server = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        comfy_handshake(&mut ws).await;
        let mut seen = Vec::new();
        while let Some(Ok(message)) = ws.next().await {
            seen.push(message);
        }
        seen
    });

    until_connected(&mut events).await;
    connection.close().await;
    let seen = server.await.unwrap();
    assert!(
        seen.iter().any(|m| matches!(m, Message::Close(_))),
        "{seen:?}"
    );
    // The task is over: the channel ends without a reconnect.
    while let Some(event) = events.recv().await {
        assert!(
            matches!(event, ConnEvent::Frame(_)),
            "unexpected after close: {event:?}"
        );
    }
}

#[tokio::test]
async fn reopen_closes_the_socket_properly_before_the_next_one_opens_under_the_same_id() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let connection = Connection::spawn(config(&listener), tx);

    let (mut first, first_uri) = accept(&listener).await;
    comfy_handshake(&mut first).await;
    until_connected(&mut events).await;
    connection.reopen();
    // The old socket closes with a Close frame, and is gone, before the new one is asked for.
    let mut seen = Vec::new();
    while let Some(Ok(message)) = first.next().await {
        seen.push(message);
    }
    assert!(
        seen.iter().any(|m| matches!(m, Message::Close(_))),
        "{seen:?}"
    );
    let (mut second, second_uri) = accept(&listener).await;
    comfy_handshake(&mut second).await;
    let mut reason = None;
    loop {
        match next_event(&mut events).await {
            ConnEvent::Disconnected { reason: r } => reason = Some(r),
            ConnEvent::Connected { .. } => break,
            _ => {}
        }
    }
    let reason = reason.expect("no Disconnected between the two sockets");
    assert!(
        reason.contains("stopped sending to this client"),
        "{reason}"
    );
    assert_eq!(query_client_id(&first_uri), query_client_id(&second_uri));
    connection.close().await;
}

#[tokio::test]
async fn the_task_ends_and_closes_the_socket_when_nobody_listens() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let _connection = Connection::spawn(config(&listener), tx);
    let (mut ws, _) = accept(&listener).await;
    comfy_handshake(&mut ws).await;
    until_connected(&mut events).await;
    drop(events);

    // The next frame finds no receiver; the task closes the socket.
    ws.send(Message::text(status_json(2, None))).await.unwrap();
    let mut got_close = false;
    while let Some(Ok(message)) = ws.next().await {
        got_close |= matches!(message, Message::Close(_));
    }
    assert!(got_close);
}

#[tokio::test]
async fn a_server_without_flags_still_connects_after_a_short_wait() {
    let listener = listen().await;
    let (tx, mut events) = mpsc::channel(64);
    let mut config = config(&listener);
    config.handshake_wait = Duration::from_millis(100);
    let connection = Connection::spawn(config, tx);

    let server = tokio::spawn(async move {
        let (mut ws, _) = accept(&listener).await;
        let _flags = ws.next().await;
        ws.send(Message::text(status_json(0, Some("old-sid"))))
            .await
            .unwrap();
        ws
    });

    assert_eq!(
        next_event(&mut events).await,
        ConnEvent::Connecting { attempt: 1 }
    );
    assert_eq!(
        next_event(&mut events).await,
        ConnEvent::Connected {
            sid: Some("old-sid".into()),
            features: None
        }
    );
    assert_eq!(message_kind(&next_frame(&mut events).await), "status");
    let _ws = server.await.unwrap();
    connection.close().await;
}

#[tokio::test]
async fn wss_is_attempted_and_a_server_without_tls_is_reported() {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    let mut config = config(&listener);
    config.server = ServerUrl::parse(&format!("https://{addr}")).unwrap();
    let (tx, mut events) = mpsc::channel(64);
    let connection = Connection::spawn(config, tx);

    // A plain HTTP server sees the TLS ClientHello and answers in plain text.
    let server = tokio::spawn(async move {
        answer_http_raw(
            &listener,
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
        )
        .await;
        listener
    });
    assert_eq!(
        next_event(&mut events).await,
        ConnEvent::Connecting { attempt: 1 }
    );
    let ConnEvent::Disconnected { reason } = next_event(&mut events).await else {
        panic!("expected Disconnected");
    };
    assert!(reason.contains("TLS"), "{reason}");
    assert!(reason.contains(&format!("https://{addr}")), "{reason}");
    let _listener = server.await.unwrap();
    connection.close().await;
}

/// Reads whatever arrives first and answers `response`, whatever the request was.
async fn answer_http_raw(listener: &TcpListener, response: &str) {
    let (mut stream, _) = listener.accept().await.unwrap();
    stream.readable().await.unwrap();
    let mut buf = [0u8; 4096];
    let _ = stream.try_read(&mut buf);
    stream.write_all(response.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
}
