//! The Redis broker against a private `redis-server` (testkit's
//! [`RedisServer`], never the system Redis): the trait's conformance suite,
//! run against the memory broker too; what only Redis does (approximate
//! trimming, several brokers on one server); and outages: Redis stopped,
//! frozen, down at start, or a peer that never answers, each bounded in time
//! and healed without a restart.

#[path = "redis/conformance.rs"]
mod conformance;
#[path = "redis/support.rs"]
mod support;

use std::future::Future;
use std::time::{Duration, Instant};
use switchboard_testkit::eventually;

use bytes::Bytes;
use conformance::recv;
use switchboard_broker::{Broker, BrokerError, MemoryBroker, RedisBroker, RedisOptions, Retention, Trim};
use switchboard_testkit::RedisServer;

/// The command timeout of these tests, short to keep outages quick.
const TIMEOUT: Duration = Duration::from_millis(400);
/// What an outage may take beyond the timeout (scheduling, a slow CI).
const SLACK: Duration = Duration::from_millis(300);
/// How long healing may take after Redis is back.
const HEAL: Duration = Duration::from_secs(5);

fn options() -> RedisOptions {
    RedisOptions {
        command_timeout: TIMEOUT,
        connect_timeout: TIMEOUT,
        trim: Trim::Exact,
        reconnect_delay: Duration::from_millis(20),
        reconnect_delay_max: Duration::from_millis(200),
        pubsub_ping_interval: Duration::from_millis(200),
        ..RedisOptions::default()
    }
}

async fn broker(redis: &RedisServer, options: RedisOptions) -> RedisBroker {
    let broker = RedisBroker::connect(&redis.url(), options).await.expect("a valid url");
    broker.ping().await.expect("the test Redis answers");
    broker
}

/// Asserts that `call` fails with `Unavailable` within the timeout.
async fn unavailable_in_time<T: std::fmt::Debug>(what: &str, call: impl Future<Output = Result<T, BrokerError>>) {
    let started = Instant::now();
    let outcome = call.await;
    let took = started.elapsed();
    assert!(matches!(outcome, Err(BrokerError::Unavailable(_))), "{what}: {outcome:?}");
    assert!(took < TIMEOUT + SLACK, "{what} took {took:?}");
}

/// Every method of the trait fails within the timeout (all at once, which
/// also shows one stuck call does not hold up the others).
async fn every_call_unavailable(b: &RedisBroker) {
    let keep = Retention::new(10, None);
    tokio::join!(
        unavailable_in_time("append", b.stream_append("s", Bytes::from_static(b"x"), keep)),
        unavailable_in_time("range", b.stream_range_after("s", "0-0", 10)),
        unavailable_in_time("last", b.stream_last("s", 10)),
        unavailable_in_time("get entry", b.stream_get("s", "1-0")),
        unavailable_in_time("set", b.set_if_absent("k", Bytes::from_static(b"v"), None)),
        unavailable_in_time("get", b.get("k")),
        unavailable_in_time("delete", b.delete("k")),
        unavailable_in_time("publish", b.publish("ch", Bytes::from_static(b"m"))),
        unavailable_in_time("subscribe", b.subscribe("fresh")),
        unavailable_in_time("lease renew", b.lease_renew("leases", "m", Duration::from_secs(1))),
        unavailable_in_time("lease members", b.lease_members("leases")),
        unavailable_in_time("lease remove", b.lease_remove("leases", "m")),
        unavailable_in_time("ping", b.ping()),
        unavailable_in_time("health", b.health()),
    );
}

// === conformance ===

#[tokio::test]
async fn memory_broker_conforms() {
    conformance::all(&MemoryBroker::new()).await;
}

#[tokio::test]
async fn redis_broker_conforms() {
    let redis = RedisServer::start();
    let b = broker(&redis, options()).await;
    conformance::all(&b).await;
    b.health().await.expect("healthy");
    assert_eq!(b.reconnects(), 0);
}

// === what only Redis does ===

#[tokio::test]
async fn approximate_trimming_keeps_at_least_what_is_asked_and_stays_bounded() {
    let redis = RedisServer::start();
    let b = broker(&redis, RedisOptions { trim: Trim::Approximate, ..options() }).await;
    let keep = Retention::new(10, None);
    for i in 0..1000 {
        b.stream_append("s", Bytes::from(format!("{i}")), keep).await.unwrap();
    }
    let kept = b.stream_range_after("s", "0-0", 10_000).await.unwrap();
    assert!((10..=250).contains(&kept.len()), "kept {}", kept.len());
    assert_eq!(kept.last().map(|e| &e.data[..]), Some(&b"999"[..]));
    let last = b.stream_last("s", 10).await.unwrap();
    assert_eq!(last.first().map(|e| &e.data[..]), Some(&b"990"[..]));
}

/// `stream_append_many`: one pipeline of plain `XADD`s, whose age trim and
/// expiry run at most once a second per stream.
#[tokio::test]
async fn appends_in_one_pipeline_keep_order_count_and_age() {
    const AGE: Duration = Duration::from_millis(300);
    /// How much later than an exact trim the age trim and expiry may come.
    const LAG: Duration = Duration::from_secs(1);
    let redis = RedisServer::start();
    let b = broker(&redis, options()).await;
    let retention = Retention::new(3, Some(AGE));
    let appends: Vec<(String, Bytes)> =
        (0..10).map(|i| (format!("many:{}", i % 2), Bytes::from(format!("{i}")))).collect();
    let ids = b.stream_append_many(&appends, retention).await.unwrap();
    assert_eq!(ids.len(), 10);
    for stream in 0..2 {
        let own: Vec<&String> = ids.iter().skip(stream).step_by(2).collect();
        assert!(own.windows(2).all(|pair| pair[0] < pair[1]), "ids in order: {own:?}");
    }
    let kept = b.stream_last("many:0", 10).await.unwrap();
    let kept: Vec<&[u8]> = kept.iter().map(|e| &e.data[..]).collect();
    assert_eq!(kept, vec![&b"4"[..], b"6", b"8"], "the count limit holds on every append");
    assert_eq!(b.stream_get("many:1", &ids[9]).await.unwrap().map(|e| e.data), Some(Bytes::from_static(b"9")));

    // Appends go on past the age: what is older is trimmed within a second.
    let retention = Retention::new(100, Some(AGE));
    let started = Instant::now();
    b.stream_append_many(&[("many:0".to_owned(), Bytes::from_static(b"old"))], retention).await.unwrap();
    let fresh = eventually("old entries trimmed by age", AGE + LAG * 2, || async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ids = b.stream_append_many(&[("many:0".to_owned(), Bytes::from_static(b"new"))], retention).await;
        let last = b.stream_range_after("many:0", "0-0", 100).await.unwrap();
        (ids.is_ok() && last.iter().all(|e| &e.data[..] == b"new")).then_some(last.len())
    })
    .await;
    assert!(started.elapsed() >= AGE, "trimmed before its age");
    assert!(fresh >= 1);

    // A quiet stream vanishes, neither before its newest entry's age nor
    // much after.
    let last = Instant::now();
    b.stream_append_many(&[("many:quiet".to_owned(), Bytes::from_static(b"q"))], retention).await.unwrap();
    tokio::time::sleep(AGE - Duration::from_millis(100)).await;
    assert_eq!(b.stream_last("many:quiet", 10).await.unwrap().len(), 1, "gone before its age");
    eventually("a quiet stream expires", AGE + LAG + SLACK, || async {
        b.stream_last("many:quiet", 10).await.unwrap().is_empty().then_some(())
    })
    .await;
    assert!(last.elapsed() >= AGE);
}

#[tokio::test]
async fn brokers_on_one_redis_share_streams_keys_and_channels() {
    let redis = RedisServer::start();
    let (a, b) = (broker(&redis, options()).await, broker(&redis, options()).await);
    let mut on_b = b.subscribe("deliveries").await.unwrap();
    let mut on_a = a.subscribe("deliveries").await.unwrap();
    assert_eq!(a.publish("deliveries", Bytes::from_static(b"batch")).await.unwrap(), 2, "one per connection");
    assert_eq!(recv(&mut on_a).await, Bytes::from_static(b"batch"));
    assert_eq!(recv(&mut on_b).await, Bytes::from_static(b"batch"));

    assert!(a.set_if_absent("lease", Bytes::from_static(b"a"), Some(Duration::from_secs(5))).await.unwrap());
    assert!(!b.set_if_absent("lease", Bytes::from_static(b"b"), Some(Duration::from_secs(5))).await.unwrap());
    let id = a.stream_append("room", Bytes::from_static(b"m"), Retention::new(10, None)).await.unwrap();
    assert_eq!(b.stream_get("room", &id).await.unwrap().map(|e| e.data), Some(Bytes::from_static(b"m")));
}

#[tokio::test]
async fn dropping_the_broker_closes_its_subscriptions() {
    let redis = RedisServer::start();
    let b = broker(&redis, options()).await;
    let mut subscription = b.subscribe("ch").await.unwrap();
    drop(b);
    let end = tokio::time::timeout(Duration::from_secs(2), subscription.recv()).await;
    assert_eq!(end.ok(), Some(Err(BrokerError::Closed)));
}

#[tokio::test]
async fn metrics_are_recorded_by_command() {
    let recorded = support::install();
    let redis = RedisServer::start();
    let b = broker(&redis, options()).await;
    b.get("k").await.unwrap();
    let _subscription = b.subscribe("ch").await.unwrap();
    let blackhole = support::Blackhole::start();
    let stuck = RedisBroker::connect(&blackhole.url(), options()).await.unwrap();
    unavailable_in_time("get", stuck.get("k")).await;
    let seen = recorded.names();
    for expected in [
        "switchboard_broker_redis_command_duration_seconds{command=GET}",
        "switchboard_broker_redis_command_duration_seconds{command=PING}",
        "switchboard_broker_redis_command_duration_seconds{command=SUBSCRIBE}",
        "switchboard_broker_redis_errors_total{command=GET}",
    ] {
        assert!(seen.iter().any(|name| name == expected), "{expected} missing from {seen:?}");
    }
}

// === outages ===

#[tokio::test]
async fn an_outage_is_unavailable_in_time_and_heals_with_subscriptions() {
    let mut redis = RedisServer::start();
    let b = broker(&redis, options()).await;
    let mut subscription = b.subscribe("deliveries").await.unwrap();
    b.publish("deliveries", Bytes::from_static(b"before")).await.unwrap();
    assert_eq!(recv(&mut subscription).await, Bytes::from_static(b"before"));

    redis.stop();
    every_call_unavailable(&b).await;
    eventually("pub/sub notices", HEAL, || async { (!b.pubsub_connected()).then_some(()) }).await;

    let started = Instant::now();
    redis.restart();
    let healed = eventually("commands heal", HEAL, || async { b.ping().await.ok() }).await;
    eventually("pub/sub heals", HEAL, || async { b.health().await.ok() }).await;
    // Published until one arrives: the resubscription may land after a publish.
    let deadline = Instant::now() + HEAL;
    let message = loop {
        assert!(Instant::now() < deadline, "the old subscription receives again: not within {HEAL:?}");
        if b.publish("deliveries", Bytes::from_static(b"after")).await.is_ok_and(|reached| reached > 0)
            && let Ok(Ok(message)) = tokio::time::timeout(Duration::from_millis(100), subscription.recv()).await
        {
            break message;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(message, Bytes::from_static(b"after"));
    println!("healed in {:?} (ping {healed:?})", started.elapsed());
    assert!(b.reconnects() >= 2, "commands and pub/sub both reconnected: {}", b.reconnects());

    let id = b.stream_append("s", Bytes::from_static(b"x"), Retention::new(10, None)).await.unwrap();
    assert_eq!(b.stream_get("s", &id).await.unwrap().map(|e| e.data), Some(Bytes::from_static(b"x")));
    let mut fresh = b.subscribe("fresh").await.unwrap();
    b.publish("fresh", Bytes::from_static(b"new")).await.unwrap();
    assert_eq!(recv(&mut fresh).await, Bytes::from_static(b"new"));
}

#[tokio::test]
async fn a_frozen_redis_is_unavailable_in_time_and_noticed_by_pubsub() {
    let redis = RedisServer::start();
    let b = broker(&redis, options()).await;
    let mut subscription = b.subscribe("deliveries").await.unwrap();
    redis.freeze();
    every_call_unavailable(&b).await;
    eventually("pub/sub pings time out", HEAL, || async { (!b.pubsub_connected()).then_some(()) }).await;
    redis.thaw();
    eventually("health", HEAL, || async { b.health().await.ok() }).await;
    // Nothing was published in the gap (Redis had no data lost either).
    b.publish("deliveries", Bytes::from_static(b"thawed")).await.unwrap();
    assert_eq!(recv(&mut subscription).await, Bytes::from_static(b"thawed"));
    assert!(b.reconnects() >= 2, "{}", b.reconnects());
}

#[tokio::test]
async fn a_broker_made_while_redis_is_down_heals_when_it_comes_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let b = RedisBroker::connect(&redis.url(), options()).await.expect("made while down");
    every_call_unavailable(&b).await;
    redis.restart();
    eventually("health", HEAL, || async { b.health().await.ok() }).await;
    assert!(b.set_if_absent("k", Bytes::from_static(b"v"), None).await.unwrap());
    let mut subscription = b.subscribe("ch").await.unwrap();
    assert_eq!(b.publish("ch", Bytes::from_static(b"m")).await.unwrap(), 1);
    assert_eq!(recv(&mut subscription).await, Bytes::from_static(b"m"));
}

#[tokio::test]
async fn a_redis_that_does_not_answer_never_hangs_a_call() {
    let blackhole = support::Blackhole::start();
    let b = RedisBroker::connect(&blackhole.url(), options()).await.unwrap();
    every_call_unavailable(&b).await;
    assert!(!b.pubsub_connected());
}
