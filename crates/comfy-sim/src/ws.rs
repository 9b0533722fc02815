//! The WebSocket endpoint: `status` with the sid first, the `executing` resend for a returning
//! owner, feature flags from the first message only, and ComfyUI's one-socket-per-id rules.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::Value;
use tokio::sync::watch;

use super::http::server_features;
use super::hub::{Outgoing, Target};
use super::state::Sim;
use comfy_client::protocol::{Executing, ServerMessage};

pub(crate) async fn upgrade(
    State(sim): State<Arc<Sim>>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let client_id = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "clientId")
            .map(|(_, v)| v.into_owned())
    });
    let sid = client_id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    // Watching for cuts from the request on, not from when the socket task starts, so a cut
    // (an outage beginning) while the upgrade completes still reaches this socket.
    let cut = sim.disconnect.subscribe();
    ws.on_upgrade(move |socket| serve(sim, socket, sid, cut))
}

async fn serve(sim: Arc<Sim>, mut socket: WebSocket, sid: String, mut cut: watch::Receiver<u64>) {
    let mut shutdown = sim.shutdown.subscribe();
    if *shutdown.borrow() {
        return;
    }
    let mut outgoing = sim.hub.register(&sid);
    let status = Sim::status_message(sim.queue_remaining(), Some(sid.clone()));
    sim.hub.send_message(Target::Client(&sid), &status);
    let view = sim.exec_view();
    if view.client_id.as_deref() == Some(sid.as_str())
        && let Some(node) = view.last_node
    {
        let resend = ServerMessage::Executing(Executing {
            node: Some(node),
            display_node: None,
            prompt_id: None,
        });
        sim.hub.send_message(Target::Client(&sid), &resend);
    }

    let mut first_message = true;
    // Once another socket takes the id over, this one's sender is gone and it hears nothing.
    let mut registered = true;
    loop {
        tokio::select! {
            frame = outgoing.recv(), if registered => match frame {
                Some(frame) => {
                    let (message, backlog) = match frame {
                        Outgoing::Text(t) => (Message::Text(t.into()), None),
                        Outgoing::Binary(b) => (Message::Binary(b), None),
                        Outgoing::RelayedText(t, backlog) => (Message::Text(t.into()), Some(backlog)),
                        Outgoing::RelayedBinary(b, backlog) => (Message::Binary(b), Some(backlog)),
                        Outgoing::Close(code, reason) => {
                            let _ = socket
                                .send(Message::Close(Some(CloseFrame {
                                    code,
                                    reason: reason.into(),
                                })))
                                .await;
                            break;
                        }
                    };
                    if let Some(backlog) = &backlog {
                        backlog.writing();
                    }
                    let sent = socket.send(message).await;
                    if let Some(backlog) = backlog {
                        backlog.written();
                    }
                    if sent.is_err() {
                        break;
                    }
                }
                None => registered = false,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if first_message {
                        first_message = !handle_first_message(&sim, &sid, text.as_str());
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            // A network drop: the connection just goes, without a close frame.
            _ = cut.changed() => break,
            _ = shutdown.changed() => {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: close_code::AWAY,
                        reason: "server shutting down".into(),
                    })))
                    .await;
                break;
            }
        }
    }
    // Whichever socket holds the id now, the id is forgotten (ComfyUI's `sockets.pop(sid)`).
    sim.hub.deregister(&sid);
}

/// Handles a text message while the first one is still awaited; returns whether it counted as
/// the first message. As in ComfyUI, text that is not a JSON object does not count, and a
/// `feature_flags` message for an id no longer registered fails before it counts.
fn handle_first_message(sim: &Sim, sid: &str, text: &str) -> bool {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    if message.get("type").and_then(Value::as_str) != Some("feature_flags") {
        return true;
    }
    let flags = message
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !sim.hub.set_feature_flags(sid, flags) {
        return false;
    }
    let reply = ServerMessage::FeatureFlags(server_features());
    sim.hub.send_message(Target::Client(sid), &reply);
    true
}
