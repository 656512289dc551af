//! The real cluster, process by process: `switchboard router` and
//! `switchboard gateway` of this build started by testkit's `Cluster` with a
//! private Redis, 2 routers and 3 gateways per test, clients connected over
//! WebSocket to chosen gateways.
//!
//! - `rooms`: a room spanning gateways gets SPEC.md section 3 as one
//!   process would give it; a gateway without members gets no deliveries.
//! - `faults`: `kill -9` of a gateway, of a router, and Redis stopped 10 s
//!   while rooms exchange acknowledged messages; each prints a
//!   `CLUSTER-FAULT ...` line with what it measured.
//!
//! The tests run one at a time (a lock here, a test group in
//! `.config/nextest.toml`), each in a few seconds (Redis stopped: ~20 s).

#[path = "cluster/faults.rs"]
mod faults;
#[path = "cluster/rooms.rs"]
mod rooms;
#[path = "cluster/support.rs"]
mod support;
