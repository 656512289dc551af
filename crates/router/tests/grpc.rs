//! The gRPC service against a private `redis-server`: two routers served
//! by tonic on 127.0.0.1, and fake gateways (a tonic client and a
//! subscription to their channel `sb:gw:<id>`), as a real gateway uses
//! them: sessions and deliveries, ownership, stored messages and history,
//! presence calls, and Redis outages.

#[path = "common/batches.rs"]
mod batches;
#[path = "grpc/calls.rs"]
mod calls;
#[path = "grpc/outages.rs"]
mod outages;
#[path = "grpc/session.rs"]
mod session;
#[path = "grpc/support.rs"]
mod support;
