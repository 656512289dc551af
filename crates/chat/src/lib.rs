//! The chat application of SPEC.md section 3 (namespaces `/` and `/chat`,
//! and any dynamic namespace), the `/notifications` namespace of section 4,
//! and the HTTP server API of section 5 (docs/api.md).
//!
//! # Layout
//!
//! - this file: [`ChatConfig`] and [`Chat`], which mounts the namespaces.
//! - `events`: the gateway [`Handler`] of a chat namespace: connect,
//!   disconnect, and the table of client events (`chat:message`,
//!   `announcement`, `users:online` are handled there).
//! - `rooms`: `room:join`, `room:leave`, `room:message`, `typing:*`.
//! - `history`: stored messages (`message:send`, `message:read`, history
//!   on join and for the API), kept in the broker's streams.
//! - `presence`: who is online per namespace, and the coalesced
//!   `users:online` broadcast.
//! - `notifications`: the `/notifications` handler.
//! - `payload`: reading client payloads; anything malformed is a refusal.
//! - [`api`]: the `/api/` routes.
//! - [`error`]: [`ChatError`], and how it reaches the client (ack) or a
//!   backend (HTTP status).
//!
//! What is not here: the wire protocol, sockets and rooms themselves (crate
//! `switchboard-gateway`), storage (crate `switchboard-broker`).

pub mod api;
pub mod error;
mod events;
mod history;
mod notifications;
mod payload;
mod presence;
mod rooms;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchboard_broker::Broker;
use switchboard_gateway::{Gateway, GatewayBuilder, Handler};

pub use error::ChatError;

use crate::presence::Presence;

/// The chat namespace that also takes the `message` shorthand.
pub const CHAT_NAMESPACE: &str = "/chat";
/// The namespace of per-user notifications.
pub const NOTIFICATIONS_NAMESPACE: &str = "/notifications";

/// The chat's settings (docs/configuration.md, "Chat application").
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Namespace-wide `users:online` on every change.
    pub presence_broadcast: bool,
    /// With broadcasting off: send the list to each socket when it connects.
    pub presence_on_connect: bool,
    /// At most one `users:online` per namespace per interval.
    pub presence_interval: Duration,
    /// Roles allowed to send `announcement`.
    pub announce_roles: Vec<String>,
    /// Newest stored messages sent in `room:history` on join.
    pub history_on_join: usize,
    /// Stored messages kept per room.
    pub history_max_messages: usize,
    /// Stored messages older than this are dropped (and so are read receipts).
    pub history_max_age: Duration,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            presence_broadcast: true,
            presence_on_connect: true,
            presence_interval: Duration::from_millis(250),
            announce_roles: vec!["admin".to_owned()],
            history_on_join: 50,
            history_max_messages: 1000,
            history_max_age: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Stripes of the per-room lock that keeps `message:new` in id order.
const SEND_LOCKS: usize = 64;

/// The chat application, shared by its namespaces and the server API.
pub struct Chat {
    config: ChatConfig,
    broker: Arc<dyn Broker>,
    presence: Presence,
    /// A message is appended and broadcast under its room's stripe, so that
    /// members receive messages in the order of their ids.
    send_locks: Vec<tokio::sync::Mutex<()>>,
    hasher: RandomState,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Chat {
    pub fn new(config: ChatConfig, broker: Arc<dyn Broker>) -> Arc<Chat> {
        Arc::new(Chat {
            presence: Presence::new(config.presence_broadcast, config.presence_on_connect, config.presence_interval),
            config,
            broker,
            send_locks: (0..SEND_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: RandomState::new(),
        })
    }

    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// Mounts the chat on `/` and `/chat`, and the notifications on
    /// `/notifications`.
    pub fn mount(self: &Arc<Self>, builder: GatewayBuilder) -> GatewayBuilder {
        let chat = self.chat_handler();
        builder
            .namespace("/", chat.clone())
            .namespace(CHAT_NAMESPACE, chat)
            .namespace(NOTIFICATIONS_NAMESPACE, self.notifications_handler())
    }

    /// The handler of a chat namespace (for dynamic namespaces too).
    pub fn chat_handler(self: &Arc<Self>) -> Arc<dyn Handler> {
        Arc::new(events::ChatHandler::new(self.clone()))
    }

    /// The handler of `/notifications`.
    pub fn notifications_handler(self: &Arc<Self>) -> Arc<dyn Handler> {
        Arc::new(notifications::NotificationsHandler)
    }

    /// In a cluster, starts following presence in every namespace of
    /// `gateway` (the gateway that leads a namespace's presence broadcasts
    /// `users:online`, whether or not it holds sockets there). Call once
    /// the gateway is built; dynamic namespaces are followed from their
    /// first socket on each gateway.
    pub fn follow_presence(&self, gateway: &Gateway) {
        if !self.config.presence_broadcast {
            return;
        }
        for nsp in gateway.namespaces() {
            if nsp.is_clustered() && nsp.name() != NOTIFICATIONS_NAMESPACE {
                self.presence.watch_cluster(&nsp);
            }
        }
    }

    /// The server API under `/api/`; with no key, every `/api/` path is 404.
    pub fn api_router(self: &Arc<Self>, gateway: Gateway, api_key: Option<String>) -> axum::Router {
        api::router(self.clone(), gateway, api_key)
    }

    fn send_lock(&self, stream: &str) -> &tokio::sync::Mutex<()> {
        let index = self.hasher.hash_one(stream) as usize % self.send_locks.len();
        &self.send_locks[index]
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
