//! [`RedisBroker`]: the broker of a cluster, over one Redis server.
//!
//! Commands share one multiplexed connection (a `redis` `ConnectionManager`):
//! whatever callers send meanwhile goes out in one write and comes back in
//! one read, and nothing is checked on the way (a pool such as
//! `deadpool-redis` pings every connection it hands out, which doubled the
//! round trips of a cluster's publishes: docs/benchmarks.md). Channels go
//! through one dedicated pub/sub connection owned by a background task
//! (module `pubsub`), which reconnects and resubscribes by itself. Each trait
//! method is one round trip:
//!
//! | method | Redis |
//! |---|---|
//! | `stream_append` | a script: `XADD MAXLEN`, `XTRIM MINID` (`~` or `=`, see [`Trim`]), `PEXPIRE` (module `stream`) |
//! | `stream_append_many` | one pipeline: `XADD MAXLEN` per append, and per stream at most once a second a script for `XTRIM MINID` and `PEXPIRE` (module `stream`) |
//! | `stream_range_after` | `XRANGE key (id + COUNT n` |
//! | `stream_last` | `XREVRANGE key + - COUNT n` |
//! | `stream_get` | `XRANGE key id id COUNT 1` |
//! | `set_if_absent`, `get`, `delete` | `SET NX PX`, `GET`, `DEL` |
//! | `publish`, `subscribe` | `PUBLISH`, `SUBSCRIBE` on the pub/sub connection |
//! | `lease_renew`, `lease_members` | scripts on the server's `TIME`: `ZREMRANGEBYSCORE` + `ZADD`, `ZRANGEBYSCORE` (module `lease`) |
//! | `lease_remove` | `ZREM` |
//!
//! Every failure is [`BrokerError::Unavailable`], and every call is bounded
//! by [`RedisOptions::command_timeout`]: an outage is an error within that
//! time, never a panic or a hang. The broker can be built while Redis is
//! down and heals when it is back: the command connection is opened on
//! first use, opened again by `redis` when it breaks, and replaced by a new
//! one when a call times out (a Redis that stopped answering without
//! closing, or a connection that died without a word).
//!
//! What is not here: knowing what the streams and keys mean (the chat and the
//! router), Redis Cluster or Sentinel, TLS.

mod lease;
mod options;
mod pubsub;
mod stream;

pub use options::{RedisOptions, Trim};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, RedisResult, Value};
use bytes::Bytes;

use crate::{BoxFuture, Broker, BrokerError, Entry, Result, Retention, StreamId, Subscription};

/// Histogram of command durations, label `command`.
pub const COMMAND_DURATION: &str = "switchboard_broker_redis_command_duration_seconds";
/// Counter of failed commands, label `command`.
pub const ERRORS: &str = "switchboard_broker_redis_errors_total";
/// Counter of connections regained after losing Redis, label `connection`
/// (`pubsub` or `commands`).
pub const RECONNECTS: &str = "switchboard_broker_redis_reconnects_total";

/// Registers the descriptions of this module's metrics with the installed
/// recorder.
pub fn describe_metrics() {
    metrics::describe_histogram!(COMMAND_DURATION, metrics::Unit::Seconds, "Redis command round trips, by command.");
    metrics::describe_counter!(ERRORS, "Redis commands that failed or timed out, by command.");
    metrics::describe_counter!(RECONNECTS, "Times Redis was reached again after it was lost, by connection.");
}

/// The Redis broker. Share it as `Arc<dyn Broker>`; dropping it stops its
/// pub/sub task and closes every subscription.
pub struct RedisBroker {
    commands: Commands,
    options: RedisOptions,
    append: ::redis::Script,
    maintain: ::redis::Script,
    maintenance: Maintenance,
    leases: lease::LeaseScripts,
    state: Arc<State>,
    pubsub: pubsub::PubSub,
}

/// What the command path and the pub/sub task both update.
#[derive(Debug, Default)]
struct State {
    reconnects: AtomicU64,
    /// The last command failed for want of Redis: the next success counts as
    /// a reconnect.
    commands_down: AtomicBool,
    pubsub_connected: AtomicBool,
}

impl State {
    fn reconnected(&self, connection: &'static str) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(RECONNECTS, "connection" => connection).increment(1);
        tracing::info!(connection, "redis reachable again");
    }
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("options", &self.options)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// A broker for `url` (`redis://host:port/db`). Nothing is awaited on
    /// Redis: this succeeds while Redis is down, and calls fail with
    /// [`BrokerError::Unavailable`] until it is up. A URL that does not parse
    /// is [`BrokerError::Config`].
    pub async fn connect(url: &str, options: RedisOptions) -> Result<RedisBroker> {
        let invalid = |error: RedisError| BrokerError::Config(format!("redis url: {error}"));
        let client = Client::open(url).map_err(invalid)?;
        let commands = Commands::new(client.clone(), &options).map_err(invalid)?;
        let state = Arc::new(State::default());
        let pubsub = pubsub::PubSub::spawn(client, options.clone(), state.clone());
        Ok(RedisBroker {
            commands,
            options,
            append: stream::append_script(),
            maintain: stream::maintain_script(),
            maintenance: Maintenance::default(),
            leases: lease::LeaseScripts::new(),
            state,
            pubsub,
        })
    }

    pub fn options(&self) -> &RedisOptions {
        &self.options
    }

    /// One `PING` on the command connection, bounded by the command timeout; the
    /// round trip it took.
    pub async fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        self.run("PING", |mut conn| async move { ::redis::cmd("PING").query_async::<String>(&mut conn).await }).await?;
        Ok(started.elapsed())
    }

    /// Readiness: Redis answers `PING` and the pub/sub connection is up.
    pub async fn health(&self) -> Result<()> {
        self.ping().await?;
        if self.pubsub_connected() {
            Ok(())
        } else {
            Err(BrokerError::Unavailable("redis pub/sub connection is down".to_owned()))
        }
    }

    /// Whether the pub/sub connection is up (subscribed to every channel
    /// that has a local subscriber).
    pub fn pubsub_connected(&self) -> bool {
        self.state.pubsub_connected.load(Ordering::Relaxed)
    }

    /// How often Redis was reached again after it was lost, by the command
    /// command connection or by the pub/sub connection.
    pub fn reconnects(&self) -> u64 {
        self.state.reconnects.load(Ordering::Relaxed)
    }

    /// Runs one command (or pipeline) on the command connection within the
    /// command timeout, recording its duration, and maps every failure to
    /// `Unavailable`.
    async fn run<T, F, Fut>(&self, command: &'static str, query: F) -> Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let started = Instant::now();
        let (generation, connection) = self.commands.current();
        let outcome = tokio::time::timeout(self.options.command_timeout, query(connection))
            .await
            .unwrap_or_else(|_| Err(RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))));
        metrics::histogram!(COMMAND_DURATION, "command" => command).record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(value) => {
                if self.state.commands_down.swap(false, Ordering::Relaxed) {
                    self.state.reconnected("commands");
                }
                Ok(value)
            }
            Err(error) => {
                metrics::counter!(ERRORS, "command" => command).increment(1);
                if is_connection_error(&error) {
                    self.state.commands_down.store(true, Ordering::Relaxed);
                }
                let error = if error.is_timeout() {
                    // Whatever the connection is waiting for may never come:
                    // the next caller gets a new one.
                    self.commands.replace(generation);
                    format!("redis {command}: no answer within {:?}", self.options.command_timeout)
                } else {
                    format!("redis {command}: {error}")
                };
                let error = BrokerError::Unavailable(error);
                tracing::debug!(%error, "redis command failed");
                Err(error)
            }
        }
    }

    async fn range(&self, command: &'static str, key: &str, start: String, end: String, count: usize) -> Result<Value> {
        let mut cmd = ::redis::cmd(command);
        cmd.arg(key).arg(start).arg(end).arg("COUNT").arg(count);
        self.run(command, |mut conn| async move { cmd.query_async::<Value>(&mut conn).await }).await
    }
}

/// How often `stream_append_many` trims a stream by age and renews its
/// expiry (the count limit applies on every append).
const MAINTAIN_EVERY: Duration = Duration::from_secs(1);

/// When each stream appended to by `stream_append_many` was last trimmed by
/// age; streams not appended to for a while are forgotten.
#[derive(Default)]
struct Maintenance(std::sync::Mutex<std::collections::HashMap<String, Instant>>);

impl Maintenance {
    /// The streams among `streams` (each once) due for their age trim,
    /// marked as done now.
    fn due<'a>(&self, streams: impl Iterator<Item = &'a str>) -> Vec<String> {
        let now = Instant::now();
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.len() > 1024 {
            last.retain(|_, at| now.duration_since(*at) < MAINTAIN_EVERY);
        }
        let mut due = Vec::new();
        for stream in streams {
            let is_due = last.get(stream).is_none_or(|at| now.duration_since(*at) >= MAINTAIN_EVERY);
            if is_due {
                last.insert(stream.to_owned(), now);
                due.push(stream.to_owned());
            }
        }
        due
    }

    /// The trims of a pipeline that failed: due again.
    fn undo(&self, streams: &[String]) {
        let mut last = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for stream in streams {
            last.remove(stream);
        }
    }
}

/// The command connection, and how many times it was replaced.
struct Commands {
    client: Client,
    config: ConnectionManagerConfig,
    current: std::sync::Mutex<(u64, ConnectionManager)>,
}

impl Commands {
    fn new(client: Client, options: &RedisOptions) -> RedisResult<Commands> {
        // One attempt per connect: a caller waiting for a connection should
        // hear of an outage within its timeout, and the next caller tries
        // again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout))
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
        Ok(Commands { client, config, current: std::sync::Mutex::new((0, manager)) })
    }

    /// The connection to use now, and its generation for [`replace`](Self::replace).
    fn current(&self) -> (u64, ConnectionManager) {
        let current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (current.0, current.1.clone())
    }

    /// Replaces connection `generation` by a new one (opened on first
    /// use), unless another caller did already.
    fn replace(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.0 != generation {
            return;
        }
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(manager) => *current = (generation + 1, manager),
            Err(error) => tracing::warn!(%error, "redis command connection not replaced"),
        }
    }
}

fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

fn unavailable(error: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("redis: {error}"))
}

/// `PX` milliseconds for a time to live: at least 1, which Redis requires.
fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).clamp(1, i64::MAX as u64 / 2)
}

// === impl Broker ===

impl Broker for RedisBroker {
    fn stream_append<'a>(
        &'a self,
        stream: &'a str,
        data: Bytes,
        retention: Retention,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let invocation = stream::append_invocation(&self.append, stream, &data, retention, self.options.trim);
            let id =
                self.run("XADD", |mut conn| async move { invocation.invoke_async::<String>(&mut conn).await }).await?;
            stream::padded(&id)
        })
    }

    fn stream_append_many<'a>(
        &'a self,
        appends: &'a [(String, Bytes)],
        retention: Retention,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            if appends.is_empty() {
                return Ok(Vec::new());
            }
            let trim = self.options.trim;
            let due = self.maintenance.due(appends.iter().map(|(stream, _)| stream.as_str()));
            let mut pipeline = ::redis::pipe();
            for (stream, data) in appends {
                stream::xadd(&mut pipeline, stream, data, retention, trim);
            }
            if !due.is_empty() {
                // A Redis that restarted forgot the script; loading it again
                // (a hash and a lookup when it is known) costs less than a
                // second round trip, and the appends before it must not be
                // sent twice.
                pipeline.cmd("SCRIPT").arg("LOAD").arg(stream::MAINTAIN).ignore();
            }
            for stream in &due {
                let invocation = stream::maintain_invocation(&self.maintain, stream, retention, trim, MAINTAIN_EVERY);
                pipeline.invoke_script(&invocation).ignore();
            }
            let ids = self.run("XADD", |mut conn| async move { pipeline.query_async::<Vec<String>>(&mut conn).await });
            match ids.await {
                Ok(ids) => ids.iter().map(|id| stream::padded(id)).collect(),
                Err(error) => {
                    self.maintenance.undo(&due);
                    Err(error)
                }
            }
        })
    }

    fn stream_range_after<'a>(
        &'a self,
        stream: &'a str,
        after: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>>> {
        Box::pin(async move {
            let after: StreamId = after.parse()?;
            if count == 0 || after == StreamId::new(u64::MAX, u64::MAX) {
                return Ok(Vec::new());
            }
            let start = format!("({}", stream::redis_id(after));
            let reply = self.range("XRANGE", stream, start, "+".to_owned(), count).await?;
            stream::entries(reply)
        })
    }

    fn stream_last<'a>(&'a self, stream: &'a str, count: usize) -> BoxFuture<'a, Result<Vec<Entry>>> {
        Box::pin(async move {
            if count == 0 {
                return Ok(Vec::new());
            }
            let reply = self.range("XREVRANGE", stream, "+".to_owned(), "-".to_owned(), count).await?;
            let mut entries = stream::entries(reply)?;
            entries.reverse();
            Ok(entries)
        })
    }

    fn stream_get<'a>(&'a self, stream: &'a str, id: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        Box::pin(async move {
            let id = stream::redis_id(id.parse()?);
            let reply = self.range("XRANGE", stream, id.clone(), id, 1).await?;
            Ok(stream::entries(reply)?.into_iter().next())
        })
    }

    fn set_if_absent<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(key).arg(&value[..]).arg("NX");
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(ttl_millis(ttl));
            }
            let reply = self.run("SET", |mut conn| async move { cmd.query_async::<Value>(&mut conn).await }).await?;
            match reply {
                Value::Okay => Ok(true),
                Value::Nil => Ok(false),
                other => Err(unavailable(format_args!("unexpected SET reply {other:?}"))),
            }
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(key).arg(&value[..]);
            if let Some(ttl) = ttl {
                cmd.arg("PX").arg(ttl_millis(ttl));
            }
            self.run("SET", |mut conn| async move { cmd.query_async::<Value>(&mut conn).await }).await?;
            Ok(())
        })
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("GETDEL");
            cmd.arg(key);
            let value =
                self.run("GETDEL", |mut conn| async move { cmd.query_async::<Option<Vec<u8>>>(&mut conn).await });
            Ok(value.await?.map(Bytes::from))
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("GET");
            cmd.arg(key);
            let value = self.run("GET", |mut conn| async move { cmd.query_async::<Option<Vec<u8>>>(&mut conn).await });
            Ok(value.await?.map(Bytes::from))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("DEL");
            cmd.arg(key);
            let removed = self.run("DEL", |mut conn| async move { cmd.query_async::<u64>(&mut conn).await }).await?;
            Ok(removed > 0)
        })
    }

    fn publish<'a>(&'a self, channel: &'a str, message: Bytes) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("PUBLISH");
            cmd.arg(channel).arg(&message[..]);
            self.run("PUBLISH", |mut conn| async move { cmd.query_async::<usize>(&mut conn).await }).await
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.pubsub.subscribe(channel, self.options.command_timeout).await;
            metrics::histogram!(COMMAND_DURATION, "command" => "SUBSCRIBE").record(started.elapsed().as_secs_f64());
            if result.is_err() {
                metrics::counter!(ERRORS, "command" => "SUBSCRIBE").increment(1);
            }
            result
        })
    }

    fn lease_renew<'a>(&'a self, set: &'a str, member: &'a str, ttl: Duration) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let invocation = self.leases.renew(set, member, ttl_millis(ttl));
            self.run("ZADD", |mut conn| async move { invocation.invoke_async::<Value>(&mut conn).await }).await?;
            Ok(())
        })
    }

    fn slot_acquire<'a>(
        &'a self,
        key: &'a str,
        member: &'a str,
        holder: &'a str,
        holders: &'a str,
        max: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let invocation = self.leases.slot(key, holders, member, holder, max, ttl_millis(ttl));
            let taken =
                self.run("HSET", |mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await }).await?;
            Ok(taken == 1)
        })
    }

    fn slot_release<'a>(&'a self, key: &'a str, member: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("HDEL");
            cmd.arg(key).arg(member);
            self.run("HDEL", |mut conn| async move { cmd.query_async::<Value>(&mut conn).await }).await?;
            Ok(())
        })
    }

    fn lease_members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let invocation = self.leases.members(set);
            let reply = self
                .run("ZRANGEBYSCORE", |mut conn| async move { invocation.invoke_async::<Value>(&mut conn).await })
                .await?;
            lease::members(reply)
        })
    }

    fn lease_remove<'a>(&'a self, set: &'a str, member: &'a str) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut cmd = ::redis::cmd("ZREM");
            cmd.arg(set).arg(member);
            self.run("ZREM", |mut conn| async move { cmd.query_async::<u64>(&mut conn).await }).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_at_least_one_millisecond() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_micros(1500)), 1);
        assert_eq!(ttl_millis(Duration::from_secs(2)), 2000);
        assert_eq!(ttl_millis(Duration::MAX), i64::MAX as u64 / 2);
    }

    #[tokio::test]
    async fn a_bad_url_is_a_config_error() {
        let error = RedisBroker::connect("http://nope", RedisOptions::default()).await.err();
        assert!(matches!(error, Some(BrokerError::Config(_))), "{error:?}");
    }
}
