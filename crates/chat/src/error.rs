//! [`ChatError`]: every refusal of the chat and of the server API, and the
//! one place where it becomes a wire outcome: an ack `{error}` for a client,
//! an HTTP status and `{"error"}` body for a backend.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard_broker::BrokerError;
use switchboard_gateway::JoinError;

/// A refusal. The `Display` text is what the client or backend reads.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("not a member")]
    NotAMember,
    /// An announcement by a role not in `announce_roles`.
    #[error("forbidden")]
    Forbidden,
    #[error("invalid payload")]
    InvalidPayload,
    /// `message:read` of a message that is not stored in that room.
    #[error("unknown message")]
    UnknownMessage,
    #[error("unknown event")]
    UnknownEvent,
    /// `message:send` content over the stored size limit.
    #[error("message too long")]
    MessageTooLong,
    /// A room limit of the gateway (`too many rooms`, `room name too long`,
    /// `invalid room name`).
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("storage unavailable")]
    Storage(#[from] BrokerError),
    /// The cluster could not take a broadcast (Redis or every router
    /// unreachable): the client is told, nothing was sent.
    #[error("unavailable")]
    Unavailable(#[from] switchboard_gateway::Unavailable),
    /// Server API: no key or a wrong one.
    #[error("unauthorized")]
    Unauthorized,
    /// Server API: a malformed request.
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown namespace")]
    UnknownNamespace,
    #[error("not found")]
    NotFound,
}

impl ChatError {
    /// A refusal reported by another gateway, by its text.
    pub fn from_refusal(text: &str) -> ChatError {
        [JoinError::TooManyRooms, JoinError::NameTooLong, JoinError::InvalidName]
            .into_iter()
            .find(|error| error.to_string() == text)
            .map_or_else(|| ChatError::BadRequest(text.to_owned()), ChatError::Join)
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ChatError::NotAMember => "not_a_member",
            ChatError::Forbidden => "forbidden",
            ChatError::InvalidPayload => "invalid_payload",
            ChatError::UnknownMessage => "unknown_message",
            ChatError::UnknownEvent => "unknown_event",
            ChatError::MessageTooLong => "message_too_long",
            ChatError::Join(_) => "room_limit",
            ChatError::Storage(_) => "storage",
            ChatError::Unavailable(_) => "unavailable",
            ChatError::Unauthorized => "unauthorized",
            ChatError::BadRequest(_) => "bad_request",
            ChatError::UnknownNamespace => "unknown_namespace",
            ChatError::NotFound => "not_found",
        }
    }

    /// The acknowledgement a client gets: `{error: "<reason>"}`.
    pub fn ack_value(&self) -> Value {
        json!({ "error": self.to_string() })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ChatError::Unauthorized => StatusCode::UNAUTHORIZED,
            ChatError::UnknownNamespace | ChatError::NotFound => StatusCode::NOT_FOUND,
            ChatError::Storage(_) | ChatError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ChatError {
    fn into_response(self) -> Response {
        if let ChatError::Storage(error) = &self {
            tracing::warn!(%error, "server API: storage unavailable");
        }
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_reasons_are_the_documented_strings() {
        assert_eq!(ChatError::NotAMember.ack_value(), json!({"error": "not a member"}));
        assert_eq!(ChatError::Join(JoinError::TooManyRooms).ack_value(), json!({"error": "too many rooms"}));
        assert_eq!(ChatError::Join(JoinError::NameTooLong).to_string(), "room name too long");
        assert_eq!(ChatError::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ChatError::UnknownNamespace.status(), StatusCode::NOT_FOUND);
    }
}
