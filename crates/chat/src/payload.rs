//! Reading client payloads. Every accessor answers
//! [`ChatError::InvalidPayload`] for anything of the wrong shape, so a
//! handler reads as a list of `?` and a malformed payload is a refusal.

use serde_json::{Map, Value};
use switchboard_broker::StreamId;

use crate::error::ChatError;

/// The first argument of an event.
pub(crate) fn first(args: &[Value]) -> Result<&Value, ChatError> {
    args.first().ok_or(ChatError::InvalidPayload)
}

/// A JSON object.
pub(crate) fn object(value: &Value) -> Result<&Map<String, Value>, ChatError> {
    value.as_object().ok_or(ChatError::InvalidPayload)
}

/// A string field of an object.
pub(crate) fn string_field<'a>(map: &'a Map<String, Value>, key: &str) -> Result<&'a str, ChatError> {
    map.get(key).and_then(Value::as_str).ok_or(ChatError::InvalidPayload)
}

/// A room named by a plain string or by `{roomId}`.
pub(crate) fn room(value: &Value) -> Result<&str, ChatError> {
    match value {
        Value::String(room) => Ok(room),
        Value::Object(map) => string_field(map, "roomId"),
        _ => Err(ChatError::InvalidPayload),
    }
}

/// What `room:join` asks for: a room, and optionally the history after an id.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JoinRequest<'a> {
    pub(crate) room: &'a str,
    pub(crate) since: Option<StreamId>,
}

/// `roomId` or `{roomId, since?}`; `since` must be a message id (or null).
pub(crate) fn join_request(value: &Value) -> Result<JoinRequest<'_>, ChatError> {
    let room = room(value)?;
    let since = match value.get("since") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.parse::<StreamId>().map_err(|_| ChatError::InvalidPayload)?),
        Some(_) => return Err(ChatError::InvalidPayload),
    };
    Ok(JoinRequest { room, since })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rooms_by_string_or_object() {
        assert_eq!(room(&json!("lobby")).ok(), Some("lobby"));
        assert_eq!(room(&json!({"roomId": "lobby", "x": 1})).ok(), Some("lobby"));
        for bad in [json!(42), json!(null), json!({}), json!([]), json!({"roomId": 12}), json!(true)] {
            assert!(room(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn join_requests() {
        assert_eq!(join_request(&json!("r")).ok(), Some(JoinRequest { room: "r", since: None }));
        assert_eq!(
            join_request(&json!({"roomId": "r", "since": "0000000000005-000001"})).ok(),
            Some(JoinRequest { room: "r", since: Some(StreamId::new(5, 1)) })
        );
        assert!(join_request(&json!({"roomId": "r", "since": null})).is_ok());
        for bad in [json!({"since": "x"}), json!({"roomId": "r", "since": "x"}), json!({"roomId": "r", "since": 5})] {
            assert!(join_request(&bad).is_err(), "{bad}");
        }
    }
}
