//! `GET /api/rooms/{roomId}/members` and `GET /api/rooms/{roomId}/history`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Uri;
use serde::Deserialize;
use serde_json::{Value, json};
use switchboard_broker::StreamId;

use super::{Api, query};
use switchboard_gateway::cluster::Command;

use crate::error::ChatError;

/// `limit` when the request gives none.
const DEFAULT_LIMIT: usize = 50;

#[derive(Debug, Deserialize)]
pub(super) struct MembersQuery {
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    namespace: Option<String>,
    since: Option<String>,
    limit: Option<usize>,
}

pub(super) async fn members(
    State(api): State<Api>,
    Path(room): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ChatError> {
    let request: MembersQuery = query(&uri)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    let reply = nsp.command(Command::RoomSockets { room }).await?;
    Ok(Json(json!({ "users": reply.users, "sockets": reply.socket_ids })))
}

pub(super) async fn history(
    State(api): State<Api>,
    Path(room): Path<String>,
    uri: Uri,
) -> Result<Json<Value>, ChatError> {
    let request: HistoryQuery = query(&uri)?;
    let nsp = api.namespace(request.namespace.as_deref())?;
    let since = match request.since.as_deref() {
        None | Some("") => None,
        Some(id) => Some(id.parse::<StreamId>().map_err(|_| ChatError::BadRequest(format!("invalid since {id:?}")))?),
    };
    let max = api.chat.config().history_max_messages;
    let limit = match (request.limit, since) {
        (Some(limit), _) => limit.min(max),
        (None, Some(_)) => max,
        (None, None) => DEFAULT_LIMIT.min(max),
    };
    let messages = api.chat.history(&nsp, &room, since, limit).await?;
    Ok(Json(json!({ "messages": messages })))
}
