//! The `/notifications` namespace (SPEC.md section 4): a socket joins the
//! room `user:<userId>` when it connects, and backends reach it through the
//! server API (`POST /api/notify`). Clients send nothing here: an event with
//! an acknowledgement is answered `{error: "invalid payload"}`, others are
//! ignored.

use std::sync::Arc;

use serde_json::Value;
use switchboard_gateway::{BoxFuture, Event, Handler, Socket};

use crate::error::ChatError;

/// The room of a user's notification sockets.
pub(crate) fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

pub(crate) struct NotificationsHandler;

impl Handler for NotificationsHandler {
    fn on_connect<'a>(&'a self, socket: &'a Arc<Socket>, _auth: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(error) = socket.join(&user_room(socket.user_id())) {
                tracing::warn!(socket = socket.id(), %error, "cannot join the user's notification room");
            }
        })
    }

    fn on_event<'a>(&'a self, socket: &'a Arc<Socket>, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(id) = event.ack {
                socket.ack(id, &[ChatError::InvalidPayload.ack_value()]);
            }
        })
    }
}
