//! The server API of docs/api.md: HTTP JSON routes under `/api/` for
//! backends, behind the API key.
//!
//! This file holds the router, the key check, and request parsing; the
//! routes are in `api/emit.rs` (emit, notify), `api/rooms.rs` (members,
//! history) and `api/users.rs` (online users, join/leave, disconnects).
//! Every failure is a [`ChatError`], turned into a status and `{"error"}`
//! body in `error.rs`.

mod emit;
mod rooms;
mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use switchboard_gateway::{Gateway, Namespace};

use crate::Chat;
use crate::error::ChatError;

/// What every route handler gets.
#[derive(Clone)]
pub(crate) struct Api {
    chat: Arc<Chat>,
    gateway: Gateway,
}

impl Api {
    /// A namespace by name, `/` by default.
    fn namespace(&self, name: Option<&str>) -> Result<Arc<Namespace>, ChatError> {
        self.gateway.namespace(name.unwrap_or("/")).ok_or(ChatError::UnknownNamespace)
    }
}

/// The `/api/` routes. Without a key the API is off: every `/api/` path
/// answers 404.
pub fn router(chat: Arc<Chat>, gateway: Gateway, api_key: Option<String>) -> Router {
    let Some(key) = api_key.filter(|k| !k.is_empty()) else {
        return Router::new().route("/api", any(not_found)).route("/api/{*rest}", any(not_found));
    };
    let key: Arc<str> = Arc::from(key);
    Router::new()
        .route("/api/emit", post(emit::emit))
        .route("/api/notify", post(emit::notify))
        .route("/api/users/online", get(users::online))
        .route("/api/users/{user}/join", post(users::join))
        .route("/api/users/{user}/leave", post(users::leave))
        .route("/api/users/{user}/disconnect", post(users::disconnect))
        .route("/api/sockets/{socket}/disconnect", post(users::disconnect_socket))
        .route("/api/rooms/{room}/members", get(rooms::members))
        .route("/api/rooms/{room}/history", get(rooms::history))
        .route("/api", any(not_found))
        .route("/api/{*rest}", any(not_found))
        .with_state(Api { chat, gateway })
        .route_layer(middleware::from_fn_with_state(key, require_key))
}

async fn not_found() -> ChatError {
    ChatError::NotFound
}

/// Lets a request through only with the key, as `Authorization: Bearer` or
/// `X-Api-Key`.
async fn require_key(State(key): State<Arc<str>>, request: Request, next: Next) -> Response {
    if presented_keys(request.headers()).any(|given| same_key(given.as_bytes(), key.as_bytes())) {
        next.run(request).await
    } else {
        metrics::counter!("switchboard_chat_api_unauthorized_total").increment(1);
        ChatError::Unauthorized.into_response()
    }
}

fn presented_keys(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let x_api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim);
    bearer.into_iter().chain(x_api_key)
}

/// Compares in time that depends on the expected key's length only, not on
/// where the first difference is.
fn same_key(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, byte) in expected.iter().enumerate() {
        diff |= byte ^ given.get(i).copied().unwrap_or(!byte);
    }
    diff == 0
}

/// A JSON body; an empty one reads as `{}` when `optional`.
fn body<T: DeserializeOwned>(bytes: &Bytes, optional: bool) -> Result<T, ChatError> {
    let text: &[u8] = if optional && bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(text).map_err(|e| ChatError::BadRequest(format!("invalid body: {e}")))
}

/// The query string.
fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ChatError> {
    Query::<T>::try_from_uri(uri).map(|q| q.0).map_err(|e| ChatError::BadRequest(format!("invalid query: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(same_key(b"secret", b"secret"));
        assert!(!same_key(b"secreT", b"secret"));
        assert!(!same_key(b"secret-and-more", b"secret"));
        assert!(!same_key(b"secre", b"secret"));
        assert!(!same_key(b"", b"secret"));
    }

    #[test]
    fn keys_from_either_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        headers.insert("x-api-key", "k2".parse().unwrap());
        assert_eq!(presented_keys(&headers).collect::<Vec<_>>(), vec!["k1", "k2"]);
    }

    #[test]
    fn empty_optional_bodies_read_as_objects() {
        let value: serde_json::Value = body(&Bytes::new(), true).unwrap();
        assert_eq!(value, serde_json::json!({}));
        assert!(body::<serde_json::Value>(&Bytes::new(), false).is_err());
        assert!(matches!(
            body::<serde_json::Value>(&Bytes::from_static(b"{not json"), true),
            Err(ChatError::BadRequest(_))
        ));
    }
}
