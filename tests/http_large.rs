//! Timeouts fit the body: a large reply that keeps arriving, or a large prompt the server takes
//! a while to read and validate, gets its per-megabyte allowance; a stuck server still times
//! out. Against a raw loopback server that paces its bytes.

use std::time::Duration;

use comfytop::comfy::api::PromptRequest;
use comfytop::comfy::http::{ComfyClient, HttpError, HttpTimeouts};
use comfytop::comfy::server_url::ServerUrl;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BASE: Duration = Duration::from_millis(400);

fn timeouts() -> HttpTimeouts {
    HttpTimeouts {
        request: BASE,
        per_mb: Duration::from_secs(2),
        ..HttpTimeouts::default()
    }
}

/// Reads one request (headers and a `Content-Length` body).
async fn read_request(stream: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client hung up");
        seen.extend_from_slice(&buf[..n]);
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while seen.len() < end + 4 + length {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client hung up");
                seen.extend_from_slice(&buf[..n]);
            }
            return;
        }
    }
}

/// A server that waits `first_byte`, then sends `body` in `pieces` spread over `spread`.
async fn paced_server(
    body: Vec<u8>,
    first_byte: Duration,
    pieces: usize,
    spread: Duration,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        read_request(&mut stream).await;
        tokio::time::sleep(first_byte).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let piece = body.len().div_ceil(pieces);
        for chunk in body.chunks(piece) {
            // The client may have given up; that is what some tests want.
            if stream.write_all(chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(spread / pieces as u32).await;
        }
    });
    format!("http://{addr}")
}

fn client(url: &str) -> ComfyClient {
    ComfyClient::with_timeouts(ServerUrl::parse(url).unwrap(), timeouts()).unwrap()
}

/// A `/queue` body of about `mb` megabytes.
fn big_queue(mb: usize) -> Vec<u8> {
    let filler = "x".repeat(mb * 1024 * 1024);
    serde_json::to_vec(&json!({
        "queue_running": [[0, "p", {"1": {"class_type": "LabRaiseError",
                                           "inputs": {"message": filler}}}, {}, ["1"]]],
        "queue_pending": [],
    }))
    .unwrap()
}

#[tokio::test]
async fn a_large_reply_still_arriving_gets_time_for_its_size() {
    // 3 MB over 1.2 s: three times the base timeout, well inside base + 3 × 2 s.
    let url = paced_server(
        big_queue(3),
        Duration::ZERO,
        12,
        Duration::from_millis(1200),
    )
    .await;
    let snapshot = client(&url).queue().await.unwrap();
    assert_eq!(snapshot.queue_running[0].prompt.node_count, 1);
}

#[tokio::test]
async fn a_reply_that_stops_arriving_times_out() {
    // Half the body, then nothing: the deadline for 3 MB passes.
    let url = paced_server(big_queue(3), Duration::ZERO, 2, Duration::from_secs(30)).await;
    let error = client(&url).queue().await.unwrap_err();
    assert!(
        matches!(error, HttpError::Timeout { after, .. } if after > BASE && after < BASE * 20),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_large_prompt_gets_time_to_be_read_and_validated() {
    let answer =
        serde_json::to_vec(&json!({"prompt_id": "p", "number": 1, "node_errors": {}})).unwrap();
    // The server answers after twice the base timeout, as it would after validating a big graph.
    let url = paced_server(answer, BASE * 2, 1, Duration::ZERO).await;
    let filler = "x".repeat(1024 * 1024);
    let request = PromptRequest {
        prompt: json!({"1": {"class_type": "LabRaiseError", "inputs": {"message": filler}}}),
        ..PromptRequest::default()
    };
    let accepted = client(&url).submit(&request).await.unwrap();
    assert_eq!(accepted.prompt_id, "p");
}

#[tokio::test]
async fn a_small_call_keeps_the_base_timeout() {
    let body = serde_json::to_vec(&Value::Object(Default::default())).unwrap();
    let url = paced_server(body, BASE * 4, 1, Duration::ZERO).await;
    let error = client(&url).queue().await.unwrap_err();
    assert!(
        matches!(error, HttpError::Timeout { after, .. } if after == BASE),
        "{error:?}"
    );
}
