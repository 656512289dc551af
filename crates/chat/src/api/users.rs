//! `GET /api/users/online`, `POST /api/users/{userId}/join|leave|disconnect`
//! and `POST /api/sockets/{socketId}/disconnect`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, body, query};
use crate::error::ChatError;

#[derive(Debug, Deserialize)]
pub(super) struct NamespaceOnly {
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RoomBody {
    room: String,
    namespace: Option<String>,
}

fn affected(sockets: usize) -> Json<Value> {
    Json(json!({ "ok": true, "sockets": sockets }))
}

pub(super) async fn online(State(api): State<Api>, uri: Uri) -> Result<Json<Value>, ChatError> {
    let request: NamespaceOnly = query(&uri)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    let mut users = nsp.online_users();
    users.sort_unstable();
    Ok(Json(json!({ "users": users })))
}

/// Every socket of the user joins the room (silently, as Node's
/// `socketsJoin`). A room limit that refuses every socket is a 400.
pub(super) async fn join(
    State(api): State<Api>,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ChatError> {
    let request: RoomBody = body(&bytes, false)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    let mut joined = 0;
    let mut refusal = None;
    for socket in nsp.sockets_of_user(&user) {
        match socket.join(&request.room) {
            Ok(()) => joined += 1,
            Err(error) => refusal = Some(error),
        }
    }
    match refusal {
        Some(error) if joined == 0 => Err(error.into()),
        _ => Ok(affected(joined)),
    }
}

pub(super) async fn leave(
    State(api): State<Api>,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ChatError> {
    let request: RoomBody = body(&bytes, false)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    let left = nsp.sockets_of_user(&user).iter().filter(|socket| socket.leave(&request.room)).count();
    Ok(affected(left))
}

/// The client gets a DISCONNECT (`io server disconnect`) and does not
/// reconnect by itself.
pub(super) async fn disconnect(
    State(api): State<Api>,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ChatError> {
    let request: NamespaceOnly = body(&bytes, true)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    let sockets = nsp.sockets_of_user(&user);
    for socket in &sockets {
        socket.disconnect(false).await;
    }
    Ok(affected(sockets.len()))
}

pub(super) async fn disconnect_socket(
    State(api): State<Api>,
    Path(socket): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ChatError> {
    let request: NamespaceOnly = body(&bytes, true)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    let Some(socket) = nsp.socket(&socket) else {
        return Ok(affected(0));
    };
    socket.disconnect(false).await;
    Ok(affected(1))
}
