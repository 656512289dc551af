//! What the cluster tests share: their settings and publishes, brokers
//! (memory, a private Redis, one that can be switched off), a router
//! running on a task that can be stopped or killed, and bounded waits for
//! live sets and batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
pub(crate) use switchboard_testkit::eventually;

pub(crate) use crate::batches::{batches_of, next_batch, next_batch_from};

use bytes::Bytes;
use switchboard_broker::{
    BoxFuture, Broker, BrokerError, Entry, MemoryBroker, RedisBroker, RedisOptions, Retention, Subscription,
};
use switchboard_proto::v1;
use switchboard_router::{LeaseConfig, NodeId, Publish, Router, RouterConfig, RouterError};
use switchboard_testkit::RedisServer;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub(crate) const NSP: &str = "/chat";
/// The Redis command timeout of these tests, short to keep outages quick.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(400);
/// What a call may take beyond its bound (scheduling, a slow CI).
pub(crate) const SLACK: Duration = Duration::from_millis(300);
/// Nothing on a channel for this long counts as nothing sent.
pub(crate) const QUIET: Duration = Duration::from_millis(150);

pub(crate) fn id(text: &str) -> NodeId {
    NodeId::new(text).unwrap()
}

pub(crate) fn fast() -> RouterConfig {
    RouterConfig { lease: fast_leases(), ..RouterConfig::default() }
}

/// A packet whose event name is `text`, without arguments.
pub(crate) fn packet(text: &str) -> v1::Packet {
    v1::Packet { event: text.to_owned(), ..v1::Packet::default() }
}

/// The event name of a delivery's packet (see [`packet`]).
pub(crate) fn text(delivery: &v1::Delivery) -> &str {
    delivery.packet.as_ref().map_or("", |packet| packet.event.as_str())
}

pub(crate) fn to_rooms(rooms: &[&str], packet: &str) -> Publish {
    Publish {
        nsp: NSP.to_owned(),
        rooms: rooms.iter().map(|room| (*room).to_owned()).collect(),
        except: vec!["sid-1".to_owned()],
        volatile: false,
        store: true,
        packet: self::packet(packet),
        id_field: String::new(),
    }
}

pub(crate) fn memory() -> Arc<dyn Broker> {
    Arc::new(MemoryBroker::new())
}

pub(crate) async fn redis(server: &RedisServer) -> Arc<dyn Broker> {
    let options = RedisOptions {
        command_timeout: TIMEOUT,
        connect_timeout: TIMEOUT,
        reconnect_delay: Duration::from_millis(20),
        reconnect_delay_max: Duration::from_millis(200),
        pubsub_ping_interval: Duration::from_millis(200),
        ..RedisOptions::default()
    };
    let broker = RedisBroker::connect(&server.url(), options).await.expect("a valid url");
    broker.ping().await.expect("the test Redis answers");
    Arc::new(broker)
}

/// A running router `id` that sees itself live.
pub(crate) async fn live_router(id_text: &str, broker: Arc<dyn Broker>, config: RouterConfig) -> (Router, Running) {
    let router = Router::new(id(id_text), format!("{id_text}.internal:50051"), broker, config);
    let running = Running::start(&router);
    until("the router sees itself", Duration::from_secs(2), &mut router.live_routers(), |live| live.contains(id_text))
        .await;
    (router, running)
}

/// Short leases for the tests that are not about their timing.
pub(crate) fn fast_leases() -> LeaseConfig {
    LeaseConfig {
        ttl: Duration::from_millis(600),
        renew_every: Duration::from_millis(100),
        poll_every: Duration::from_millis(50),
    }
}

/// A router running on its own task.
pub(crate) struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RouterError>>,
}

impl Running {
    pub(crate) fn start(router: &Router) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let router = router.clone();
        let task = tokio::spawn(async move {
            router
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        Running { stop, task }
    }

    /// A clean exit: the lease is removed.
    pub(crate) async fn stop(self) -> Result<(), RouterError> {
        let _ = self.stop.send(());
        self.task.await.expect("the router task does not panic")
    }

    /// A crash: the task is gone, its lease stays until it ends.
    pub(crate) fn kill(self) {
        self.task.abort();
    }
}

/// Waits until `live` satisfies `ok`, at most `within`; how long it took.
pub(crate) async fn until<T>(
    what: &str,
    within: Duration,
    live: &mut watch::Receiver<T>,
    ok: impl FnMut(&T) -> bool,
) -> Duration {
    let started = Instant::now();
    match tokio::time::timeout(within, live.wait_for(ok)).await {
        Ok(Ok(_)) => started.elapsed(),
        Ok(Err(_)) => panic!("{what}: the live set is gone"),
        Err(_) => panic!("{what}: not within {within:?}"),
    }
}

/// A broker that fails every call while switched off, as a Redis outage
/// does, while keeping what the inner broker holds.
pub(crate) struct Switch {
    inner: Arc<dyn Broker>,
    down: AtomicBool,
}

impl Switch {
    pub(crate) fn new(inner: Arc<dyn Broker>) -> Arc<Switch> {
        Arc::new(Switch { inner, down: AtomicBool::new(false) })
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn gate<'a, T: Send + 'a>(
        &'a self,
        call: impl FnOnce() -> BoxFuture<'a, Result<T, BrokerError>>,
    ) -> BoxFuture<'a, Result<T, BrokerError>> {
        if self.down.load(Ordering::SeqCst) {
            Box::pin(async { Err(BrokerError::Unavailable("switched off".to_owned())) })
        } else {
            call()
        }
    }
}

impl Broker for Switch {
    fn stream_append<'a>(
        &'a self,
        stream: &'a str,
        data: Bytes,
        retention: Retention,
    ) -> BoxFuture<'a, Result<String, BrokerError>> {
        self.gate(move || self.inner.stream_append(stream, data, retention))
    }

    fn stream_range_after<'a>(
        &'a self,
        stream: &'a str,
        after: &'a str,
        count: usize,
    ) -> BoxFuture<'a, Result<Vec<Entry>, BrokerError>> {
        self.gate(move || self.inner.stream_range_after(stream, after, count))
    }

    fn stream_last<'a>(&'a self, stream: &'a str, count: usize) -> BoxFuture<'a, Result<Vec<Entry>, BrokerError>> {
        self.gate(move || self.inner.stream_last(stream, count))
    }

    fn stream_get<'a>(&'a self, stream: &'a str, id: &'a str) -> BoxFuture<'a, Result<Option<Entry>, BrokerError>> {
        self.gate(move || self.inner.stream_get(stream, id))
    }

    fn set_if_absent<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        self.gate(move || self.inner.set_if_absent(key, value, ttl))
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.gate(move || self.inner.set(key, value, ttl))
    }

    fn take<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BrokerError>> {
        self.gate(move || self.inner.take(key))
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BrokerError>> {
        self.gate(move || self.inner.get(key))
    }

    fn slot_acquire<'a>(
        &'a self,
        key: &'a str,
        member: &'a str,
        holder: &'a str,
        holders: &'a str,
        max: usize,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, BrokerError>> {
        self.gate(move || self.inner.slot_acquire(key, member, holder, holders, max, ttl))
    }

    fn slot_release<'a>(&'a self, key: &'a str, member: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.gate(move || self.inner.slot_release(key, member))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, BrokerError>> {
        self.gate(move || self.inner.delete(key))
    }

    fn publish<'a>(&'a self, channel: &'a str, message: Bytes) -> BoxFuture<'a, Result<usize, BrokerError>> {
        self.gate(move || self.inner.publish(channel, message))
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<Subscription, BrokerError>> {
        self.gate(move || self.inner.subscribe(channel))
    }

    fn lease_renew<'a>(
        &'a self,
        set: &'a str,
        member: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.gate(move || self.inner.lease_renew(set, member, ttl))
    }

    fn lease_members<'a>(&'a self, set: &'a str) -> BoxFuture<'a, Result<Vec<String>, BrokerError>> {
        self.gate(move || self.inner.lease_members(set))
    }

    fn lease_remove<'a>(&'a self, set: &'a str, member: &'a str) -> BoxFuture<'a, Result<(), BrokerError>> {
        self.gate(move || self.inner.lease_remove(set, member))
    }
}
