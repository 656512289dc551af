//! `POST /api/emit` and `POST /api/notify`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use switchboard_gateway::{Namespace, Target};
use switchboard_protocol::packet::RESERVED_EVENTS;

use super::{Api, body};
use switchboard_gateway::cluster::Command;

use crate::error::ChatError;
use crate::notifications::user_room;
use crate::{NOTIFICATIONS_NAMESPACE, events::ok};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EmitBody {
    event: String,
    /// One argument; present even when `null`.
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
    args: Option<Vec<Value>>,
    namespace: Option<String>,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotifyBody {
    user_id: String,
    #[serde(default, deserialize_with = "present")]
    data: Option<Value>,
}

/// A field that is there, `null` included, is `Some`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

pub(super) async fn emit(State(api): State<Api>, bytes: Bytes) -> Result<Json<Value>, ChatError> {
    let request: EmitBody = body(&bytes, false)?;
    if RESERVED_EVENTS.contains(&request.event.as_str()) {
        return Err(ChatError::BadRequest(format!("reserved event name {:?}", request.event)));
    }
    let args = match (request.args, request.data) {
        (Some(args), _) => args,
        (None, Some(data)) => vec![data],
        (None, None) => Vec::new(),
    };
    let namespaces = match request.namespace.as_deref() {
        Some("*") => api.gateway.namespaces(),
        name => vec![api.namespace(name)?],
    };
    for nsp in namespaces {
        if nsp.is_clustered() && !request.users.is_empty() {
            // The users' sockets are wherever they are: a command to their
            // gateways, leaving out the rooms' members (they get the
            // broadcast), so that each socket gets it once.
            let mut except = request.except.clone();
            except.extend(request.rooms.iter().cloned());
            let command = Command::Emit {
                users: request.users.clone(),
                sockets: Vec::new(),
                except,
                event: request.event.clone(),
                args_json: Bytes::from(serde_json::to_vec(&args).unwrap_or_default()),
            };
            nsp.command(command).await?;
            if !request.rooms.is_empty() {
                let mut target = Target::all();
                target.rooms = request.rooms.iter().map(|r| Arc::from(r.as_str())).collect();
                target.except = request.except.iter().map(|r| Arc::from(r.as_str())).collect();
                nsp.broadcast(&target, &request.event, &args, &[]).await?;
            }
            continue;
        }
        if let Some(target) = target(&nsp, &request.rooms, &request.users, &request.except) {
            nsp.broadcast(&target, &request.event, &args, &[]).await?;
        }
    }
    metrics::counter!("switchboard_chat_api_emits_total").increment(1);
    Ok(Json(ok()))
}

/// Rooms (socket ids included) and the sockets of users, together; `None`
/// when rooms or users were asked for but nobody matches.
fn target(nsp: &Namespace, rooms: &[String], users: &[String], except: &[String]) -> Option<Target> {
    let mut target = Target::all();
    target.rooms = rooms.iter().map(|r| Arc::from(r.as_str())).collect();
    for user in users {
        target.rooms.extend(nsp.sockets_of_user(user).iter().map(|s| Arc::from(s.id())));
    }
    if target.rooms.is_empty() && !(rooms.is_empty() && users.is_empty()) {
        return None;
    }
    target.except = except.iter().map(|r| Arc::from(r.as_str())).collect();
    Some(target)
}

pub(super) async fn notify(State(api): State<Api>, bytes: Bytes) -> Result<Json<Value>, ChatError> {
    let request: NotifyBody = body(&bytes, false)?;
    let nsp = api.namespace(Some(NOTIFICATIONS_NAMESPACE))?;
    let args: Vec<Value> = request.data.into_iter().collect();
    nsp.broadcast(&Target::room(user_room(&request.user_id)), "notification", &args, &[]).await?;
    metrics::counter!("switchboard_chat_api_notifications_total").increment(1);
    Ok(Json(json!({ "ok": true })))
}
