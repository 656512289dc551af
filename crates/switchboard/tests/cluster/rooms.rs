//! SPEC.md section 3 across gateways: what members of one room on three
//! gateways receive, and that a gateway without members of a room receives
//! nothing of it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{Event, Role, TestClient};

use crate::support::{self, join};

/// How long a test waits to be sure something does not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// Waits (at most 5 s) until `client` has `count` `room:message` events of
/// `room`, and returns them in arrival order.
async fn messages(client: &mut TestClient, room: &str, count: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        got.extend(
            client
                .collect("room:message", Duration::from_millis(50))
                .await
                .into_iter()
                .filter(|e| e.data()["roomId"] == room),
        );
    }
    assert_eq!(got.len(), count, "{}: room:message of {room} received: {:?}", client.id(), data(&got));
    got
}

fn data(events: &[Event]) -> Vec<&Value> {
    events.iter().map(Event::data).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_gateways() {
    let cluster = support::start(support::options()).await;
    let room = "lobby";
    let mut alice = cluster.connect(0, "/", "alice").await;
    let mut bob = cluster.connect(1, "/", "bob").await;
    let mut carol = cluster.connect(2, "/", "carol").await;
    let mut olga = cluster.connect(1, "/", "olga").await;

    // room:join: the others hear of it, the joiner gets the history.
    join(&alice, room).await;
    assert_eq!(alice.wait_for("room:history").await.data(), &json!([]));
    join(&bob, room).await;
    assert_eq!(bob.wait_for("room:history").await.data(), &json!([]));
    assert_eq!(alice.wait_for("room:user-joined").await.data(), &json!({"userId": "bob", "roomId": room}));
    join(&carol, room).await;
    assert_eq!(carol.wait_for("room:history").await.data(), &json!([]));
    for member in [&mut alice, &mut bob] {
        let joined = member.wait_for_where("room:user-joined", |e| e.data()["userId"] == "carol", support::ACK_TIMEOUT);
        assert_eq!(joined.await.data(), &json!({"userId": "carol", "roomId": room}));
    }
    bob.expect_none_where("room:user-joined", |e| e.data()["userId"] == "bob", QUIET).await;
    olga.expect_none("room:user-joined", Duration::ZERO).await;

    // room:message from gw1 reaches every member, the sender too, in order,
    // once each; not the outsider.
    const COUNT: u64 = 20;
    for n in 0..COUNT {
        let ack = alice.ack("room:message", json!({"roomId": room, "n": n})).await;
        assert_eq!(ack, json!({"ok": true}), "message {n}");
    }
    for member in [&mut alice, &mut bob, &mut carol] {
        let got = messages(member, room, COUNT as usize).await;
        let numbers: Vec<u64> = got.iter().filter_map(|e| e.data()["n"].as_u64()).collect();
        assert_eq!(numbers, (0..COUNT).collect::<Vec<_>>(), "{}: in order, once each", member.id());
        for event in &got {
            assert_eq!(event.data()["sender"], "alice", "the server sets the sender");
            assert!(event.data()["timestamp"].is_u64(), "a timestamp: {}", event.data());
        }
        member.expect_none("room:message", QUIET).await;
    }
    olga.expect_none("room:message", Duration::ZERO).await;

    // message:send from gw3: stored, message:new at every member with the id of the ack.
    let sent = carol.ack("message:send", json!({"roomId": room, "content": "stored"})).await;
    let id = sent["id"].as_str().unwrap_or_else(|| panic!("message:send ack {sent}")).to_owned();
    for member in [&mut alice, &mut bob, &mut carol] {
        let new = member.wait_for("message:new").await;
        assert_eq!(new.data()["id"], id.as_str());
        assert_eq!(new.data()["content"], "stored");
        assert_eq!(new.data()["sender"]["id"], "carol");
    }
    olga.expect_none("message:new", Duration::ZERO).await;

    // chat:message from gw2: everyone else in the namespace, on every gateway.
    assert_eq!(bob.ack("chat:message", json!({"id": "m1", "text": "hi all"})).await, json!({"ok": true}));
    assert_eq!(bob.wait_for("chat:message:received").await.data(), &json!({"id": "m1", "status": "delivered"}));
    for other in [&mut alice, &mut carol, &mut olga] {
        let got = other.wait_for("chat:message").await;
        assert_eq!((&got.data()["id"], &got.data()["sender"]), (&json!("m1"), &json!("bob")));
    }
    bob.expect_none("chat:message", QUIET).await;

    // room:leave on gw3: the others hear it; carol gets no more messages.
    assert_eq!(carol.ack("room:leave", json!(room)).await, json!({"ok": true}));
    for member in [&mut alice, &mut bob] {
        assert_eq!(member.wait_for("room:user-left").await.data(), &json!({"userId": "carol", "roomId": room}));
    }
    assert_eq!(bob.ack("room:message", json!({"roomId": room, "n": "after"})).await, json!({"ok": true}));
    for member in [&mut alice, &mut bob] {
        member.wait_for_where("room:message", |e| e.data()["n"] == "after", support::ACK_TIMEOUT).await;
    }
    carol.expect_none("room:message", QUIET).await;
    assert_eq!(carol.ack("room:message", json!({"roomId": room})).await, json!({"error": "not a member"}));

    // Presence counts users on every gateway.
    let everyone = ["alice", "bob", "carol", "olga"];
    let online = |e: &Event| everyone.iter().all(|u| e.data().as_array().is_some_and(|l| l.contains(&json!(u))));
    for client in [&mut alice, &mut bob, &mut carol, &mut olga] {
        client.wait_for_where("users:online", online, support::ACK_TIMEOUT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_deliveries_to_gateways_without_members() {
    const DELIVERIES: &str = "switchboard_gateway_cluster_deliveries_total";
    // Without namespace-wide presence, nothing is broadcast to the whole namespace.
    let cluster = support::start(support::options().gateway_env("SWITCHBOARD_PRESENCE_BROADCAST", "false")).await;
    let room = "gw1-only";
    let mut alice = cluster.connect(0, "/", "alice").await;
    let mut bob = cluster.connect(0, "/", "bob").await;
    // Sockets of the namespace on the other gateways, in no room.
    let mut carol = cluster.connect(1, "/", "carol").await;
    let mut dave = cluster.connect(2, "/", "dave").await;
    join(&alice, room).await;
    join(&bob, room).await;
    alice.wait_for("room:user-joined").await;

    let before: Vec<f64> = counters(&cluster, DELIVERIES).await;
    const COUNT: usize = 30;
    for n in 0..COUNT {
        assert_eq!(alice.ack("room:message", json!({"roomId": room, "n": n})).await, json!({"ok": true}));
    }
    messages(&mut alice, room, COUNT).await;
    messages(&mut bob, room, COUNT).await;
    let after: Vec<f64> = counters(&cluster, DELIVERIES).await;
    eprintln!("{DELIVERIES} per gateway: before {before:?}, after {after:?}");

    assert!(
        after[0] - before[0] >= COUNT as f64,
        "gateway 1 (the members' gateway) received {} deliveries for {COUNT} messages",
        after[0] - before[0]
    );
    assert_eq!(after[1], before[1], "gateway 2 has no member of {room}, yet received deliveries");
    assert_eq!(after[2], before[2], "gateway 3 has no member of {room}, yet received deliveries");
    carol.expect_none("room:message", Duration::ZERO).await;
    dave.expect_none("room:message", Duration::ZERO).await;
}

/// The value of counter `name` on every gateway, in index order.
async fn counters(cluster: &switchboard_testkit::Cluster, name: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for i in 0..cluster.count(Role::Gateway) {
        values.push(cluster.metrics(Role::Gateway, i).await.value(name));
    }
    values
}
