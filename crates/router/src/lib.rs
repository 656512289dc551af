//! The room router of a Switchboard cluster: leases of live replicas,
//! ownership of rooms, the owner's room table, fan-out of broadcasts to
//! gateways in batches, history, and the gRPC service that gateways talk
//! to. The design is docs/cluster.md; the contract
//! `proto/switchboard/v1/router.proto` (crate `switchboard-proto`).
//!
//! # Layout
//!
//! - [`router`]: [`Router`], one replica, tying the rest together; it knows
//!   no transport.
//! - [`grpc`]: [`RouterService`], the `switchboard.v1.Router` gRPC service
//!   over a [`Router`] (sessions, publishes, presence and history calls),
//!   [`grpc::serve`] with the standard health service next to it.
//! - [`node`]: [`NodeId`] (of routers and gateways) and [`Member`]
//!   (`<id>|<address>` in a lease set).
//! - [`membership`]: [`Membership`], a lease in `sb:routers` or
//!   `sb:gateways` and the live set, polled and published on a watch
//!   channel, held through broker outages and restarts.
//! - [`ownership`]: rendezvous hashing over the live routers (a stable
//!   64-bit hash), and the keys `room:<nsp>:<room>` and `nsp:<nsp>`.
//! - [`rooms`]: [`RoomTable`], per room the gateways with members and the
//!   users, per namespace the users online and their gateways, per room a
//!   sequence. Plain data.
//! - [`fanout`]: [`Publish`] → stream append (`sb:room:<nsp>:<room>`),
//!   numbering, one delivery per gateway with members, in offset order; in
//!   two stages, sequential ([`Router::start_publish`]) and concurrent
//!   ([`Pending::finish`]).
//! - [`batcher`]: per gateway, deliveries batched into one `PUBLISH` on
//!   `sb:gw:<id>` (1 ms or 64 deliveries).
//! - [`wire`]: the protobuf bytes written: stream entries (one `Delivery`)
//!   and gateway channel messages (`ChannelMessage{DeliveryBatch}`).
//! - [`history`]: a room's kept messages, read back from its stream.
//! - [`config`]: [`RouterConfig`] and its parts, with the documented
//!   defaults; [`error`]: [`RouterError`].
//!
//! What is not here: the `switchboard router` process (crate
//! `switchboard`), the gateway side (its sessions to the routers,
//! subscribing to `sb:gw:<id>`, re-announcing, recovery from the streams),
//! and what a broadcast means to the chat.

pub mod batcher;
pub mod config;
pub mod error;
pub mod fanout;
pub mod grpc;
pub mod history;
pub mod membership;
pub mod node;
pub mod ownership;
pub mod rooms;
pub mod router;
mod sync;
pub mod wire;

pub use batcher::gateway_channel;
pub use config::{BatchConfig, LeaseConfig, RouterConfig};
pub use error::RouterError;
pub use fanout::{Pending, Publish, Published};
pub use grpc::RouterService;
pub use membership::{GATEWAYS, LiveSet, Membership, ROUTERS};
pub use node::{GatewayId, Member, NodeId, RouterId};
pub use rooms::{ANONYMOUS, Holdings, PresenceChange, PresenceEvent, RoomTable};
pub use router::Router;
pub use wire::decode_batch;

/// Registers the descriptions of this crate's metrics with the installed
/// recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(fanout::PUBLISHES, "Broadcasts handled by this router, by outcome.");
    metrics::describe_counter!(batcher::BATCHES, "Delivery batches published to gateways, by outcome.");
    metrics::describe_histogram!(batcher::BATCH_SIZE, "Deliveries per published batch.");
    metrics::describe_counter!(
        grpc::GRPC_REQUESTS,
        "gRPC calls answered, by method and status code (a session when it ends)."
    );
    metrics::describe_histogram!(
        grpc::GRPC_DURATION,
        metrics::Unit::Seconds,
        "Time taken by unary gRPC calls, by method."
    );
    metrics::describe_gauge!(grpc::SESSIONS, "Open gateway Session streams.");
    metrics::describe_gauge!(grpc::ROOMS_OWNED, "Rooms in this router's table.");
}
