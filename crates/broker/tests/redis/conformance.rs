//! What every [`Broker`] does, written once and run against each
//! implementation. Where Redis and memory legitimately differ (how many
//! subscribers a publish reached: local receivers against Redis
//! connections), the assertion is the part both promise.

use std::time::Duration;

use bytes::Bytes;
use switchboard_broker::{Broker, BrokerError, Entry, Retention, StreamId};

const KEEP_ALL: Retention = Retention { max_len: 1000, max_age: None };
/// The age limit and time to live of the retention and expiry checks.
const AGE: Duration = Duration::from_millis(150);
const PAST_AGE: Duration = Duration::from_millis(250);

fn texts(entries: &[Entry]) -> Vec<&[u8]> {
    entries.iter().map(|e| &e.data[..]).collect()
}

/// Runs every check on `broker`, which must be empty. The checks use
/// different names, so they run at once.
pub(crate) async fn all(broker: &dyn Broker) {
    tokio::join!(streams(broker), retention(broker), keys(broker), pubsub(broker), leases(broker));
}

async fn streams(b: &dyn Broker) {
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(b.stream_append("s", Bytes::from(format!("m{i}")), KEEP_ALL).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids sort as strings in append order: {ids:?}");
    for id in &ids {
        let parsed: StreamId = id.parse().unwrap();
        assert_eq!(&parsed.to_string(), id, "ids are in the fixed-width form");
    }

    let after = b.stream_range_after("s", &ids[47], 10).await.unwrap();
    assert_eq!(texts(&after), vec![&b"m48"[..], b"m49"]);
    assert_eq!(after[0].id, ids[48]);
    let page = b.stream_range_after("s", &ids[0], 2).await.unwrap();
    assert_eq!(texts(&page), vec![&b"m1"[..], b"m2"]);
    assert_eq!(b.stream_range_after("s", "0-0", 100).await.unwrap().len(), 50);
    let unpadded = ids[47].parse::<StreamId>().map(|id| format!("{}-{}", id.ms, id.seq)).unwrap();
    assert_eq!(b.stream_range_after("s", &unpadded, 10).await.unwrap(), after, "unpadded ids are accepted");
    assert!(b.stream_range_after("s", &ids[49], 10).await.unwrap().is_empty());
    assert!(b.stream_range_after("s", &ids[0], 0).await.unwrap().is_empty());
    assert!(b.stream_range_after("nope", "0-0", 10).await.unwrap().is_empty());
    assert!(matches!(b.stream_range_after("s", "garbage", 10).await, Err(BrokerError::InvalidId(_))));

    assert_eq!(texts(&b.stream_last("s", 2).await.unwrap()), vec![&b"m48"[..], b"m49"]);
    assert_eq!(b.stream_last("s", 100).await.unwrap().len(), 50);
    assert!(b.stream_last("s", 0).await.unwrap().is_empty());
    assert!(b.stream_last("other", 3).await.unwrap().is_empty());

    assert_eq!(b.stream_get("s", &ids[7]).await.unwrap().map(|e| e.data), Some(Bytes::from("m7")));
    assert_eq!(b.stream_get("s", &unpadded).await.unwrap().map(|e| e.id), Some(ids[47].clone()));
    assert!(b.stream_get("t", &ids[7]).await.unwrap().is_none());
    assert!(b.stream_get("s", "1-1").await.unwrap().is_none());
    assert!(matches!(b.stream_get("s", "no-such-message").await, Err(BrokerError::InvalidId(_))));

    let binary = Bytes::from_static(&[0, 255, 13, 10, 0xc3]);
    let id = b.stream_append("bin", binary.clone(), KEEP_ALL).await.unwrap();
    let empty = b.stream_append("bin", Bytes::new(), KEEP_ALL).await.unwrap();
    assert_eq!(b.stream_get("bin", &id).await.unwrap().map(|e| e.data), Some(binary), "binary-safe");
    assert_eq!(b.stream_get("bin", &empty).await.unwrap().map(|e| e.data), Some(Bytes::new()));
}

async fn retention(b: &dyn Broker) {
    let count = Retention::new(3, None);
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(b.stream_append("c", Bytes::from(format!("{i}")), count).await.unwrap());
    }
    assert_eq!(texts(&b.stream_last("c", 10).await.unwrap()), vec![&b"7"[..], b"8", b"9"]);
    assert!(b.stream_get("c", &ids[0]).await.unwrap().is_none(), "trimmed by count");
    assert_eq!(b.stream_range_after("c", "0-0", 10).await.unwrap().len(), 3);
    b.stream_append("one", Bytes::from_static(b"a"), Retention::new(0, None)).await.unwrap();
    b.stream_append("one", Bytes::from_static(b"b"), Retention::new(0, None)).await.unwrap();
    assert_eq!(texts(&b.stream_last("one", 10).await.unwrap()), vec![&b"b"[..]], "at least one is kept");

    // Ages and sleeps leave room for a loaded machine: a read must follow its
    // append within AGE.
    let age = Retention::new(100, Some(AGE));
    b.stream_append("a", Bytes::from_static(b"old"), age).await.unwrap();
    tokio::time::sleep(PAST_AGE).await;
    b.stream_append("a", Bytes::from_static(b"new"), age).await.unwrap();
    assert_eq!(texts(&b.stream_last("a", 10).await.unwrap()), vec![&b"new"[..]], "trimmed by age");
    tokio::time::sleep(PAST_AGE).await;
    assert!(b.stream_last("a", 10).await.unwrap().is_empty(), "a quiet stream ages out entirely");

    // A later append without an age limit keeps the stream.
    b.stream_append("kept", Bytes::from_static(b"1"), age).await.unwrap();
    b.stream_append("kept", Bytes::from_static(b"2"), KEEP_ALL).await.unwrap();
    tokio::time::sleep(PAST_AGE).await;
    assert_eq!(b.stream_last("kept", 10).await.unwrap().len(), 2);
}

async fn keys(b: &dyn Broker) {
    assert!(b.set_if_absent("key:k", Bytes::from_static(b"1"), None).await.unwrap());
    assert!(!b.set_if_absent("key:k", Bytes::from_static(b"2"), None).await.unwrap());
    assert_eq!(b.get("key:k").await.unwrap(), Some(Bytes::from_static(b"1")));
    assert!(b.delete("key:k").await.unwrap());
    assert!(!b.delete("key:k").await.unwrap());
    assert_eq!(b.get("key:k").await.unwrap(), None);
    assert_eq!(b.get("key:never").await.unwrap(), None);

    let binary = Bytes::from_static(&[0, 1, 255]);
    assert!(b.set_if_absent("key:bin", binary.clone(), None).await.unwrap());
    assert_eq!(b.get("key:bin").await.unwrap(), Some(binary));

    let ttl = Some(AGE);
    assert!(b.set_if_absent("key:t", Bytes::from_static(b"1"), ttl).await.unwrap());
    assert!(!b.set_if_absent("key:t", Bytes::from_static(b"1"), ttl).await.unwrap());
    assert_eq!(b.get("key:t").await.unwrap(), Some(Bytes::from_static(b"1")));
    tokio::time::sleep(PAST_AGE).await;
    assert_eq!(b.get("key:t").await.unwrap(), None);
    assert!(!b.delete("key:t").await.unwrap(), "an expired key is not deleted");
    assert!(b.set_if_absent("key:t", Bytes::from_static(b"1"), ttl).await.unwrap(), "expired keys are absent");
    assert!(b.set_if_absent("key:zero", Bytes::from_static(b"1"), Some(Duration::ZERO)).await.unwrap());
}

async fn pubsub(b: &dyn Broker) {
    assert_eq!(b.publish("ch", Bytes::from_static(b"nobody")).await.unwrap(), 0);
    let mut s1 = b.subscribe("ch").await.unwrap();
    let mut s2 = b.subscribe("ch").await.unwrap();
    let mut other = b.subscribe("other").await.unwrap();
    assert_eq!(s1.channel(), "ch");
    assert!(b.publish("ch", Bytes::from_static(b"hi")).await.unwrap() >= 1);
    assert_eq!(recv(&mut s1).await, Bytes::from_static(b"hi"));
    assert_eq!(recv(&mut s2).await, Bytes::from_static(b"hi"));
    let nothing = tokio::time::timeout(Duration::from_millis(50), other.recv()).await;
    assert!(nothing.is_err(), "other channels stay quiet");

    for i in 0..100 {
        b.publish("ch", Bytes::from(format!("{i}"))).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(recv(&mut s1).await, Bytes::from(format!("{i}")), "in publish order");
    }
    let binary = Bytes::from_static(&[0, 255, 10]);
    b.publish("other", binary.clone()).await.unwrap();
    assert_eq!(recv(&mut other).await, binary);

    drop((s1, s2));
    // Redis learns of it asynchronously: poll, boundedly.
    let mut reached = usize::MAX;
    for _ in 0..100 {
        reached = b.publish("ch", Bytes::from_static(b"gone")).await.unwrap();
        if reached == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reached, 0, "nobody is subscribed once every subscription is dropped");
    assert!(b.publish("other", Bytes::from_static(b"still")).await.unwrap() >= 1);

    // Subscribing again after the last one left works.
    let mut again = b.subscribe("ch").await.unwrap();
    b.publish("ch", Bytes::from_static(b"back")).await.unwrap();
    assert_eq!(recv(&mut again).await, Bytes::from_static(b"back"));
}

async fn leases(b: &dyn Broker) {
    let long = Duration::from_secs(30);
    assert!(b.lease_members("lease:set").await.unwrap().is_empty(), "an unknown set has no members");
    b.lease_renew("lease:set", "b|10.0.0.2:50051", long).await.unwrap();
    b.lease_renew("lease:set", "a|10.0.0.1:50051", long).await.unwrap();
    b.lease_renew("lease:set", "a|10.0.0.1:50051", long).await.unwrap();
    b.lease_renew("lease:other", "z|elsewhere", long).await.unwrap();
    assert_eq!(
        b.lease_members("lease:set").await.unwrap(),
        vec!["a|10.0.0.1:50051", "b|10.0.0.2:50051"],
        "sorted, once"
    );
    assert_eq!(b.lease_members("lease:other").await.unwrap(), vec!["z|elsewhere"], "sets are apart");

    b.lease_renew("lease:set", "short", AGE).await.unwrap();
    assert!(b.lease_members("lease:set").await.unwrap().contains(&"short".to_owned()));
    tokio::time::sleep(PAST_AGE).await;
    assert!(!b.lease_members("lease:set").await.unwrap().contains(&"short".to_owned()), "an ended lease is gone");
    b.lease_renew("lease:set", "short", long).await.unwrap();
    assert!(b.lease_members("lease:set").await.unwrap().contains(&"short".to_owned()), "renewed after it ended");

    b.lease_renew("lease:set", "renewed", AGE).await.unwrap();
    b.lease_renew("lease:set", "renewed", long).await.unwrap();
    tokio::time::sleep(PAST_AGE).await;
    assert!(b.lease_members("lease:set").await.unwrap().contains(&"renewed".to_owned()), "a renewal extends");

    b.lease_remove("lease:set", "a|10.0.0.1:50051").await.unwrap();
    b.lease_remove("lease:set", "never-there").await.unwrap();
    b.lease_remove("lease:nothing", "x").await.unwrap();
    assert_eq!(b.lease_members("lease:set").await.unwrap(), vec!["b|10.0.0.2:50051", "renewed", "short"]);
    b.lease_renew("lease:zero", "m", Duration::ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(b.lease_members("lease:zero").await.unwrap().is_empty(), "a zero ttl ends at once");
}

/// The next message, within a bound.
pub(crate) async fn recv(subscription: &mut switchboard_broker::Subscription) -> Bytes {
    match tokio::time::timeout(Duration::from_secs(2), subscription.recv()).await {
        Ok(Ok(message)) => message,
        Ok(Err(error)) => panic!("subscription to {} failed: {error}", subscription.channel()),
        Err(_) => panic!("nothing on {} within 2 s", subscription.channel()),
    }
}
