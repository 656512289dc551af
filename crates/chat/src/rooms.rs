//! Room events: `room:join` (with the room's history), `room:leave`,
//! `room:message` (and the `/chat` shorthand `message`), `typing:*`, and the
//! `room:user-left` notices of a socket that disconnects.

use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_gateway::{Socket, Target};

use crate::error::ChatError;
use crate::events::ok;
use crate::payload::{first, join_request, object, room, string_field};
use crate::{Chat, now_ms};

impl Chat {
    /// `room:join`: joins, tells the others, sends the joiner the history.
    pub(crate) async fn room_join(&self, socket: &Arc<Socket>, args: &[Value]) -> Result<Value, ChatError> {
        let request = join_request(first(args)?)?;
        let nsp = socket.namespace();
        let was_member = socket.in_room(request.room);
        socket.join(request.room)?;
        // Joined before reading the history, so a message sent meanwhile
        // arrives at least once (as `message:new`, maybe in the history too).
        let history = match self.history_for_join(nsp, request.room, request.since).await {
            Ok(history) => history,
            Err(error) => {
                if !was_member {
                    socket.leave(request.room);
                }
                return Err(error);
            }
        };
        if !was_member {
            let notice = json!({ "userId": socket.user_id(), "roomId": request.room });
            if let Err(error) = nsp.broadcast(&socket.to(request.room), "room:user-joined", &[notice], &[]).await {
                socket.leave(request.room);
                return Err(error.into());
            }
        }
        socket.emit("room:history", &[Value::Array(history)]);
        Ok(ok())
    }

    /// `room:leave`: the others in the room are told.
    pub(crate) async fn room_leave(&self, socket: &Arc<Socket>, args: &[Value]) -> Result<Value, ChatError> {
        let room = room(first(args)?)?;
        if !socket.leave(room) {
            return Err(ChatError::NotAMember);
        }
        let notice = json!({ "userId": socket.user_id(), "roomId": room });
        socket.namespace().broadcast(&Target::room(room), "room:user-left", &[notice], &[]).await?;
        Ok(ok())
    }

    /// `room:message` (and `message` in `/chat`): the payload with `sender`
    /// and `timestamp`, binary attachments included, to every member.
    pub(crate) async fn room_message(
        &self,
        socket: &Arc<Socket>,
        event: &switchboard_gateway::Event,
    ) -> Result<Value, ChatError> {
        let payload = object(first(&event.args)?)?;
        let room = string_field(payload, "roomId")?;
        if !socket.in_room(room) {
            return Err(ChatError::NotAMember);
        }
        let mut message = payload.clone();
        message.insert("sender".into(), Value::String(socket.user_id().to_owned()));
        message.insert("timestamp".into(), json!(now_ms()));
        socket
            .namespace()
            .broadcast(&Target::room(room), "room:message", &[Value::Object(message)], &event.attachments)
            .await?;
        Ok(ok())
    }

    /// `typing:start` / `typing:stop`: volatile, to the others in the room.
    pub(crate) async fn typing(&self, socket: &Arc<Socket>, args: &[Value], start: bool) -> Result<Value, ChatError> {
        let room = room(first(args)?)?;
        if !socket.in_room(room) {
            return Err(ChatError::NotAMember);
        }
        let (event, notice) = if start {
            ("typing:start", json!({ "userId": socket.user_id(), "userName": socket.identity().name }))
        } else {
            ("typing:stop", json!({ "userId": socket.user_id() }))
        };
        socket.namespace().broadcast(&socket.to(room).volatile(), event, &[notice], &[]).await?;
        Ok(ok())
    }

    /// A socket is leaving the namespace: the others in each of its rooms
    /// get `room:user-left`.
    ///
    /// The notices go out on a task of their own: a closing session does
    /// not wait for them (in a cluster each is a round trip to a router),
    /// so that its client hears of the close at once. The socket's id is
    /// in `except`, so it cannot get its own notice whenever they leave.
    pub(crate) fn announce_departure(&self, socket: &Arc<Socket>) {
        let rooms = socket.rooms();
        if rooms.is_empty() {
            return;
        }
        let nsp = socket.namespace().clone();
        let clustered = nsp.is_clustered();
        let (id, user) = (socket.id().to_owned(), socket.user_id().to_owned());
        let notices = async move {
            for room in rooms {
                let notice = json!({ "userId": user, "roomId": &*room });
                let target = Target::room(room).except(id.as_str());
                if let Err(error) = nsp.broadcast(&target, "room:user-left", &[notice], &[]).await {
                    // Nobody to tell: the socket is gone.
                    tracing::debug!(%error, "room:user-left not sent");
                }
            }
        };
        if clustered {
            tokio::spawn(notices);
        } else {
            // Standalone a broadcast is immediate: it completes at once.
            let _ = futures_util::FutureExt::now_or_never(notices);
        }
    }
}
