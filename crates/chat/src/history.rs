//! Stored messages: `message:send` appends to the room's stream in the
//! broker, `message:read` records a receipt once per (message, user), and
//! the history is read for `room:join` and for the server API.
//!
//! A room's stream is `room:<namespace>:<roomId>`; an entry holds the JSON
//! `{roomId, sender: {id, name}, content, type, createdAt}`, and its stream
//! id is the message id. Receipts are keys that expire with the messages.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_broker::{BrokerError, Entry, Retention, StreamId};
use switchboard_gateway::{Namespace, Socket, Target};

use crate::error::ChatError;
use crate::events::ok;
use crate::payload::{first, object, string_field};
use crate::{Chat, now_ms};

/// Longest `content` stored, in bytes: a room keeps up to
/// `history_max_messages` of them, so this bounds a room's memory.
pub(crate) const MAX_CONTENT_BYTES: usize = 64 * 1024;

/// The broker stream of a room. A `:` in the namespace is escaped so that
/// (namespace, room) pairs cannot collide.
pub(crate) fn stream_name(nsp: &str, room: &str) -> String {
    let nsp = nsp.replace('%', "%25").replace(':', "%3A");
    format!("room:{nsp}:{room}")
}

/// The key that records that `user` read `message`.
fn receipt_key(nsp: &str, room: &str, message: &str, user: &str) -> String {
    // A JSON array keeps the parts apart whatever characters they hold.
    format!("read:{}", json!([nsp, room, message, user]))
}

/// A stored entry as clients see it: the stored JSON with its `id`.
fn message_json(entry: Entry) -> Option<Value> {
    let mut message: Value = serde_json::from_slice(&entry.data).ok()?;
    message.as_object_mut()?.insert("id".into(), Value::String(entry.id));
    Some(message)
}

fn messages(entries: Vec<Entry>) -> Vec<Value> {
    entries.into_iter().filter_map(message_json).collect()
}

impl Chat {
    fn retention(&self) -> Retention {
        Retention::new(self.config.history_max_messages, Some(self.config.history_max_age))
    }

    /// The history a joiner gets: the newest `history_on_join`, or every
    /// kept message after `since`; oldest first.
    pub(crate) async fn history_for_join(
        &self,
        nsp: &Namespace,
        room: &str,
        since: Option<StreamId>,
    ) -> Result<Vec<Value>, ChatError> {
        let limit = match since {
            Some(_) => self.config.history_max_messages,
            None => self.config.history_on_join,
        };
        self.history(nsp, room, since, limit).await
    }

    /// Stored messages of a room, oldest first: the newest `limit`, or the
    /// first `limit` after `since`.
    pub async fn history(
        &self,
        nsp: &Namespace,
        room: &str,
        since: Option<StreamId>,
        limit: usize,
    ) -> Result<Vec<Value>, ChatError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let since_text = since.map(|id| id.to_string());
        if let Some(history) = nsp.cluster_history(room, since_text.as_deref(), limit).await {
            return Ok(history?);
        }
        let stream = stream_name(nsp.name(), room);
        let entries = match since {
            Some(since) => self.broker.stream_range_after(&stream, &since.to_string(), limit).await?,
            None => self.broker.stream_last(&stream, limit).await?,
        };
        Ok(messages(entries))
    }

    /// `message:send {roomId, content, type?}`: stored, then `message:new`
    /// to every member; the ack is `{id}`.
    pub(crate) async fn message_send(&self, socket: &Arc<Socket>, args: &[Value]) -> Result<Value, ChatError> {
        let payload = object(first(args)?)?;
        let room = string_field(payload, "roomId")?;
        let content = string_field(payload, "content")?;
        let kind = match payload.get("type") {
            None | Some(Value::Null) => "text",
            Some(Value::String(kind)) if !kind.is_empty() => kind,
            Some(_) => return Err(ChatError::InvalidPayload),
        };
        if content.is_empty() {
            return Err(ChatError::InvalidPayload);
        }
        if content.len() > MAX_CONTENT_BYTES {
            return Err(ChatError::MessageTooLong);
        }
        if !socket.in_room(room) {
            return Err(ChatError::NotAMember);
        }
        let identity = socket.identity();
        let mut message = json!({
            "roomId": room,
            "sender": { "id": identity.user_id, "name": identity.name },
            "content": content,
            "type": kind,
            "createdAt": now_ms(),
        });
        if socket.namespace().is_clustered() {
            // The owning router numbers, stores and delivers it in one step,
            // the id written in: history order is delivery order.
            let id = socket.namespace().broadcast_stored(room, "message:new", &message, "id").await?;
            metrics::counter!("switchboard_chat_messages_stored_total").increment(1);
            return Ok(json!({ "id": id }));
        }
        let stream = stream_name(socket.namespace().name(), room);
        let data = Bytes::from(message.to_string());
        let id = {
            let _ordered = self.send_lock(&stream).lock().await;
            let id = self.broker.stream_append(&stream, data, self.retention()).await?;
            message["id"] = Value::String(id.clone());
            socket.namespace().emit(&Target::room(room), "message:new", &[message]);
            id
        };
        metrics::counter!("switchboard_chat_messages_stored_total").increment(1);
        Ok(json!({ "id": id }))
    }

    /// `message:read {messageId, roomId}`: the first receipt of a user for a
    /// message goes to the others in the room; repeats are acknowledged and
    /// dropped.
    pub(crate) async fn message_read(&self, socket: &Arc<Socket>, args: &[Value]) -> Result<Value, ChatError> {
        let payload = object(first(args)?)?;
        let message_id = string_field(payload, "messageId")?;
        let room = string_field(payload, "roomId")?;
        if !socket.in_room(room) {
            return Err(ChatError::NotAMember);
        }
        let nsp = socket.namespace();
        // In a cluster a room's kept messages are in the router's stream.
        let stream =
            if nsp.is_clustered() { format!("sb:room:{}:{room}", nsp.name()) } else { stream_name(nsp.name(), room) };
        let entry = match self.broker.stream_get(&stream, message_id).await {
            Ok(entry) => entry,
            Err(BrokerError::InvalidId(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let entry = entry.filter(|entry| {
            !nsp.is_clustered() || switchboard_proto::decode_entry(&entry.data).is_ok_and(|delivery| delivery.store)
        });
        // The stored id, not the client's spelling of it, names the receipt.
        let message_id = entry.ok_or(ChatError::UnknownMessage)?.id;
        let key = receipt_key(nsp.name(), room, &message_id, socket.user_id());
        let stamp = Bytes::from(now_ms().to_string());
        if self.broker.set_if_absent(&key, stamp, Some(self.config.history_max_age)).await? {
            let notice = json!({ "messageId": message_id, "userId": socket.user_id() });
            nsp.broadcast(&socket.to(room), "message:read", &[notice], &[]).await?;
            metrics::counter!("switchboard_chat_read_receipts_total").increment(1);
        }
        Ok(ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_keep_namespaces_apart() {
        assert_eq!(stream_name("/", "lobby"), "room:/:lobby");
        assert_eq!(stream_name("/chat", "lobby"), "room:/chat:lobby");
        assert_ne!(stream_name("/a:b", "c"), stream_name("/a", "b:c"));
    }

    #[test]
    fn receipt_keys_keep_parts_apart() {
        assert_ne!(receipt_key("/", "a:b", "1-0", "c"), receipt_key("/", "a", "b:1-0", "c"));
    }

    #[test]
    fn stored_entries_become_messages_with_their_id() {
        let entry = Entry { id: "0000000000001-000000".into(), data: Bytes::from_static(br#"{"content":"hi"}"#) };
        assert_eq!(message_json(entry), Some(json!({"id": "0000000000001-000000", "content": "hi"})));
        assert_eq!(message_json(Entry { id: "x".into(), data: Bytes::from_static(b"[]") }), None);
    }
}
