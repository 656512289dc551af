//! Redis outages: publishes refused UNAVAILABLE within a few seconds,
//! health NOT_SERVING, and everything working again once Redis is back.

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_proto::v1::router_message::Message as FromRouter;
use switchboard_proto::v1::{self, RefusalCode};
use switchboard_testkit::RedisServer;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{NSP, Session, TIMEOUT, WAIT, eventually, publish, room_of, two_routers};

/// Publishes until one is Published (ids from `next_id`), each answer
/// awaited; how many tries it took.
async fn until_published(session: &mut Session, room: &str, next_id: &mut u64) -> u64 {
    let started = *next_id;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "publishes succeed again: not within 10 s");
        *next_id += 1;
        let id = *next_id;
        session.publish(publish(id, &[room], "again", &[json!({})])).await;
        match session.next().await {
            FromRouter::Published(published) if published.id == id => return *next_id - started,
            FromRouter::Published(published) => panic!("an answer to {} instead of {id}", published.id),
            FromRouter::Refused(refused) => {
                assert_eq!((refused.id, refused.code()), (id, RefusalCode::Unavailable), "{}", refused.reason);
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_stopped_refuses_unavailable_and_heals_on_restart() {
    let mut server = RedisServer::start();
    let (a, b) = two_routers(&server).await;
    let room = room_of(&a, "general");
    let mut g = Session::open(&a, "G").await;
    g.membership(&room, true).await;
    eventually("SERVING", WAIT, || async { (a.health().await == ServingStatus::Serving as i32).then_some(()) }).await;
    g.publish(publish(1, &[&room], "before", &[])).await;
    g.published().await;

    server.stop();
    let stopped = Instant::now();
    g.publish(publish(2, &[&room], "during", &[])).await;
    let refused = g.refused().await;
    let took = stopped.elapsed();
    assert_eq!((refused.id, refused.code()), (2, RefusalCode::Unavailable), "{}", refused.reason);
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
    eventually("NOT_SERVING", WAIT, || async { (a.health().await == ServingStatus::NotServing as i32).then_some(()) })
        .await;
    let online = a.client().await.online_users(v1::OnlineUsersRequest { nsp: NSP.to_owned() }).await;
    assert_eq!(online.expect_err("no Redis").code(), tonic::Code::Unavailable);

    server.restart();
    let restarted = Instant::now();
    let mut next_id = 2;
    let tries = until_published(&mut g, &room, &mut next_id).await;
    eventually("SERVING", WAIT, || async { (a.health().await == ServingStatus::Serving as i32).then_some(()) }).await;
    println!("refused in {took:?}; publishing again {:?} after the restart ({tries} tries)", restarted.elapsed());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn redis_frozen_refuses_a_burst_within_about_one_timeout_and_heals_on_thaw() {
    const BURST: u64 = 50;
    let server = RedisServer::start();
    let (a, b) = two_routers(&server).await;
    let room = room_of(&a, "general");
    let mut g = Session::open(&a, "G").await;
    g.membership(&room, true).await;

    server.freeze();
    let frozen = Instant::now();
    for id in 1..=BURST {
        g.publish(publish(id, &[&room], "during", &[])).await;
    }
    for _ in 1..=BURST {
        let refused = g.refused().await;
        assert_eq!(refused.code(), RefusalCode::Unavailable, "{}", refused.reason);
    }
    let took = frozen.elapsed();
    // The first waits for its timeout; those queued behind it fail with it.
    assert!(took < TIMEOUT * 3 + Duration::from_millis(500), "{BURST} publishes refused in {took:?}");

    server.thaw();
    let mut next_id = BURST;
    until_published(&mut g, &room, &mut next_id).await;
    println!("{BURST} publishes refused in {took:?} with Redis frozen");
    a.stop().await;
    b.stop().await;
}
