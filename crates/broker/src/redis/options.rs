//! Settings of a [`RedisBroker`](super::RedisBroker).

use std::time::Duration;

/// How stream retention trims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Trim {
    /// `MAXLEN ~` / `MINID ~`: Redis trims whole internal nodes (about 100
    /// entries) when it is cheap, so a stream may keep somewhat more than
    /// asked; never fewer.
    #[default]
    Approximate,
    /// `MAXLEN =` / `MINID =`: exactly what [`Retention`](crate::Retention) says, as the
    /// memory broker does, at some cost per append.
    Exact,
}

/// Settings of a [`RedisBroker`](super::RedisBroker).
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Bound on one call: the round trip, and opening the connection if it
    /// must be.
    pub command_timeout: Duration,
    /// Bound on opening one connection.
    pub connect_timeout: Duration,
    pub trim: Trim,
    /// First pause before the pub/sub connection tries again; it doubles up
    /// to `reconnect_delay_max`.
    pub reconnect_delay: Duration,
    pub reconnect_delay_max: Duration,
    /// How often the pub/sub connection is pinged, so that a Redis that
    /// stopped answering without closing is noticed.
    pub pubsub_ping_interval: Duration,
    /// Messages buffered per local subscriber before it counts as lagging.
    pub subscriber_capacity: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            command_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            trim: Trim::Approximate,
            reconnect_delay: Duration::from_millis(50),
            reconnect_delay_max: Duration::from_secs(1),
            pubsub_ping_interval: Duration::from_secs(1),
            subscriber_capacity: 1024,
        }
    }
}
