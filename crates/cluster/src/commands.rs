//! Commands between gateways (the server API's operations on sockets chosen
//! by user, id or room), over the gateways' Redis channels, with replies.
//!
//! The asker finds the gateways concerned (the owners know which gateways
//! hold a user's sockets or a room's members), publishes the command on each
//! one's channel with a request id and its own channel as `reply_to`, and
//! counts the receivers `PUBLISH` reports. Every receiver answers exactly
//! once; the asker sums the replies, and a reply that does not come within
//! [`REPLY_TIMEOUT`] makes the command `unavailable`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use switchboard_broker::Broker;
use switchboard_gateway::Gateway;
use switchboard_gateway::cluster::{Command, CommandReply, Unavailable};
use switchboard_proto::prost::Message as _;
use switchboard_proto::v1::{self, channel_message::Message as OnChannel};
use tokio::sync::mpsc;

/// How long the asker waits for every reply.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// Commands waiting for replies.
#[derive(Default)]
pub(crate) struct Requests {
    next: AtomicU64,
    pending: DashMap<u64, mpsc::UnboundedSender<v1::Reply>>,
}

impl Requests {
    /// A reply arrived on this gateway's channel.
    pub(crate) fn on_reply(&self, reply: v1::Reply) {
        if let Some(waiting) = self.pending.get(&reply.request_id) {
            let _ = waiting.send(reply);
        }
    }

    /// Waits until this gateway's channel delivered everything published on
    /// it before now: a marker (a reply to ourselves) is published on it
    /// and comes back after them, channels keeping their order.
    pub(crate) async fn catch_up(&self, broker: &Arc<dyn Broker>, own_channel: &str, within: Duration) {
        let request_id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending.insert(request_id, tx);
        let marker = v1::ChannelMessage {
            request_id: 0,
            reply_to: String::new(),
            message: Some(OnChannel::Reply(v1::Reply { request_id, ..Default::default() })),
        };
        if broker.publish(own_channel, Bytes::from(marker.encode_to_vec())).await.is_ok() {
            let _ = tokio::time::timeout(within, rx.recv()).await;
        }
        self.pending.remove(&request_id);
    }

    /// Publishes `command` to each of `gateways` and sums their replies.
    pub(crate) async fn ask(
        &self,
        broker: &Arc<dyn Broker>,
        own_channel: &str,
        gateways: &[String],
        nsp: &str,
        command: &Command,
    ) -> Result<CommandReply, Unavailable> {
        let request_id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.pending.insert(request_id, tx);
        let outcome = async {
            let message = v1::ChannelMessage {
                request_id,
                reply_to: own_channel.to_owned(),
                message: Some(to_proto(nsp, command)),
            };
            let bytes = Bytes::from(message.encode_to_vec());
            let mut expected = 0;
            for gateway in gateways {
                let channel = format!("sb:gw:{gateway}");
                expected +=
                    broker.publish(&channel, bytes.clone()).await.map_err(|error| Unavailable(error.to_string()))?;
            }
            let mut total = CommandReply::default();
            let mut refusal = None;
            let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
            for _ in 0..expected {
                let reply = tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .ok()
                    .flatten()
                    .ok_or_else(|| Unavailable("a gateway did not answer".to_owned()))?;
                total.sockets += reply.sockets as usize;
                total.socket_ids.extend(reply.socket_ids);
                if !reply.error.is_empty() {
                    refusal = Some(reply.error);
                }
            }
            if total.sockets == 0 {
                total.error = refusal;
            }
            Ok(total)
        }
        .await;
        self.pending.remove(&request_id);
        outcome
    }
}

fn to_proto(nsp: &str, command: &Command) -> OnChannel {
    let nsp = nsp.to_owned();
    match command.clone() {
        Command::JoinUser { user, room } => OnChannel::JoinUser(v1::JoinUser { nsp, user_id: user, room }),
        Command::LeaveUser { user, room } => OnChannel::LeaveUser(v1::LeaveUser { nsp, user_id: user, room }),
        Command::DisconnectUser { user } => OnChannel::DisconnectUser(v1::DisconnectUser { nsp, user_id: user }),
        Command::DisconnectSocket { sid } => OnChannel::DisconnectSocket(v1::DisconnectSocket { nsp, socket_id: sid }),
        Command::RoomSockets { room } => OnChannel::RoomSockets(v1::RoomSockets { nsp, room }),
        Command::Emit { users, sockets, except, event, args_json } => OnChannel::Emit(v1::Emit {
            nsp,
            user_ids: users,
            socket_ids: sockets,
            except,
            volatile: false,
            packet: Some(v1::Packet { event, args_json, attachments: Vec::new() }),
        }),
    }
}

/// A command from the channel, as the gateway runs it; `None` for what is
/// not a command.
pub(crate) fn from_proto(message: OnChannel) -> Option<(String, Command)> {
    Some(match message {
        OnChannel::JoinUser(m) => (m.nsp, Command::JoinUser { user: m.user_id, room: m.room }),
        OnChannel::LeaveUser(m) => (m.nsp, Command::LeaveUser { user: m.user_id, room: m.room }),
        OnChannel::DisconnectUser(m) => (m.nsp, Command::DisconnectUser { user: m.user_id }),
        OnChannel::DisconnectSocket(m) => (m.nsp, Command::DisconnectSocket { sid: m.socket_id }),
        OnChannel::RoomSockets(m) => (m.nsp, Command::RoomSockets { room: m.room }),
        OnChannel::Emit(m) => {
            let packet = m.packet.unwrap_or_default();
            let command = Command::Emit {
                users: m.user_ids,
                sockets: m.socket_ids,
                except: m.except,
                args_json: packet.args_array(),
                event: packet.event,
            };
            (m.nsp, command)
        }
        OnChannel::Deliveries(_) | OnChannel::Reply(_) => return None,
    })
}

/// Runs a command from the channel on this gateway and answers it.
pub(crate) async fn execute(
    gateway: Gateway,
    broker: Arc<dyn Broker>,
    gateway_id: String,
    request_id: u64,
    reply_to: String,
    nsp: String,
    command: Command,
) {
    let reply = match gateway.namespace(&nsp) {
        Some(namespace) => namespace.run_command(&command).await,
        None => CommandReply::default(),
    };
    if request_id == 0 || reply_to.is_empty() {
        return;
    }
    let reply = v1::Reply {
        request_id,
        gateway_id,
        sockets: u32::try_from(reply.sockets).unwrap_or(u32::MAX),
        socket_ids: reply.socket_ids,
        error: reply.error.unwrap_or_default(),
    };
    let message = v1::ChannelMessage { request_id: 0, reply_to: String::new(), message: Some(OnChannel::Reply(reply)) };
    if let Err(error) = broker.publish(&reply_to, Bytes::from(message.encode_to_vec())).await {
        tracing::warn!(%error, "command reply not sent");
    }
}
