//! The gateway [`Handler`] of a chat namespace: presence on connect and
//! disconnect, `room:user-left` for the rooms a leaving socket was in, and
//! the table of client events. The events that concern the whole namespace
//! (`chat:message`, `announcement`, `users:online`) are handled here; rooms
//! and stored messages have their own files.

use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_gateway::{BoxFuture, DisconnectReason, Event, Handler, Socket, Target};

use crate::error::ChatError;
use crate::payload::{first, object};
use crate::{CHAT_NAMESPACE, Chat, now_ms};

/// The handler of `/`, `/chat` and dynamic chat namespaces.
pub(crate) struct ChatHandler {
    chat: Arc<Chat>,
}

impl ChatHandler {
    pub(crate) fn new(chat: Arc<Chat>) -> Self {
        Self { chat }
    }
}

impl Handler for ChatHandler {
    fn on_connect<'a>(&'a self, socket: &'a Arc<Socket>, _auth: &'a Value) -> BoxFuture<'a, ()> {
        // A recovered socket is back in its rooms already, silently: its
        // joins were announced when it first made them.
        Box::pin(async move { self.chat.presence.on_connect(socket).await })
    }

    fn on_event<'a>(&'a self, socket: &'a Arc<Socket>, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(self.chat.on_event(socket, event))
    }

    fn on_disconnect<'a>(&'a self, socket: &'a Arc<Socket>, reason: DisconnectReason) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // A server that shuts down (or a gateway that drains) sends its
            // clients elsewhere, where they resume their rooms: they did not
            // leave them, and the others are not told they did.
            if reason != DisconnectReason::ServerShuttingDown {
                self.chat.announce_departure(socket);
            }
            self.chat.presence.on_disconnect(socket);
        })
    }
}

/// The success acknowledgement of most events.
pub(crate) fn ok() -> Value {
    json!({ "ok": true })
}

impl Chat {
    async fn on_event(&self, socket: &Arc<Socket>, event: Event) {
        metrics::counter!("switchboard_chat_events_total", "event" => event_label(&event.name)).increment(1);
        let result = match event.name.as_str() {
            "chat:message" => self.chat_message(socket, &event).await,
            "announcement" => self.announcement(socket, &event).await,
            "users:online" => {
                if let Some(id) = event.ack {
                    match self.presence.list(socket.namespace()).await {
                        Ok(list) => socket.ack(id, &[json!(list)]),
                        Err(error) => socket.ack(id, &[ChatError::from(error).ack_value()]),
                    }
                }
                return;
            }
            "room:join" => self.room_join(socket, &event.args).await,
            "room:leave" => self.room_leave(socket, &event.args).await,
            "room:message" => self.room_message(socket, &event).await,
            "message" if socket.namespace().name() == CHAT_NAMESPACE => self.room_message(socket, &event).await,
            "typing:start" => self.typing(socket, &event.args, true).await,
            "typing:stop" => self.typing(socket, &event.args, false).await,
            "message:send" => self.message_send(socket, &event.args).await,
            "message:read" => self.message_read(socket, &event.args).await,
            _ => Err(ChatError::UnknownEvent),
        };
        reply(socket, event.ack, result);
    }

    /// `chat:message`: every other socket of the namespace gets the payload
    /// with `sender` and `timestamp`; the sender gets a receipt.
    async fn chat_message(&self, socket: &Arc<Socket>, event: &Event) -> Result<Value, ChatError> {
        let payload = object(first(&event.args)?)?;
        let id = match payload.get("id") {
            Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
            _ => return Err(ChatError::InvalidPayload),
        };
        let mut message = payload.clone();
        message.insert("sender".into(), Value::String(socket.user_id().to_owned()));
        message.insert("timestamp".into(), json!(now_ms()));
        let everyone_else = Target::all().except(socket.id());
        socket
            .namespace()
            .broadcast(&everyone_else, "chat:message", &[Value::Object(message)], &event.attachments)
            .await?;
        socket.emit("chat:message:received", &[json!({ "id": id, "status": "delivered" })]);
        Ok(ok())
    }

    /// `announcement`: the arguments as they are, to every socket of the
    /// namespace, from the configured roles only.
    async fn announcement(&self, socket: &Arc<Socket>, event: &Event) -> Result<Value, ChatError> {
        let role = &socket.identity().role;
        if !self.config.announce_roles.iter().any(|allowed| allowed == role) {
            return Err(ChatError::Forbidden);
        }
        first(&event.args)?;
        socket.namespace().broadcast(&Target::all(), "announcement", &event.args, &event.attachments).await?;
        Ok(ok())
    }
}

/// Answers the client's acknowledgement, if it asked for one.
fn reply(socket: &Socket, ack: Option<u64>, result: Result<Value, ChatError>) {
    let value = match result {
        Ok(value) => value,
        Err(error) => {
            metrics::counter!("switchboard_chat_refusals_total", "reason" => error.label()).increment(1);
            tracing::debug!(socket = socket.id(), %error, "event refused");
            error.ack_value()
        }
    };
    if let Some(id) = ack {
        socket.ack(id, &[value]);
    }
}

/// Event names as a bounded metric label.
fn event_label(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "chat:message",
        "announcement",
        "users:online",
        "room:join",
        "room:leave",
        "room:message",
        "message",
        "typing:start",
        "typing:stop",
        "message:send",
        "message:read",
    ];
    KNOWN.iter().find(|known| **known == name).copied().unwrap_or("other")
}
