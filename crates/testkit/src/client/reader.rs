//! The reading side of a [`super::TestClient`]: answers pings, reassembles
//! binary packets, resolves acks, and queues the rest for the test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;
use switchboard_protocol::packet::{Packet, PacketKind};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::{Event, lock};

pub(super) enum Incoming {
    Connect(Value),
    ConnectError(Value),
    Event(Event),
    Disconnect,
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) acks: Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>,
    pub(super) pid: Mutex<Option<String>>,
    pub(super) last_offset: Mutex<Option<String>>,
}

pub(super) struct Reader {
    pub(super) nsp: String,
    pub(super) out: mpsc::UnboundedSender<Message>,
    pub(super) inbox: mpsc::UnboundedSender<Incoming>,
    pub(super) shared: Arc<Shared>,
    /// A binary packet waiting for its attachments.
    pub(super) pending: Option<(Packet, Vec<Bytes>)>,
}

impl Reader {
    /// Handles one WebSocket message; false to stop reading.
    pub(super) fn on_message(&mut self, message: Message) -> bool {
        match message {
            Message::Text(text) => match text.as_bytes().first() {
                Some(b'2') => {
                    let _ = self.out.send(Message::text(format!("3{}", &text[1..])));
                }
                Some(b'4') => match Packet::decode(&text.as_bytes()[1..], usize::MAX) {
                    Ok(packet) if packet.attachments > 0 => self.pending = Some((packet, Vec::new())),
                    Ok(packet) => self.on_packet(packet, Vec::new()),
                    Err(error) => panic!("undecodable packet {text:?}: {error}"),
                },
                Some(b'1') => return false,
                _ => {}
            },
            Message::Binary(data) => {
                if let Some((packet, mut attachments)) = self.pending.take() {
                    attachments.push(data);
                    if attachments.len() >= packet.attachments {
                        self.on_packet(packet, attachments);
                    } else {
                        self.pending = Some((packet, attachments));
                    }
                }
            }
            Message::Close(_) => return false,
            _ => {}
        }
        true
    }

    fn on_packet(&mut self, packet: Packet, attachments: Vec<Bytes>) {
        if packet.nsp != self.nsp {
            return;
        }
        let data = packet.data.unwrap_or(Value::Null);
        let incoming = match packet.kind {
            PacketKind::Connect => Incoming::Connect(data),
            PacketKind::ConnectError => Incoming::ConnectError(data),
            PacketKind::Disconnect => Incoming::Disconnect,
            PacketKind::Event | PacketKind::BinaryEvent => {
                let Value::Array(mut args) = data else { return };
                if args.is_empty() {
                    return;
                }
                let name = match args.remove(0) {
                    Value::String(name) => name,
                    other => other.to_string(),
                };
                if lock(&self.shared.pid).is_some()
                    && let Some(Value::String(offset)) = args.last()
                {
                    *lock(&self.shared.last_offset) = Some(offset.clone());
                }
                Incoming::Event(Event { name, args, attachments })
            }
            PacketKind::Ack | PacketKind::BinaryAck => {
                let (Some(id), Value::Array(args)) = (packet.id, data) else { return };
                if let Some(tx) = lock(&self.shared.acks).remove(&id) {
                    let _ = tx.send(args);
                }
                return;
            }
        };
        let _ = self.inbox.send(incoming);
    }
}
