//! The broker: storage and messaging shared by the chat (and, in a cluster,
//! by gateways and routers), behind one object-safe trait.
//!
//! # Layout
//!
//! - this file: the [`Broker`] trait, its [`Entry`], [`Retention`] and
//!   [`BrokerError`] types.
//! - [`id`]: stream entry ids (`<ms>-<seq>`), parsed and formatted.
//! - [`memory`]: [`MemoryBroker`], the in-process implementation of
//!   standalone mode and tests.
//! - [`redis`]: [`RedisBroker`], the implementation of a cluster, over
//!   `redis` (one multiplexed command connection, one pub/sub connection).
//! - [`subscription`]: [`Subscription`], the receiving end of
//!   [`Broker::subscribe`].
//!
//! The trait is shaped after what Redis offers, so that a Redis
//! implementation maps each method to one or two commands: streams
//! (`XADD` with `MAXLEN`/`MINID`, `XRANGE`, `XREVRANGE`), `SET NX PX`,
//! `PUBLISH`/`SUBSCRIBE`, and leases in sorted sets (`ZADD`,
//! `ZRANGEBYSCORE`, `ZREM`). What is not here: what the chat stores (crate
//! `switchboard-chat`).

pub mod id;
pub mod memory;
pub mod redis;
pub mod subscription;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

pub use id::StreamId;
pub use memory::MemoryBroker;
pub use redis::{RedisBroker, RedisOptions, Trim};
pub use subscription::Subscription;

/// A boxed future, as the trait's methods return them (object safety).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a broker call returns.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The broker cannot be reached (a Redis outage); the operation did not
    /// happen and may be retried.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// A stream id that is not of the form `<ms>-<seq>`.
    #[error("invalid stream id {0:?}")]
    InvalidId(String),
    /// A subscriber fell behind and this many messages were dropped for it.
    #[error("subscriber lagged behind, {0} messages lost")]
    Lagged(u64),
    /// The subscription ended (the broker is gone).
    #[error("subscription closed")]
    Closed,
    /// The broker's settings are wrong (a Redis URL that does not parse); a
    /// process should not start with them.
    #[error("invalid broker configuration: {0}")]
    Config(String),
}

/// One stream entry: its id and the bytes appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The id, in the fixed-width form of [`StreamId`]: ids of one stream
    /// sort as strings in the order they were appended.
    pub id: String,
    pub data: Bytes,
}

/// How much of a stream is kept, applied when appending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest entries kept (Redis `MAXLEN`); at least one is kept.
    pub max_len: usize,
    /// Entries older than this are dropped (Redis `MINID`); `None` keeps them.
    pub max_age: Option<Duration>,
}

impl Retention {
    pub fn new(max_len: usize, max_age: Option<Duration>) -> Self {
        Self { max_len, max_age }
    }
}

/// Storage and messaging. Implementations are shared as `Arc<dyn Broker>`.
///
/// Streams are append-only logs with ids that sort in append order; keys are
/// write-once values with an optional time to live; channels carry
/// fire-and-forget messages to whoever subscribes at the time. In Redis,
/// stream names and keys share one namespace: callers keep them apart (by a
/// prefix); channels have their own.
pub trait Broker: Send + Sync + 'static {
    /// Appends `data` to `stream` (created on first append), trims it to
    /// `retention`, and returns the new entry's id.
    fn stream_append<'a>(&'a self, stream: &'a str, data: Bytes, retention: Retention)
    -> BoxFuture<'a, Result<String>>;

    /// Appends each `(stream, data)` of `appends` as
    /// [`stream_append`](Self::stream_append) does one, in the order given
    /// (appends to one stream get ids in that order), in one round trip
    /// where the broker can; the ids, in the same order. The count limit
    /// holds after every append; the age limit and the stream's expiry may
    /// be applied up to a second late (the Redis broker trims by age at most
    /// once a second per stream). On an error some of them may have been
    /// appended.
    fn stream_append_many<'a>(
        &'a self,
        appends: &'a [(String, Bytes)],
        retention: Retention,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let mut ids = Vec::with_capacity(appends.len());
            for (stream, data) in appends {
                ids.push(self.stream_append(stream, data.clone(), retention).await?);
            }
            Ok(ids)
        })
    }

    /// Up to `count` entries strictly after `after` (any `<ms>-<seq>` id,
    /// padded or not), oldest first.
    fn stream_range_after<'a>(
        &'a self,
        stream: &'a str,
        after: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>>>;

    /// The newest `count` entries, oldest first.
    fn stream_last<'a>(&'a self, stream: &'a str, count: usize) -> BoxFuture<'a, Result<Vec<Entry>>>;

    /// One entry by id, if it is still kept.
    fn stream_get<'a>(&'a self, stream: &'a str, id: &'a str) -> BoxFuture<'a, Result<Option<Entry>>>;

    /// Sets `key` unless it is set (Redis `SET NX PX`); true when it was set
    /// now. With a `ttl`, the key disappears after that time.
    fn set_if_absent<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> BoxFuture<'a, Result<bool>>;

    /// Sets `key` (Redis `SET PX`), replacing any value; with a `ttl`, the
    /// key disappears after that time.
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> BoxFuture<'a, Result<()>>;

    /// Removes `key` and returns its value (Redis `GETDEL`): of two takers,
    /// one gets it.
    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// Counted slots: adds `member`, held by `holder` (an entry of the
    /// lease set `holders`), to the slots `key`, unless `max` slots are
    /// taken already by members whose holder's lease is live (the others
    /// are dropped on the way: a holder that died leaks nothing). Taking a
    /// slot a member holds already succeeds. Atomic; true when it was taken.
    /// The slots expire `ttl` after the last change.
    fn slot_acquire<'a>(
        &'a self,
        key: &'a str,
        member: &'a str,
        holder: &'a str,
        holders: &'a str,
        max: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Gives a slot back.
    fn slot_release<'a>(&'a self, key: &'a str, member: &'a str) -> BoxFuture<'a, Result<()>>;

    /// The value of `key`, if set and not expired.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>>;

    /// Removes `key`; true if it was set.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Publishes a message on `channel`; returns how many subscribers (of this
    /// process, for Redis: of the whole server) it reached.
    fn publish<'a>(&'a self, channel: &'a str, message: Bytes) -> BoxFuture<'a, Result<usize>>;

    /// Subscribes to `channel`: every message published after this call.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription>>;

    /// Holds `member` in the lease set `set` until `ttl` from now (Redis: a
    /// sorted set scored by expiry in ms, `ZADD`), creating or extending its
    /// lease; members whose lease ended are swept from the set. Expiry is
    /// measured on the broker's clock, so that members on machines whose
    /// clocks disagree still see the same leases.
    fn lease_renew<'a>(&'a self, set: &'a str, member: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>>;

    /// The members of `set` whose lease has not ended, sorted and without
    /// duplicates (Redis `ZRANGEBYSCORE <now> +inf`).
    fn lease_members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>>;

    /// Ends `member`'s lease now (Redis `ZREM`), as on a clean exit; a member
    /// that holds none is no error.
    fn lease_remove<'a>(&'a self, set: &'a str, member: &'a str) -> BoxFuture<'a, Result<()>>;
}
