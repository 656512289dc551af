//! Leases: routers see each other, a crashed one and a gateway whose lease
//! ended leave the views.

use std::sync::Arc;
use std::time::Duration;

use switchboard_broker::Broker;
use switchboard_router::membership::GATEWAYS;
use switchboard_router::ownership::room_key;
use switchboard_router::{LiveSet, Member, Membership, RouterConfig};
use switchboard_testkit::RedisServer;

use crate::support::{NSP, eventually, fast, fast_leases, id, live_router, memory, redis, until};

/// Real lease timings (1.5 s lease, 500 ms renewal, 250 ms poll).
async fn routers_see_each_other_and_a_dead_one_is_gone_within_2s(brokers: [Arc<dyn Broker>; 3]) {
    let [for_a, for_b, for_c] = brokers;
    let (a, run_a) = live_router("a", for_a, RouterConfig::default()).await;
    let (b, run_b) = live_router("b", for_b, RouterConfig::default()).await;
    let both = |live: &LiveSet| live.contains("a") && live.contains("b");
    let mut seen_by_a = a.live_routers();
    until("a sees b", Duration::from_secs(1), &mut seen_by_a, both).await;
    until("b sees a", Duration::from_secs(1), &mut b.live_routers(), both).await;
    let address = seen_by_a.borrow().get("b").map(|member| member.address.clone());
    assert_eq!(address.as_deref(), Some("b.internal:50051"));

    run_b.kill();
    let crash = until("b's lease ends", Duration::from_secs(2), &mut seen_by_a, |live| !live.contains("b")).await;
    assert_eq!(a.owner(&room_key(NSP, "anything")), Some(id("a")), "a owns every room now");

    let (_c, run_c) = live_router("c", for_c, RouterConfig::default()).await;
    until("a sees c", Duration::from_secs(1), &mut seen_by_a, |live| live.contains("c")).await;
    run_c.stop().await.unwrap();
    let exit = until("c left", Duration::from_millis(600), &mut seen_by_a, |live| !live.contains("c")).await;
    run_a.stop().await.unwrap();
    println!("a crashed router left the view after {crash:?}, a cleanly stopped one after {exit:?}");
}

#[tokio::test]
async fn memory_routers_see_each_other_and_a_dead_one_is_gone_within_2s() {
    let broker = memory();
    routers_see_each_other_and_a_dead_one_is_gone_within_2s([broker.clone(), broker.clone(), broker]).await;
}

#[tokio::test]
async fn redis_routers_see_each_other_and_a_dead_one_is_gone_within_2s() {
    let server = RedisServer::start();
    let brokers = [redis(&server).await, redis(&server).await, redis(&server).await];
    routers_see_each_other_and_a_dead_one_is_gone_within_2s(brokers).await;
}

async fn a_gateway_whose_lease_ends_is_forgotten(broker: Arc<dyn Broker>) {
    let (router, running) = live_router("r", broker.clone(), fast()).await;
    let gateway = Arc::new(Membership::register(broker, GATEWAYS, Member::new(id("G"), "g:8080"), fast_leases()));
    let gateway_task = tokio::spawn({
        let gateway = gateway.clone();
        async move { gateway.run(std::future::pending()).await }
    });
    until("the router sees G", Duration::from_secs(1), &mut router.live_gateways(), |live| live.contains("G")).await;
    router.membership(&id("G"), NSP, "general", true);
    router.presence(&id("G"), NSP, "u1", true);
    router.membership(&id("H"), NSP, "general", true);

    gateway_task.abort();
    eventually("G is forgotten", Duration::from_secs(2), || async {
        (router.gateways_of(NSP, "general") == vec![id("H")]).then_some(())
    })
    .await;
    assert!(router.online_users(NSP).is_empty(), "G's user went offline with it");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn memory_a_gateway_whose_lease_ends_is_forgotten() {
    a_gateway_whose_lease_ends_is_forgotten(memory()).await;
}

#[tokio::test]
async fn redis_a_gateway_whose_lease_ends_is_forgotten() {
    let server = RedisServer::start();
    a_gateway_whose_lease_ends_is_forgotten(redis(&server).await).await;
}
