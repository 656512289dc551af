//! Settings of a [`Router`](crate::Router): leases, stream retention and
//! delivery batching, with the defaults of docs/cluster.md.

use std::time::Duration;

use switchboard_broker::Retention;

/// How a node holds its lease and watches a lease set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a renewal keeps the node live: the longest a dead node
    /// stays in the set.
    pub ttl: Duration,
    /// How often the node renews; a third of `ttl`, so that two renewals
    /// may fail before the lease lapses.
    pub renew_every: Duration,
    /// How often the live set is read: a change is seen within this.
    pub poll_every: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_millis(1500),
            renew_every: Duration::from_millis(500),
            poll_every: Duration::from_millis(250),
        }
    }
}

/// How deliveries to one gateway are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// How long the first delivery of a batch waits for others; zero (the
    /// default): not at all, a batch is what queued while the previous one
    /// was being published (lower latency, smaller batches).
    pub linger: Duration,
    /// Deliveries in one batch at most; a full batch leaves at once.
    pub max_deliveries: usize,
    /// Deliveries queued per gateway before publishers wait (backpressure
    /// from a slow broker reaches the callers instead of memory).
    pub queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self { linger: Duration::ZERO, max_deliveries: 64, queue: 4096 }
    }
}

/// Settings of a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterConfig {
    pub lease: LeaseConfig,
    /// What each room stream keeps: a count and an age (the recovery
    /// window of the standalone server by default).
    pub retention: Retention,
    pub batch: BatchConfig,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            lease: LeaseConfig::default(),
            retention: Retention::new(10_000, Some(Duration::from_secs(120))),
            batch: BatchConfig::default(),
        }
    }
}
