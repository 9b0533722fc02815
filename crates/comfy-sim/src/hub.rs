//! The WebSocket registry and message routing, with ComfyUI's rules: one socket per client id,
//! the newest connection takes the id over (the old socket stays open and deaf), and closing any
//! socket of an id forgets the id. Messages go to one id or to every registered socket.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use comfy_client::binary::BinaryFrame;
use comfy_client::protocol::ServerMessage;

/// A frame on its way to one socket.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    Text(String),
    Binary(Bytes),
}

/// Where a message goes: ComfyUI's `sid` argument, `None` meaning every socket.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    All,
    Client(&'a str),
}

impl<'a> Target<'a> {
    /// The target for a prompt's messages: its client, or everyone when it has none.
    pub(crate) fn owner_or_all(client_id: Option<&'a str>) -> Self {
        client_id.map_or(Self::All, Self::Client)
    }
}

struct Registered {
    tx: mpsc::UnboundedSender<Outgoing>,
    /// The flags this client sent in its first message.
    feature_flags: Map<String, Value>,
}

#[derive(Default)]
pub(crate) struct Hub {
    clients: Mutex<HashMap<String, Registered>>,
}

impl Hub {
    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registered>> {
        // A poisoned lock only means another task panicked mid-send; the map is still usable.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new socket under `sid`, replacing (and so silencing) any earlier one.
    /// Returns the receiving end of its frames.
    pub(crate) fn register(&self, sid: &str) -> mpsc::UnboundedReceiver<Outgoing> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.clients().insert(
            sid.to_string(),
            Registered {
                tx,
                feature_flags: Map::new(),
            },
        );
        rx
    }

    /// Forgets `sid`, whichever socket holds it now (ComfyUI's behaviour on any close).
    pub(crate) fn deregister(&self, sid: &str) {
        self.clients().remove(sid);
    }

    pub(crate) fn is_registered(&self, sid: &str) -> bool {
        self.clients().contains_key(sid)
    }

    /// Stores a client's feature flags; false when `sid` is not registered any more.
    pub(crate) fn set_feature_flags(&self, sid: &str, flags: Map<String, Value>) -> bool {
        match self.clients().get_mut(sid) {
            Some(client) => {
                client.feature_flags = flags;
                true
            }
            None => false,
        }
    }

    /// ComfyUI's `supports_feature(.., "supports_preview_metadata")`: only a literal `true`.
    pub(crate) fn supports_preview_metadata(&self, sid: Option<&str>) -> bool {
        let Some(sid) = sid else { return false };
        self.clients().get(sid).is_some_and(|c| {
            c.feature_flags.get("supports_preview_metadata") == Some(&Value::Bool(true))
        })
    }

    pub(crate) fn send(&self, target: Target<'_>, frame: Outgoing) {
        let clients = self.clients();
        match target {
            Target::All => {
                for client in clients.values() {
                    // A closed receiver means that socket is going away; nothing to do.
                    let _ = client.tx.send(frame.clone());
                }
            }
            Target::Client(sid) => {
                if let Some(client) = clients.get(sid) {
                    let _ = client.tx.send(frame);
                }
            }
        }
    }

    pub(crate) fn send_message(&self, target: Target<'_>, message: &ServerMessage) {
        self.send(target, Outgoing::Text(message.to_json()));
    }

    pub(crate) fn send_binary(&self, target: Target<'_>, frame: &BinaryFrame) {
        self.send(target, Outgoing::Binary(frame.encode()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comfy_client::protocol::{Status, StatusBody};

    fn status() -> ServerMessage {
        ServerMessage::Status(Status {
            status: StatusBody::default(),
            sid: None,
        })
    }

    #[test]
    fn the_newest_socket_owns_the_id_and_any_close_forgets_it() {
        let hub = Hub::default();
        let mut first_rx = hub.register("a");
        let mut second_rx = hub.register("a");
        hub.send_message(Target::Client("a"), &status());
        hub.send_message(Target::All, &status());
        assert!(second_rx.try_recv().is_ok());
        assert!(second_rx.try_recv().is_ok());
        // The first socket's sender is gone: it hears nothing more.
        assert!(first_rx.try_recv().is_err());
        // The first socket closing forgets the id, silencing the second one too.
        hub.deregister("a");
        hub.send_message(Target::All, &status());
        assert!(second_rx.try_recv().is_err());
    }

    #[test]
    fn preview_metadata_needs_a_literal_true() {
        let hub = Hub::default();
        let _rx = hub.register("a");
        assert!(!hub.supports_preview_metadata(Some("a")));
        let mut flags = Map::new();
        flags.insert("supports_preview_metadata".into(), Value::from(1));
        assert!(hub.set_feature_flags("a", flags.clone()));
        assert!(!hub.supports_preview_metadata(Some("a")));
        flags.insert("supports_preview_metadata".into(), Value::Bool(true));
        hub.set_feature_flags("a", flags);
        assert!(hub.supports_preview_metadata(Some("a")));
        assert!(!hub.supports_preview_metadata(None));
        assert!(!hub.set_feature_flags("b", Map::new()));
    }
}
