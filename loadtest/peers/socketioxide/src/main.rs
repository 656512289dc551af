//! socketioxide benchmark peer: `room:join` (roomId string or `{roomId}`;
//! ack `{ok: true}`) and `room:message` (`{roomId, ...}`, members only;
//! every member gets `{...payload, sender, timestamp}`), HS256 auth from
//! `auth.token` when JWT_SECRET is set, and the socketioxide-redis adapter
//! when REDIS_URL is set (for a cluster of several processes). env: PORT
//! (3000), HOST (127.0.0.1), JWT_SECRET, REDIS_URL, WORKERS (tokio worker
//! threads, default: available CPUs).

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use serde_json::{Map, Value};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

static SECRET: OnceLock<Option<DecodingKey>> = OnceLock::new();

#[derive(Clone)]
struct UserId(Arc<str>);

#[derive(Debug)]
struct AuthError(&'static str);

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

async fn authenticate<A: Adapter>(s: SocketRef<A>, TryData(auth): TryData<Value>) -> Result<(), AuthError> {
    let Some(key) = SECRET.get().and_then(Option::as_ref) else {
        s.extensions.insert(UserId(s.id.to_string().into()));
        return Ok(());
    };
    let token = auth
        .ok()
        .and_then(|a| a.get("token").and_then(Value::as_str).map(str::to_owned))
        .ok_or(AuthError("Authentication required"))?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    let data = decode::<Claims>(&token, key, &validation).map_err(|_| AuthError("Invalid token"))?;
    s.extensions.insert(UserId(data.claims.sub.into()));
    Ok(())
}

fn user_id<A: Adapter>(s: &SocketRef<A>) -> Arc<str> {
    s.extensions.get::<UserId>().map_or_else(|| s.id.to_string().into(), |u| u.0)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

async fn on_connect<A: Adapter>(s: SocketRef<A>) {
    s.on("room:join", on_join::<A>);
    s.on("room:message", on_message::<A>);
}

async fn on_join<A: Adapter>(s: SocketRef<A>, Data(arg): Data<Value>, ack: AckSender<A>) {
    let room = match &arg {
        Value::String(r) => Some(r.clone()),
        Value::Object(o) => o.get("roomId").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    };
    match room {
        Some(room) if !room.is_empty() => {
            s.join(room);
            let _ = ack.send(&serde_json::json!({ "ok": true }));
        }
        _ => {
            let _ = ack.send(&serde_json::json!({ "error": "Invalid roomId" }));
        }
    }
}

async fn on_message<A: Adapter>(s: SocketRef<A>, Data(mut payload): Data<Map<String, Value>>, ack: AckSender<A>) {
    let room = payload.get("roomId").and_then(Value::as_str).map(str::to_owned);
    let Some(room) = room.filter(|r| s.rooms().iter().any(|m| m == r)) else {
        let _ = ack.send(&serde_json::json!({ "error": "Not a member of this room" }));
        return;
    };
    payload.insert("sender".into(), Value::String(user_id(&s).to_string()));
    payload.insert("timestamp".into(), Value::from(now_ms()));
    let _ = s.within(room).emit("room:message", &payload).await;
    let _ = ack.send(&serde_json::json!({ "ok": true }));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(3000);
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let secret = std::env::var("JWT_SECRET").ok().filter(|s| !s.is_empty());
    let _ = SECRET.set(secret.map(|s| DecodingKey::from_secret(s.as_bytes())));
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("WORKERS").ok().and_then(|w| w.parse().ok()) {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build()?.block_on(async move {
        let app = match std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
            Some(url) => {
                // The adapter needs RESP3 for its pub/sub.
                let url = if url.contains("protocol=") { url } else { format!("{url}?protocol=resp3") };
                let client = redis::Client::open(url)?;
                let adapter = RedisAdapterCtr::new_with_redis(&client).await?;
                let (layer, io) = SocketIo::builder().with_adapter::<RedisAdapter<_>>(adapter).build_layer();
                io.ns("/", on_connect.with(authenticate)).await?;
                axum::Router::new().layer(layer)
            }
            None => {
                let (layer, io) = SocketIo::new_layer();
                io.ns("/", on_connect.with(authenticate));
                axum::Router::new().layer(layer)
            }
        };
        let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
        eprintln!("socketioxide peer listening on {} (pid {})", listener.local_addr()?, std::process::id());
        axum::serve(listener, app).await?;
        Ok(())
    })
}
