//! Test support for Switchboard: a standalone server on port 0, tokens, a
//! minimal Socket.IO client, and a minimal HTTP client for the server API.
//!
//! # Layout
//!
//! - [`server`]: [`spawn_standalone`] and the [`TestServer`] it returns
//!   (the gateway with the chat mounted, on `127.0.0.1:0`).
//! - [`client`]: [`TestClient`], one Socket.IO socket over a WebSocket:
//!   emit with or without an ack, wait for an event, expect no event, raw
//!   frames for malformed input.
//! - [`http`]: one HTTP/1.1 request, for the server API.
//! - [`redis`]: [`RedisServer`], a private `redis-server` on a free port.
//! - [`cluster`]: [`Cluster`], a real cluster of the `switchboard` binary
//!   (Redis, routers, gateways as child processes) to kill, restart and
//!   scrape.
//!
//! Waiting is always bounded: a wait that times out panics with what was
//! received instead, which is the message a failing test should print.
//!
//! ```no_run
//! # async fn example() {
//! let server = switchboard_testkit::spawn_standalone(|_| {}).await;
//! let mut alice = server.connect("/", "alice").await;
//! let mut bob = server.connect("/", "bob").await;
//! alice.ack("room:join", serde_json::json!("lobby")).await;
//! bob.ack("room:join", serde_json::json!("lobby")).await;
//! alice.emit("room:message", &[serde_json::json!({"roomId": "lobby", "text": "hi"})]);
//! let message = bob.wait_for("room:message").await;
//! assert_eq!(message.data()["sender"], "alice");
//! # }
//! ```

pub mod client;
pub mod cluster;
pub mod http;
pub mod redis;
pub mod server;
pub mod wait;

pub use client::{AckError, ConnectError, Event, TestClient};
pub use cluster::{Cluster, ClusterOptions, Metrics, Role};
pub use http::{HttpResponse, RequestError};
pub use redis::RedisServer;
pub use server::{Options, TestServer, spawn_standalone};
pub use switchboard_auth::mint_hs256;
pub use wait::eventually;

/// How long a wait lasts unless told otherwise.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(5);
