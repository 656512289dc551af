//! Routers against a broker, as a cluster uses them: leases seen by each
//! other and ended by a crash, deliveries only to gateways with members,
//! batching and order under a burst, ownership, and outages. Each scenario
//! runs against the memory broker and against a private `redis-server`
//! (testkit's `RedisServer`, never the system Redis).

#[path = "common/batches.rs"]
mod batches;
#[path = "cluster/fanout.rs"]
mod fanout;
#[path = "cluster/leases.rs"]
mod leases;
#[path = "cluster/outages.rs"]
mod outages;
#[path = "cluster/support.rs"]
mod support;
