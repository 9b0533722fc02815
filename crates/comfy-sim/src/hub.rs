//! The WebSocket registry and message routing, with ComfyUI's rules: one socket per client id,
//! the newest connection takes the id over (the old socket stays open and deaf), and closing any
//! socket of an id forgets the id. Messages go to one id or to every registered socket.
//!
//! With the bridge on, the hub also does what the comfytop bridge does inside a real ComfyUI
//! (see [`super::bridge`]): a copy of each execution event sent to one client goes to the
//! sockets that asked to watch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::bridge::{self, Watch};
use comfy_client::binary::BinaryFrame;
use comfy_client::protocol::{Relayed, ServerMessage};

/// A frame on its way to one socket.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    Text(String),
    Binary(Bytes),
    /// A bridge copy, counted in its watcher's backlog until it is written.
    RelayedText(String, Backlog),
    RelayedBinary(Bytes, Backlog),
    /// Close the socket with this code and reason (the bridge drops a watcher too far behind).
    Close(u16, &'static str),
}

/// One watcher's bridge copies: how many are queued and not yet written to its socket, and
/// since when the one being written has been on its way.
pub(crate) type Backlog = Arc<bridge::Backlog>;

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
    /// Which socket this is: a bridge registration belongs to one socket, not to its id.
    socket: u64,
}

/// A socket the bridge relays to.
struct Watcher {
    socket: u64,
    backlog: Backlog,
}

#[derive(Default)]
struct Registry {
    clients: HashMap<String, Registered>,
    sockets_opened: u64,
    /// `None`: no bridge on this server.
    watchers: Option<HashMap<String, Watcher>>,
}

#[derive(Default)]
pub(crate) struct Hub {
    registry: Mutex<Registry>,
}

impl Hub {
    /// A hub of a server with the comfytop bridge installed.
    pub(crate) fn with_bridge() -> Self {
        let hub = Self::default();
        hub.registry().watchers = Some(HashMap::new());
        hub
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A poisoned lock only means another task panicked mid-send; the map is still usable.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new socket under `sid`, replacing (and so silencing) any earlier one.
    /// Returns the receiving end of its frames.
    pub(crate) fn register(&self, sid: &str) -> mpsc::UnboundedReceiver<Outgoing> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut registry = self.registry();
        registry.sockets_opened += 1;
        let socket = registry.sockets_opened;
        registry.clients.insert(
            sid.to_string(),
            Registered {
                tx,
                feature_flags: Map::new(),
                socket,
            },
        );
        rx
    }

    /// Forgets `sid`, whichever socket holds it now (ComfyUI's behaviour on any close).
    pub(crate) fn deregister(&self, sid: &str) {
        self.registry().clients.remove(sid);
    }

    pub(crate) fn is_registered(&self, sid: &str) -> bool {
        self.registry().clients.contains_key(sid)
    }

    /// Stores a client's feature flags; false when `sid` is not registered any more.
    pub(crate) fn set_feature_flags(&self, sid: &str, flags: Map<String, Value>) -> bool {
        match self.registry().clients.get_mut(sid) {
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
        self.registry().clients.get(sid).is_some_and(|c| {
            c.feature_flags.get("supports_preview_metadata") == Some(&Value::Bool(true))
        })
    }

    pub(crate) fn send(&self, target: Target<'_>, frame: Outgoing) {
        let registry = self.registry();
        match target {
            Target::All => {
                for client in registry.clients.values() {
                    // A closed receiver means that socket is going away; nothing to do.
                    let _ = client.tx.send(frame.clone());
                }
            }
            Target::Client(sid) => {
                if let Some(client) = registry.clients.get(sid) {
                    let _ = client.tx.send(frame);
                }
            }
        }
    }

    pub(crate) fn send_message(&self, target: Target<'_>, message: &ServerMessage) {
        if let Target::Client(owner) = target
            && bridge::relays_message(message.kind())
        {
            self.relay(owner, false, || {
                let relayed = ServerMessage::Relayed(Relayed {
                    owner: owner.to_string(),
                    message: Box::new(message.clone()),
                });
                Outgoing::Text(relayed.to_json())
            });
        }
        self.send(target, Outgoing::Text(message.to_json()));
    }

    pub(crate) fn send_binary(&self, target: Target<'_>, frame: &BinaryFrame) {
        if let Target::Client(owner) = target
            && bridge::relays_binary(frame.event_type())
        {
            let preview = matches!(frame, BinaryFrame::Preview(_));
            self.relay(owner, preview, || {
                let relayed = BinaryFrame::Relayed {
                    owner: owner.to_string(),
                    frame: Box::new(frame.clone()),
                };
                Outgoing::Binary(relayed.encode())
            });
        }
        self.send(target, Outgoing::Binary(frame.encode()));
    }

    /// The bridge's part of a send to `owner`: a copy, made once, to every live watcher but
    /// the owner. A watcher that is behind gets no previews; one too far behind is dropped.
    /// Nothing happens (not even the copy) while nobody watches.
    fn relay(&self, owner: &str, preview: bool, copy: impl FnOnce() -> Outgoing) {
        let mut registry = self.registry();
        let Registry {
            clients, watchers, ..
        } = &mut *registry;
        let Some(watchers) = watchers.as_mut().filter(|w| !w.is_empty()) else {
            return;
        };
        // A registration ends with its socket: closed, or replaced under the same id.
        watchers.retain(|id, w| clients.get(id).is_some_and(|c| c.socket == w.socket));
        let mut copy = Some(copy);
        let mut made: Option<Outgoing> = None;
        let mut dropped = Vec::new();
        for (sid, watcher) in watchers.iter() {
            if sid == owner {
                continue;
            }
            let Some(client) = clients.get(sid) else {
                continue;
            };
            match bridge::admit(&watcher.backlog, preview) {
                Watch::Send => {}
                Watch::Skip => continue,
                Watch::Drop => {
                    let _ = client.tx.send(Outgoing::Close(
                        bridge::TOO_FAR_BEHIND_CODE,
                        bridge::TOO_FAR_BEHIND,
                    ));
                    dropped.push(sid.clone());
                    continue;
                }
            }
            if made.is_none() {
                made = copy.take().map(|copy| copy());
            }
            let backlog = watcher.backlog.clone();
            let frame = match made.clone() {
                Some(Outgoing::Text(text)) => Outgoing::RelayedText(text, backlog.clone()),
                Some(Outgoing::Binary(bytes)) => Outgoing::RelayedBinary(bytes, backlog.clone()),
                _ => continue,
            };
            backlog.queued();
            let _ = client.tx.send(frame);
        }
        for sid in dropped {
            watchers.remove(&sid);
        }
    }

    /// The bridge's `POST /comfytop/bridge/watch` for `sid`'s socket as it is now.
    pub(crate) fn watch(&self, sid: &str, enabled: bool) -> Result<(), bridge::WatchRefused> {
        let mut registry = self.registry();
        let Registry {
            clients, watchers, ..
        } = &mut *registry;
        let Some(watchers) = watchers.as_mut() else {
            return Err(bridge::WatchRefused::NoBridge);
        };
        watchers.retain(|id, w| clients.get(id).is_some_and(|c| c.socket == w.socket));
        if !enabled {
            watchers.remove(sid);
            return Ok(());
        }
        let Some(client) = clients.get(sid) else {
            return Err(bridge::WatchRefused::NotConnected);
        };
        if !watchers.contains_key(sid) && watchers.len() >= bridge::MAX_WATCHERS {
            return Err(bridge::WatchRefused::TooMany);
        }
        watchers.insert(
            sid.to_string(),
            Watcher {
                socket: client.socket,
                backlog: Backlog::default(),
            },
        );
        Ok(())
    }

    /// How many sockets watch through the bridge; `None` without a bridge.
    pub(crate) fn watchers(&self) -> Option<usize> {
        let mut registry = self.registry();
        let Registry {
            clients, watchers, ..
        } = &mut *registry;
        let watchers = watchers.as_mut()?;
        watchers.retain(|id, w| clients.get(id).is_some_and(|c| c.socket == w.socket));
        Some(watchers.len())
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

    fn progress() -> ServerMessage {
        ServerMessage::Progress(comfy_client::protocol::Progress {
            value: 1.0,
            max: 2.0,
            prompt_id: Some("p".into()),
            node: Some("3".into()),
        })
    }

    fn frames(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Vec<Outgoing> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn preview() -> BinaryFrame {
        BinaryFrame::Preview(comfy_client::binary::PreviewImage {
            format: comfy_client::binary::ImageFormat::Jpeg,
            metadata: None,
            data: Bytes::from_static(b"jpeg"),
        })
    }

    #[test]
    fn copies_go_to_watchers_but_the_owner_and_only_for_targeted_execution_events() {
        let hub = Hub::with_bridge();
        let mut owner = hub.register("owner");
        let mut watcher = hub.register("watcher");
        let mut bystander = hub.register("bystander");
        assert_eq!(
            hub.watch("nobody", true),
            Err(bridge::WatchRefused::NotConnected)
        );
        assert_eq!(hub.watch("watcher", true), Ok(()));
        hub.send_message(Target::Client("owner"), &progress());
        hub.send_message(Target::All, &status());
        hub.send_message(Target::Client("owner"), &status());
        hub.send_binary(Target::Client("owner"), &preview());
        hub.send_message(Target::Client("watcher"), &progress());

        assert_eq!(frames(&mut owner).len(), 4);
        assert_eq!(frames(&mut bystander).len(), 1);
        let got = frames(&mut watcher);
        let relayed: Vec<_> = got
            .iter()
            .filter(|f| matches!(f, Outgoing::RelayedText(..) | Outgoing::RelayedBinary(..)))
            .collect();
        // The progress and the preview, not the statuses, not its own progress.
        assert_eq!(relayed.len(), 2, "{got:?}");
        let Outgoing::RelayedText(text, _) = relayed[0] else {
            panic!("{relayed:?}")
        };
        let (inner, by) = match ServerMessage::from_json(text).unwrap() {
            ServerMessage::Relayed(r) => (r.message, r.owner),
            other => panic!("{other:?}"),
        };
        assert_eq!((*inner, by.as_str()), (progress(), "owner"));
        let Outgoing::RelayedBinary(bytes, _) = relayed[1] else {
            panic!("{relayed:?}")
        };
        assert_eq!(
            BinaryFrame::parse(bytes.clone()).unwrap(),
            BinaryFrame::Relayed {
                owner: "owner".into(),
                frame: Box::new(preview())
            }
        );
    }

    #[test]
    fn a_watcher_behind_loses_previews_then_is_dropped_and_a_new_socket_must_ask_again() {
        let hub = Hub::with_bridge();
        let _owner = hub.register("owner");
        let mut watcher = hub.register("watcher");
        hub.watch("watcher", true).unwrap();
        // Nothing is written to the watcher's socket: its copies pile up.
        for _ in 0..bridge::PREVIEW_SKIP_BACKLOG {
            hub.send_message(Target::Client("owner"), &progress());
        }
        hub.send_binary(Target::Client("owner"), &preview());
        assert_eq!(frames(&mut watcher).len(), bridge::PREVIEW_SKIP_BACKLOG);
        for _ in bridge::PREVIEW_SKIP_BACKLOG..bridge::DROP_BACKLOG + 1 {
            hub.send_message(Target::Client("owner"), &progress());
        }
        let got = frames(&mut watcher);
        assert_eq!(
            got.len(),
            bridge::DROP_BACKLOG - bridge::PREVIEW_SKIP_BACKLOG + 1
        );
        assert!(matches!(
            got.last(),
            Some(Outgoing::Close(
                1013,
                "comfytop bridge: watcher too far behind"
            ))
        ));
        assert_eq!(hub.watchers(), Some(0));

        // A registration belongs to its socket: a reconnect under the same id starts with none.
        hub.watch("watcher", true).unwrap();
        let mut again = hub.register("watcher");
        hub.send_message(Target::Client("owner"), &progress());
        assert!(frames(&mut again).is_empty());
        assert_eq!(hub.watchers(), Some(0));
    }

    #[test]
    fn without_a_bridge_or_a_watcher_nothing_is_copied() {
        for hub in [Hub::default(), Hub::with_bridge()] {
            let mut owner = hub.register("owner");
            let mut other = hub.register("other");
            hub.send_message(Target::Client("owner"), &progress());
            assert_eq!(frames(&mut owner).len(), 1);
            assert!(frames(&mut other).is_empty());
        }
        assert_eq!(
            Hub::default().watch("owner", true),
            Err(bridge::WatchRefused::NoBridge)
        );
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
