//! `GET /api/users/online`, `POST /api/users/{userId}/join|leave|disconnect`
//! and `POST /api/sockets/{socketId}/disconnect`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, body, query};
use switchboard_gateway::Namespace;
use switchboard_gateway::cluster::Command;

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
    let users = match nsp.cluster_online_users().await {
        Some(users) => users?,
        None => {
            let mut users = nsp.online_users();
            users.sort_unstable();
            users
        }
    };
    Ok(Json(json!({ "users": users })))
}

/// Runs a command wherever the sockets are; a refusal when none could.
async fn run(nsp: &Namespace, command: Command) -> Result<Json<Value>, ChatError> {
    let reply = nsp.command(command).await?;
    match reply.error {
        Some(error) if reply.sockets == 0 => Err(ChatError::from_refusal(&error)),
        _ => Ok(affected(reply.sockets)),
    }
}

pub(super) async fn join(
    State(api): State<Api>,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ChatError> {
    let request: RoomBody = body(&bytes, false)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    run(&nsp, Command::JoinUser { user, room: request.room }).await
}

pub(super) async fn leave(
    State(api): State<Api>,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ChatError> {
    let request: RoomBody = body(&bytes, false)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    run(&nsp, Command::LeaveUser { user, room: request.room }).await
}

pub(super) async fn disconnect(
    State(api): State<Api>,
    Path(user): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ChatError> {
    let request: NamespaceOnly = body(&bytes, true)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    run(&nsp, Command::DisconnectUser { user }).await
}

pub(super) async fn disconnect_socket(
    State(api): State<Api>,
    Path(socket): Path<String>,
    bytes: Bytes,
) -> Result<Json<Value>, ChatError> {
    let request: NamespaceOnly = body(&bytes, true)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    run(&nsp, Command::DisconnectSocket { sid: socket }).await
}
