//! Fan-out: deliveries only to gateways with members, batching and order
//! under a burst, only the owner publishes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_broker::Broker;
use switchboard_proto::{decode_entry, v1};
use switchboard_router::ownership::room_key;
use switchboard_router::{Publish, RouterError, gateway_channel};
use switchboard_testkit::RedisServer;
use tokio::task::JoinSet;

use crate::support::{
    NSP, QUIET, batches_of, fast, id, live_router, memory, next_batch, next_batch_from, packet, redis, text, to_rooms,
    until,
};

async fn deliveries_reach_only_gateways_with_members(broker: Arc<dyn Broker>) {
    let (router, running) = live_router("r", broker.clone(), fast()).await;
    let (a, b) = (id("A"), id("B"));
    let mut on_a = broker.subscribe(&gateway_channel(&a)).await.unwrap();
    let mut on_b = broker.subscribe(&gateway_channel(&b)).await.unwrap();
    router.membership(&a, NSP, "general", true);
    router.membership(&b, NSP, "random", true);

    let published = router.publish(to_rooms(&["general"], "hello")).await.unwrap();
    assert_eq!(published.gateways, 1);
    let offset = published.offset().expect("stored").to_owned();
    let expected = v1::Delivery {
        nsp: NSP.to_owned(),
        rooms: vec!["general".to_owned()],
        except: vec!["sid-1".to_owned()],
        volatile: false,
        store: true,
        stamps: vec![v1::Stamp { seq: 1, offset: offset.clone() }],
        packet: Some(packet("hello")),
        id_field: String::new(),
    };
    let batch = next_batch_from(&mut on_a, Duration::from_secs(2)).await;
    assert_eq!(batch, Some(v1::DeliveryBatch { router_id: "r".to_owned(), deliveries: vec![expected.clone()] }));
    assert_eq!(next_batch(&mut on_b, QUIET).await, None, "B holds no member of general");

    let entry = broker.stream_get("sb:room:/chat:general", &offset).await.unwrap().expect("appended");
    let stored = v1::Delivery { stamps: vec![], ..expected };
    assert_eq!(decode_entry(&entry.data), Ok(stored), "the stream keeps what recovery filters by");

    let unstored = router.publish(Publish { store: false, ..to_rooms(&["general"], "not history") }).await.unwrap();
    let offset = unstored.offset().expect("in the recovery log all the same").to_owned();
    let delivered = next_batch(&mut on_a, Duration::from_secs(2)).await.expect("delivered");
    assert_eq!((delivered[0].store, &delivered[0].stamps[..]), (false, &[v1::Stamp { seq: 2, offset }][..]));

    let everyone = Publish { rooms: vec![], volatile: true, store: false, ..to_rooms(&[], "to all") };
    let published = router.publish(everyone).await.unwrap();
    assert_eq!((published.gateways, published.offset()), (2, None), "volatile: never stored");
    for channel in [&mut on_a, &mut on_b] {
        let batch = next_batch(channel, Duration::from_secs(2)).await.expect("the namespace reaches both");
        assert_eq!(
            (batch.len(), batch[0].volatile, &batch[0].stamps[..]),
            (1, true, &[v1::Stamp { seq: 1, offset: String::new() }][..])
        );
    }

    let nobody = router.publish(to_rooms(&["empty"], "into the void")).await.unwrap();
    assert_eq!(nobody.gateways, 0);
    assert!(nobody.offset().is_some(), "appended all the same, for history and recovery");
    assert_eq!(next_batch(&mut on_a, QUIET).await, None);
    assert_eq!(next_batch(&mut on_b, Duration::ZERO).await, None);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn memory_deliveries_reach_only_gateways_with_members() {
    deliveries_reach_only_gateways_with_members(memory()).await;
}

#[tokio::test]
async fn redis_deliveries_reach_only_gateways_with_members() {
    let server = RedisServer::start();
    deliveries_reach_only_gateways_with_members(redis(&server).await).await;
}

/// Publishes spread over two rooms at once: fewer batches than
/// publishes, every delivery there once, each room in offset order.
async fn a_burst_is_batched_and_each_room_stays_in_order(broker: Arc<dyn Broker>) {
    const BURST: usize = 400;
    let (router, running) = live_router("r", broker.clone(), fast()).await;
    let a = id("A");
    let mut on_a = broker.subscribe(&gateway_channel(&a)).await.unwrap();
    router.membership(&a, NSP, "r1", true);
    router.membership(&a, NSP, "r2", true);

    let started = Instant::now();
    let mut publishes = JoinSet::new();
    for i in 0..BURST {
        let router = router.clone();
        let room = if i % 2 == 0 { "r1" } else { "r2" };
        publishes.spawn(async move {
            let published = router.publish(to_rooms(&[room], &format!("{room}/{i}"))).await;
            (format!("{room}/{i}"), published.map(|p| p.offset().map(str::to_owned)))
        });
    }
    let mut offsets = HashMap::new();
    while let Some(joined) = publishes.join_next().await {
        let (packet, offset) = joined.unwrap();
        offsets.insert(packet, offset.unwrap().expect("stored"));
    }
    let took = started.elapsed();

    let batches = batches_of(&mut on_a, BURST).await;
    assert!(batches.len() * 2 <= BURST, "{} batches for {BURST} publishes", batches.len());
    assert!(batches.iter().all(|batch| batch.len() <= 64), "at most 64 per batch");
    let mut per_room: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    for delivery in batches.iter().flatten() {
        let packet = text(delivery);
        let stamp = &delivery.stamps[0];
        assert_eq!(stamp.offset, offsets[packet], "the offset its publisher was given");
        per_room.entry(delivery.rooms[0].clone()).or_default().push((stamp.seq, offsets[packet].clone()));
    }
    for (room, stamps) in &per_room {
        let seqs: Vec<u64> = stamps.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=(BURST / 2) as u64).collect::<Vec<_>>(), "{room}: numbered and delivered in order");
        assert!(stamps.windows(2).all(|w| w[0].1 < w[1].1), "{room}: offsets increase");
    }
    println!("{BURST} publishes in {took:?}, delivered in {} batches", batches.len());
    running.stop().await.unwrap();
}

#[tokio::test]
async fn memory_a_burst_is_batched_and_each_room_stays_in_order() {
    a_burst_is_batched_and_each_room_stays_in_order(memory()).await;
}

#[tokio::test]
async fn redis_a_burst_is_batched_and_each_room_stays_in_order() {
    let server = RedisServer::start();
    a_burst_is_batched_and_each_room_stays_in_order(redis(&server).await).await;
}

async fn only_the_owner_publishes(brokers: [Arc<dyn Broker>; 2]) {
    let [for_a, for_b] = brokers;
    let (a, run_a) = live_router("a", for_a, fast()).await;
    let (b, run_b) = live_router("b", for_b, fast()).await;
    until("a sees b", Duration::from_secs(1), &mut a.live_routers(), |live| live.len() == 2).await;
    until("b sees a", Duration::from_secs(1), &mut b.live_routers(), |live| live.len() == 2).await;
    let room = (0..100).map(|i| format!("room-{i}")).find(|room| b.owns(&room_key(NSP, room))).expect("b owns some");
    assert_eq!(a.owner(&room_key(NSP, &room)), Some(id("b")), "both agree");
    let refused = a.publish(to_rooms(&[&room], "m")).await;
    assert_eq!(refused, Err(RouterError::NotOwner { key: room_key(NSP, &room), owner: Some(id("b")) }));
    b.publish(to_rooms(&[&room], "m")).await.unwrap();
    run_a.stop().await.unwrap();
    run_b.stop().await.unwrap();
}

#[tokio::test]
async fn memory_only_the_owner_publishes() {
    let broker = memory();
    only_the_owner_publishes([broker.clone(), broker]).await;
}

#[tokio::test]
async fn redis_only_the_owner_publishes() {
    let server = RedisServer::start();
    only_the_owner_publishes([redis(&server).await, redis(&server).await]).await;
}
