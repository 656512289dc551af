//! Outages: the broker switched off, lost leases, Redis stopped and
//! frozen. Publishes fail in time, views hold, everything heals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_router::membership::{GATEWAYS, ROUTERS};
use switchboard_router::ownership::room_key;
use switchboard_router::{Member, Membership, Publish, RouterError, gateway_channel};
use switchboard_testkit::RedisServer;
use tokio::task::JoinSet;

use crate::support::{
    NSP, SLACK, Switch, TIMEOUT, eventually, fast, fast_leases, id, live_router, memory, next_batch, redis, text,
    to_rooms, until,
};

/// Leases lapse during the outage and come back after it; the view holds
/// through both, so no room changes owner.
#[tokio::test]
async fn an_outage_keeps_the_view_and_publishes_fail_until_it_heals() {
    let switch = Switch::new(memory());
    let (a, run_a) = live_router("a", switch.clone(), fast()).await;
    let (_b, run_b) = live_router("b", switch.clone(), fast()).await;
    let mut view = a.live_routers();
    until("a sees b", Duration::from_secs(1), &mut view, |live| live.len() == 2).await;
    view.borrow_and_update();
    let room = (0..100).map(|i| format!("room-{i}")).find(|room| a.owns(&room_key(NSP, room))).expect("a owns some");

    switch.set_down(true);
    assert!(matches!(a.publish(to_rooms(&[&room], "m")).await, Err(RouterError::Unavailable(_))));
    tokio::time::sleep(fast_leases().ttl * 2).await;
    switch.set_down(false);
    eventually("publishes work again", Duration::from_secs(2), || async {
        a.publish(to_rooms(&[&room], "m")).await.ok()
    })
    .await;
    tokio::time::sleep(fast_leases().ttl * 2).await;
    assert!(!view.has_changed().unwrap(), "the view never changed: {:?}", *view.borrow());
    run_a.stop().await.unwrap();
    run_b.stop().await.unwrap();
}

/// What a Redis restart between two reads looks like: epochs and leases
/// gone, then renewed. Nobody leaves any view, no gateway is forgotten.
#[tokio::test]
async fn lost_leases_hold_the_view_until_they_are_renewed() {
    let broker = memory();
    let (a, run_a) = live_router("a", broker.clone(), fast()).await;
    let (_b, run_b) = live_router("b", broker.clone(), fast()).await;
    let gateway = Arc::new(Membership::register(broker.clone(), GATEWAYS, Member::new(id("G"), "g"), fast_leases()));
    let gateway_task = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.run(std::future::pending()).await }
    });
    let mut view = a.live_routers();
    until("a sees b", Duration::from_secs(1), &mut view, |live| live.len() == 2).await;
    until("a sees G", Duration::from_secs(1), &mut a.live_gateways(), |live| live.contains("G")).await;
    a.membership(&id("G"), NSP, "general", true);
    view.borrow_and_update();

    // Epochs first: a read in between then sees a new epoch with the old leases.
    for key in ["sb:routers:epoch", "sb:gateways:epoch"] {
        assert!(broker.delete(key).await.unwrap(), "{key} exists");
    }
    for (set, entry) in [(ROUTERS, "a|a.internal:50051"), (ROUTERS, "b|b.internal:50051"), (GATEWAYS, "G|g")] {
        broker.lease_remove(set, entry).await.unwrap();
    }
    tokio::time::sleep(fast_leases().ttl * 2).await;
    assert!(!view.has_changed().unwrap(), "the view held: {:?}", *view.borrow());
    assert_eq!(a.gateways_of(NSP, "general"), vec![id("G")]);
    gateway_task.abort();
    run_a.stop().await.unwrap();
    run_b.stop().await.unwrap();
}

#[tokio::test]
async fn redis_stopped_is_unavailable_within_the_timeout_and_heals_on_restart() {
    let mut server = RedisServer::start();
    let broker = redis(&server).await;
    let (router, running) = live_router("r", broker.clone(), fast()).await;
    let (a, g) = (id("A"), id("G"));
    let gateway = Arc::new(Membership::register(broker.clone(), GATEWAYS, Member::new(g.clone(), ""), fast_leases()));
    let gateway_task = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.run(std::future::pending()).await }
    });
    until("the router sees G", Duration::from_secs(1), &mut router.live_gateways(), |live| live.contains("G")).await;
    let mut on_a = broker.subscribe(&gateway_channel(&a)).await.unwrap();
    router.membership(&a, NSP, "general", true);
    router.membership(&g, NSP, "general", true);
    let mut view = router.live_routers();
    view.borrow_and_update();
    router.publish(to_rooms(&["general"], "before")).await.unwrap();
    assert!(next_batch(&mut on_a, Duration::from_secs(2)).await.is_some());

    server.stop();
    let stored = Instant::now();
    let outcome = router.publish(to_rooms(&["general"], "stored")).await;
    let stored = stored.elapsed();
    assert!(matches!(outcome, Err(RouterError::Unavailable(_))), "{outcome:?}");
    let volatile = Instant::now();
    let outcome = router.publish(Publish { volatile: true, store: false, ..to_rooms(&["general"], "volatile") }).await;
    let volatile = volatile.elapsed();
    assert!(matches!(outcome, Err(RouterError::Unavailable(_))), "a failed PUBLISH is no silent drop: {outcome:?}");
    assert!(stored < TIMEOUT + SLACK && volatile < TIMEOUT + SLACK, "took {stored:?} and {volatile:?}");

    let restarted = Instant::now();
    server.restart();
    // Published until one arrives: the subscription comes back on its own.
    let deadline = Instant::now() + Duration::from_secs(5);
    let delivered = loop {
        assert!(Instant::now() < deadline, "deliveries flow again: not within 5 s");
        if router.publish(to_rooms(&["general"], "after")).await.is_ok()
            && let Some(batch) = next_batch(&mut on_a, Duration::from_millis(100)).await
        {
            break batch;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(text(&delivered[0]), "after");
    let healed = restarted.elapsed();
    // The leases were lost with Redis and renewed: nobody left meanwhile.
    tokio::time::sleep(fast_leases().ttl * 2).await;
    assert!(!view.has_changed().unwrap(), "the router view held: {:?}", *view.borrow());
    assert_eq!(router.gateways_of(NSP, "general"), vec![a, g], "G's lease came back: not forgotten");
    gateway_task.abort();
    println!(
        "with Redis down: refused in {stored:?} (stored) and {volatile:?} (volatile); healed {healed:?} after restart"
    );
    running.stop().await.unwrap();
}

/// A Redis that stops answering (SIGSTOP): each publish fails within about
/// one command timeout, even a burst queued behind a hanging `PUBLISH`.
#[tokio::test]
async fn redis_frozen_fails_a_burst_within_about_one_timeout_and_heals_on_thaw() {
    let server = RedisServer::start();
    let broker = redis(&server).await;
    let (router, running) = live_router("r", broker.clone(), fast()).await;
    router.membership(&id("A"), NSP, "general", true);

    server.freeze();
    let started = Instant::now();
    let mut publishes = JoinSet::new();
    for i in 0..200 {
        let router = router.clone();
        // Volatile ones queue for the batcher; stored ones wait on XADD.
        let publish = Publish { volatile: i % 4 != 0, store: i % 4 == 0, ..to_rooms(&["general"], &format!("{i}")) };
        publishes.spawn(async move { router.publish(publish).await });
    }
    while let Some(joined) = publishes.join_next().await {
        let outcome = joined.unwrap();
        assert!(matches!(outcome, Err(RouterError::Unavailable(_))), "{outcome:?}");
    }
    let took = started.elapsed();
    assert!(took < TIMEOUT * 2 + SLACK, "200 publishes refused in {took:?}");

    server.thaw();
    eventually("publishes work again", Duration::from_secs(5), || async {
        router.publish(to_rooms(&["general"], "after")).await.ok()
    })
    .await;
    println!("with Redis frozen: 200 publishes refused in {took:?}");
    running.stop().await.unwrap();
}
