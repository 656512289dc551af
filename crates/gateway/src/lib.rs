//! The Switchboard gateway: the Socket.IO server that holds client
//! connections.
//!
//! # Layout
//!
//! - [`server`]: the [`Gateway`], its `/socket.io/` route (handshake,
//!   polling, WebSocket upgrade, CORS) and the accept loop [`serve`].
//! - `engine`: one Engine.IO session and the Socket.IO layer on it
//!   (CONNECT with authentication and recovery, events, acknowledgements).
//! - `transport`: the WebSocket task and the polling requests.
//! - [`namespace`]: sockets, the room index, broadcasting.
//! - [`socket`]: one client in one namespace: rooms, emits, acks, limits.
//! - `recovery`: the packet log and sessions kept for recovery.
//! - `frame`, `outbox`, `encode`: frames encoded once and queued per session.
//! - [`handler`]: what an application (the chat) implements.
//! - [`cluster`]: [`ClusterLink`], what a cluster gateway tells and asks
//!   the rest of the cluster (implemented by crate `switchboard-cluster`).
//! - [`sid`]: signed session ids ([`SidSigner`]) and where the other
//!   gateways are ([`Peers`]); `forward`: passing requests for their
//!   sessions on to them (no sticky sessions in a cluster).
//!
//! What is not here: the chat's events (crate `switchboard-chat`), token
//! checking (crate `switchboard-auth`), configuration from the environment
//! (the `switchboard` binary).

pub mod cluster;
pub mod config;
mod encode;
mod engine;
mod forward;
mod frame;
pub mod handler;
mod limits;
pub mod namespace;
mod outbox;
mod recovery;
pub mod server;
pub mod sid;
pub mod socket;
mod sync;
mod transport;

pub use cluster::{ClusterLink, Unavailable};
pub use config::{Config, Cors, Limits};
pub use handler::{BoxFuture, ConnectRefusal, DisconnectReason, Event, Handler};
pub use limits::Limit;
pub use namespace::{Namespace, Target};
pub use server::{Gateway, GatewayBuilder, serve, url_pairs};
pub use sid::{Peers, SidSigner, SidSignerError};
pub use socket::{AckError, AckReply, JoinError, Socket};
pub use switchboard_auth::Identity;
