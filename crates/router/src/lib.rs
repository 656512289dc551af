//! The room router of a Switchboard cluster, transport-agnostic: leases of
//! live replicas, ownership of rooms, the owner's room table, and fan-out
//! of broadcasts to gateways in batches. The design is docs/cluster.md.
//!
//! # Layout
//!
//! - [`router`]: [`Router`], one replica, tying the rest together.
//! - [`node`]: [`NodeId`] (of routers and gateways) and [`Member`]
//!   (`<id>|<address>` in a lease set).
//! - [`membership`]: [`Membership`], a lease in `sb:routers` or
//!   `sb:gateways` and the live set, polled and published on a watch
//!   channel, held through broker outages and restarts.
//! - [`ownership`]: rendezvous hashing over the live routers (a stable
//!   64-bit hash), and the keys `room:<nsp>:<room>` and `nsp:<nsp>`.
//! - [`rooms`]: [`RoomTable`], per room the gateways with members and the
//!   users, per namespace the users online, per room a sequence. Plain
//!   data.
//! - [`fanout`]: [`Publish`] → stream append (`sb:room:<nsp>:<room>`),
//!   numbering, one delivery per gateway with members, in offset order.
//! - [`batcher`]: per gateway, deliveries batched into one `PUBLISH` on
//!   `sb:gw:<id>` (1 ms or 64 deliveries).
//! - [`batch`]: [`Delivery`] and the bytes of a batch
//!   ([`encode_batch`]/[`decode_batch`]), a stand-in for the gRPC
//!   contract's `DeliveryBatch`.
//! - [`config`]: [`RouterConfig`] and its parts, with the documented
//!   defaults; [`error`]: [`RouterError`].
//!
//! What is not here: the gRPC service and client (they call [`Router`]),
//! the gateway side (subscribing to `sb:gw:<id>`, re-announcing, recovery
//! from the streams), and what a broadcast means to the chat.

pub mod batch;
pub mod batcher;
pub mod config;
pub mod error;
pub mod fanout;
pub mod membership;
pub mod node;
pub mod ownership;
pub mod rooms;
pub mod router;
mod sync;

pub use batch::{Batch, Delivery, Stamp, decode_batch, encode_batch};
pub use batcher::gateway_channel;
pub use config::{BatchConfig, LeaseConfig, RouterConfig};
pub use error::RouterError;
pub use fanout::{Publish, Published};
pub use membership::{GATEWAYS, LiveSet, Membership, ROUTERS};
pub use node::{GatewayId, Member, NodeId, RouterId};
pub use rooms::{ANONYMOUS, Holdings, PresenceChange, PresenceEvent, RoomTable};
pub use router::Router;

/// Registers the descriptions of this crate's metrics with the installed
/// recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(fanout::PUBLISHES, "Broadcasts handled by this router, by outcome.");
    metrics::describe_counter!(batcher::BATCHES, "Delivery batches published to gateways, by outcome.");
    metrics::describe_histogram!(batcher::BATCH_SIZE, "Deliveries per published batch.");
}
