//! Sessions: Hello and Welcome, deliveries only to gateways with members,
//! numbering in arrival order, ownership, resync, shutdown.

use std::collections::HashMap;

use serde_json::json;
use switchboard_proto::REVISION;
use switchboard_proto::v1::gateway_message::Message as FromGateway;
use switchboard_proto::v1::{self, RefusalCode};
use switchboard_testkit::RedisServer;

use crate::support::{
    NSP, QUIET, Session, WAIT, batches_of, channel_of, next_batch_from, publish, redis, room_of, two_routers,
};

#[tokio::test]
async fn publishes_reach_only_gateways_with_members_and_only_the_owner_takes_them() {
    let server = RedisServer::start();
    let (a, b) = two_routers(&server).await;
    let observer = redis(&server).await;
    let room = room_of(&a, "general");
    let mut on_g1 = channel_of(&*observer, "G1").await;
    let mut on_g2 = channel_of(&*observer, "G2").await;
    let mut g1 = Session::open(&a, "G1").await;
    assert_eq!(g1.welcome, v1::Welcome { router_id: "a".to_owned(), revision: REVISION });
    let mut g2 = Session::open(&a, "G2").await;

    // Membership then Publish on one stream: the publish sees it.
    g1.membership(&room, true).await;
    let first = publish(1, &[&room], "message", &[json!({"n": 1})]);
    g1.publish(first.clone()).await;
    let published = g1.published().await;
    assert_eq!((published.id, published.gateways, published.offsets.len()), (1, 1, 1));
    let batch = next_batch_from(&mut on_g1, WAIT).await.expect("G1 gets the delivery");
    let expected = v1::Delivery {
        nsp: NSP.to_owned(),
        rooms: vec![room.clone()],
        except: vec!["sid-1".to_owned()],
        volatile: false,
        stamps: vec![v1::Stamp { seq: 1, offset: published.offsets[0].clone() }],
        packet: first.packet.clone(),
        store: false,
        id_field: String::new(),
    };
    assert_eq!(batch, v1::DeliveryBatch { router_id: "a".to_owned(), deliveries: vec![expected] });

    // From another gateway, which holds no member: only G1 gets it.
    g2.publish(publish(1, &[&room], "from G2", &[])).await;
    let second = g2.published().await;
    assert_eq!(second.gateways, 1);
    let delivered = next_batch_from(&mut on_g1, WAIT).await.expect("G1 gets it").deliveries;
    assert_eq!(delivered[0].stamps, vec![v1::Stamp { seq: 2, offset: second.offsets[0].clone() }], "consecutive");
    assert!(published.offsets[0] < second.offsets[0], "offsets are stream ids, in order");
    assert_eq!(next_batch_from(&mut on_g2, QUIET).await, None, "G2 holds no member");

    // Volatile without id: delivered, numbered, never answered.
    let volatile = v1::Publish { id: 0, volatile: true, ..publish(0, &[&room], "typing", &[]) };
    g1.publish(volatile).await;
    g1.publish(publish(2, &[&room], "after typing", &[])).await;
    assert_eq!(g1.published().await.id, 2, "the volatile publish got no answer");
    let batches = batches_of(&mut on_g1, 2).await;
    let stamps: Vec<&v1::Stamp> = batches.iter().flatten().map(|delivery| &delivery.stamps[0]).collect();
    assert_eq!((stamps[0].seq, stamps[0].offset.as_str(), stamps[1].seq), (3, "", 4), "volatile: numbered, no offset");

    // Rooms of the other router, alone or with one of a's: NOT_OWNER.
    let theirs = room_of(&b, "other");
    g1.publish(publish(3, &[&theirs], "misrouted", &[])).await;
    g1.publish(publish(4, &[&room, &theirs], "split it", &[])).await;
    for id in [3, 4] {
        let refused = g1.refused().await;
        assert_eq!((refused.id, refused.code()), (id, RefusalCode::NotOwner), "{}", refused.reason);
    }
    let mut at_b = Session::open(&b, "G1").await;
    at_b.publish(publish(1, &[&theirs], "to the owner", &[])).await;
    assert_eq!(at_b.published().await.gateways, 0, "nobody holds that room");

    // The last member leaves: nothing more for G1.
    g1.membership(&room, false).await;
    g1.publish(publish(5, &[&room], "nobody", &[])).await;
    let nobody = g1.published().await;
    assert_eq!((nobody.gateways, nobody.offsets.len()), (0, 1), "appended all the same");
    assert_eq!(next_batch_from(&mut on_g1, QUIET).await, None);

    // Shutdown ends the sessions, with UNAVAILABLE.
    a.stop().await;
    assert_eq!(g1.ended().await.map(|status| status.code()), Some(tonic::Code::Unavailable));
    b.stop().await;
}

/// A gateway awaits nothing between publishes: they are numbered in the
/// order they arrived, and their batches are awaited together (fewer
/// batches than publishes).
#[tokio::test]
async fn a_burst_on_one_session_keeps_its_order_and_shares_batches() {
    const BURST: u64 = 300;
    let server = RedisServer::start();
    let (a, b) = two_routers(&server).await;
    let observer = redis(&server).await;
    let (r1, r2) = (room_of(&a, "one"), room_of(&a, "two"));
    let mut on_g = channel_of(&*observer, "G").await;
    let mut g = Session::open(&a, "G").await;
    g.membership(&r1, true).await;
    g.membership(&r2, true).await;

    for id in 1..=BURST {
        let room = if id % 3 == 0 { &r2 } else { &r1 };
        g.publish(publish(id, &[room], &id.to_string(), &[])).await;
    }
    let mut offsets = HashMap::new();
    for _ in 0..BURST {
        let published = g.published().await;
        offsets.insert(published.id.to_string(), published.offsets[0].clone());
    }
    let batches = batches_of(&mut on_g, BURST as usize).await;
    let order: Vec<u64> = batches.iter().flatten().map(|d| d.packet.as_ref().unwrap().event.parse().unwrap()).collect();
    assert_eq!(order, (1..=BURST).collect::<Vec<_>>(), "delivered in the order published");
    let mut seqs: HashMap<&str, Vec<u64>> = HashMap::new();
    for delivery in batches.iter().flatten() {
        let event = &delivery.packet.as_ref().unwrap().event;
        assert_eq!(delivery.stamps[0].offset, offsets[event], "the offset its publisher was given");
        seqs.entry(delivery.rooms[0].as_str()).or_default().push(delivery.stamps[0].seq);
    }
    assert_eq!(seqs[r1.as_str()], (1..=BURST * 2 / 3).collect::<Vec<_>>());
    assert_eq!(seqs[r2.as_str()], (1..=BURST / 3).collect::<Vec<_>>());
    assert!(batches.len() * 2 < BURST as usize, "{} batches for {BURST} publishes", batches.len());
    println!("{BURST} publishes on one session in {} batches", batches.len());
    a.stop().await;
    b.stop().await;
}

/// Resync replaces what a gateway announced; a broken session keeps it.
#[tokio::test]
async fn resync_replaces_and_a_broken_session_keeps_the_holdings() {
    let server = RedisServer::start();
    let (a, b) = two_routers(&server).await;
    let observer = redis(&server).await;
    let (old, new) = (room_of(&a, "old"), room_of(&a, "new"));
    let mut on_g = channel_of(&*observer, "G").await;
    let mut g = Session::open(&a, "G").await;
    g.membership(&old, true).await;
    g.publish(publish(1, &[&old], "announced", &[])).await;
    assert_eq!(g.published().await.gateways, 1);
    drop(g);

    // Another session of G, after the first broke: the holdings stayed.
    let mut g = Session::open(&a, "G").await;
    g.publish(publish(1, &[&old], "kept", &[])).await;
    assert_eq!(g.published().await.gateways, 1, "a broken stream keeps what it announced");
    assert_eq!(batches_of(&mut on_g, 2).await.concat().len(), 2);

    let membership = |room: &str| v1::Membership { nsp: NSP.to_owned(), room: room.to_owned(), present: true };
    let part = v1::Resync { memberships: vec![membership(&new)], ..v1::Resync::default() };
    g.send(FromGateway::Resync(part)).await;
    g.send(FromGateway::Resync(v1::Resync { last: true, ..v1::Resync::default() })).await;
    g.publish(publish(2, &[&old], "old", &[])).await;
    g.publish(publish(3, &[&new], "new", &[])).await;
    let answers = [g.published().await, g.published().await];
    let gateways: HashMap<u64, u32> = answers.iter().map(|p| (p.id, p.gateways)).collect();
    assert_eq!(gateways, HashMap::from([(2, 0), (3, 1)]), "the resync replaced old by new");
    let delivered = next_batch_from(&mut on_g, WAIT).await.expect("new is delivered").deliveries;
    assert_eq!(delivered[0].rooms, vec![new.clone()]);
    assert_eq!(next_batch_from(&mut on_g, QUIET).await, None);

    // A session must start with Hello.
    let mut client = a.client().await;
    let (out, messages) = tokio::sync::mpsc::channel(1);
    out.send(v1::GatewayMessage { message: Some(FromGateway::Membership(membership(&new))) }).await.unwrap();
    let mut stream =
        client.session(tokio_stream::wrappers::ReceiverStream::new(messages)).await.expect("opens").into_inner();
    let status = tokio::time::timeout(WAIT, stream.message()).await.expect("answered").expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    drop(out);
    a.stop().await;
    b.stop().await;
}
