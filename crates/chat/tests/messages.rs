//! Stored messages (`message:send`, history on join, `message:read`) and
//! presence (`users:online`), against a real listener.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::{TestClient, spawn_standalone};

const QUIET: Duration = Duration::from_millis(200);

async fn join(client: &TestClient, room: Value) {
    assert_eq!(client.ack("room:join", room).await, json!({"ok": true}));
}

async fn send(client: &TestClient, room: &str, content: &str) -> String {
    let ack = client.ack("message:send", json!({"roomId": room, "content": content})).await;
    ack["id"].as_str().unwrap_or_else(|| panic!("message:send ack {ack}")).to_owned()
}

fn contents(history: &Value) -> Vec<&str> {
    history.as_array().expect("a list").iter().map(|m| m["content"].as_str().expect("content")).collect()
}

#[tokio::test]
async fn message_send_stores_and_delivers_message_new_to_members() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect_as("/", "alice", "Alice", "user").await;
    let mut b = server.connect("/", "bob").await;
    let mut outsider = server.connect("/", "olga").await;
    join(&a, json!("lobby")).await;
    join(&b, json!("lobby")).await;

    let ack = a.ack("message:send", json!({"roomId": "lobby", "content": "hello"})).await;
    let id = ack["id"].as_str().expect("ack {id}").to_owned();
    assert_eq!(ack, json!({"id": id}));
    for member in [&mut a, &mut b] {
        let got = member.wait_for("message:new").await;
        let created = got.data()["createdAt"].as_u64().expect("createdAt is a number");
        assert_eq!(
            got.data(),
            &json!({"id": id, "roomId": "lobby", "sender": {"id": "alice", "name": "Alice"}, "content": "hello", "type": "text", "createdAt": created})
        );
    }
    outsider.expect_none("message:new", QUIET).await;

    let ack = b.ack("message:send", json!({"roomId": "lobby", "content": "cat.png", "type": "image"})).await;
    assert!(ack["id"].as_str().expect("id") > id.as_str(), "ids sort in order");
    assert_eq!(a.wait_for("message:new").await.data()["type"], "image");
}

#[tokio::test]
async fn message_send_refusals_store_nothing() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let intruder = server.connect("/", "ivan").await;
    join(&a, json!("lobby")).await;
    assert_eq!(
        intruder.ack("message:send", json!({"roomId": "lobby", "content": "spam"})).await,
        json!({"error": "not a member"})
    );
    for bad in [
        json!({"roomId": "lobby"}),
        json!({"content": "no room"}),
        json!({"roomId": "lobby", "content": ""}),
        json!({"roomId": "lobby", "content": 5}),
        json!({"roomId": "lobby", "content": "x", "type": 3}),
        json!("lobby"),
        json!(null),
        json!(["lobby", "x"]),
    ] {
        assert_eq!(a.ack("message:send", bad).await, json!({"error": "invalid payload"}));
    }
    let long = "x".repeat(64 * 1024 + 1);
    assert_eq!(
        a.ack("message:send", json!({"roomId": "lobby", "content": long})).await,
        json!({"error": "message too long"})
    );
    a.expect_none("message:new", QUIET).await;
    let later = server.connect("/", "lou").await;
    let mut later = later;
    join(&later, json!("lobby")).await;
    assert_eq!(later.wait_for("room:history").await.data(), &json!([]));
}

#[tokio::test]
async fn message_new_arrives_in_id_order() {
    let server = spawn_standalone(|_| {}).await;
    let a = server.connect("/", "alice").await;
    let mut b = server.connect("/", "bob").await;
    join(&a, json!("lobby")).await;
    join(&b, json!("lobby")).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(send(&a, "lobby", &format!("n{i}")).await);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let mut delivered = Vec::new();
    for _ in 0..20 {
        delivered.push(b.wait_for("message:new").await.data()["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(delivered, ids);
}

#[tokio::test]
async fn history_on_join_newest_first_n_oldest_first_and_since() {
    let server = spawn_standalone(|o| o.chat.history_on_join = 3).await;
    let a = server.connect_as("/", "alice", "Alice", "user").await;
    join(&a, json!("lobby")).await;
    let mut ids = Vec::new();
    for content in ["h1", "h2", "h3", "h4", "h5"] {
        ids.push(send(&a, "lobby", content).await);
    }

    let mut later = server.connect("/", "lou").await;
    join(&later, json!("lobby")).await;
    let history = later.wait_for("room:history").await;
    assert_eq!(contents(history.data()), vec!["h3", "h4", "h5"]);
    let first = &history.data()[0];
    assert_eq!(first["id"], ids[2].as_str());
    assert_eq!(first["roomId"], "lobby");
    assert_eq!(first["sender"], json!({"id": "alice", "name": "Alice"}));
    assert_eq!(first["type"], "text");
    assert!(first["createdAt"].is_u64());

    let mut since = server.connect("/", "sid").await;
    join(&since, json!({"roomId": "lobby", "since": ids[0]})).await;
    assert_eq!(contents(since.wait_for("room:history").await.data()), vec!["h2", "h3", "h4", "h5"], "all after since");
    join(&since, json!({"roomId": "lobby", "since": ids[4]})).await;
    assert_eq!(since.wait_for("room:history").await.data(), &json!([]));

    // Rooms and namespaces keep separate histories.
    let mut other_room = server.connect("/", "oli").await;
    join(&other_room, json!("elsewhere")).await;
    assert_eq!(other_room.wait_for("room:history").await.data(), &json!([]));
    let mut other_nsp = server.connect("/chat", "oli").await;
    join(&other_nsp, json!("lobby")).await;
    assert_eq!(other_nsp.wait_for("room:history").await.data(), &json!([]));
}

#[tokio::test]
async fn history_retention_by_count() {
    let server = spawn_standalone(|o| o.chat.history_max_messages = 2).await;
    let a = server.connect("/", "alice").await;
    join(&a, json!("lobby")).await;
    for content in ["r1", "r2", "r3"] {
        send(&a, "lobby", content).await;
    }
    let mut later = server.connect("/", "lou").await;
    join(&later, json!("lobby")).await;
    assert_eq!(contents(later.wait_for("room:history").await.data()), vec!["r2", "r3"]);
}

#[tokio::test]
async fn read_receipts_are_sent_once_per_message_and_user() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let mut b1 = server.connect("/", "bob").await;
    let mut b2 = server.connect("/", "bob").await;
    let mut outsider = server.connect("/", "olga").await;
    for client in [&a, &b1, &b2] {
        join(client, json!("lobby")).await;
    }
    let id = send(&a, "lobby", "please read").await;

    let read = json!({"messageId": id, "roomId": "lobby"});
    assert_eq!(b1.ack("message:read", read.clone()).await, json!({"ok": true}));
    for other in [&mut a, &mut b2] {
        assert_eq!(other.wait_for("message:read").await.data(), &json!({"messageId": id, "userId": "bob"}));
    }
    b1.expect_none("message:read", QUIET).await;
    outsider.expect_none("message:read", Duration::ZERO).await;

    assert_eq!(b1.ack("message:read", read.clone()).await, json!({"ok": true}));
    assert_eq!(b2.ack("message:read", read.clone()).await, json!({"ok": true}));
    for client in [&mut a, &mut b1, &mut b2] {
        client.expect_none("message:read", QUIET).await;
    }

    // A different user's first receipt is news again.
    assert_eq!(a.ack("message:read", read.clone()).await, json!({"ok": true}));
    assert_eq!(b1.wait_for("message:read").await.data(), &json!({"messageId": id, "userId": "alice"}));
}

#[tokio::test]
async fn read_receipt_refusals() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let intruder = server.connect("/", "ivan").await;
    join(&a, json!("lobby")).await;
    join(&a, json!("other")).await;
    let id = send(&a, "lobby", "members only").await;
    assert_eq!(
        intruder.ack("message:read", json!({"messageId": id, "roomId": "lobby"})).await,
        json!({"error": "not a member"})
    );
    for unknown in ["no-such-message", "1-0"] {
        let read = json!({"messageId": unknown, "roomId": "lobby"});
        assert_eq!(a.ack("message:read", read).await, json!({"error": "unknown message"}));
    }
    assert_eq!(
        a.ack("message:read", json!({"messageId": id, "roomId": "other"})).await,
        json!({"error": "unknown message"}),
        "the message is in another room"
    );
    assert_eq!(a.ack("message:read", json!({"roomId": "lobby"})).await, json!({"error": "invalid payload"}));
    a.expect_none("message:read", QUIET).await;
}

fn users(event: &switchboard_testkit::Event) -> Vec<String> {
    let mut list: Vec<String> = serde_json::from_value(event.data().clone()).expect("a list of user ids");
    list.sort();
    list
}

#[tokio::test]
async fn presence_lists_each_user_once_on_first_connect_and_last_disconnect() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    assert_eq!(users(&a.wait_for("users:online").await), vec!["alice"]);
    let b1 = server.connect("/", "bob").await;
    let list = a.wait_for("users:online").await;
    assert_eq!(users(&list), vec!["alice", "bob"]);
    let b2 = server.connect("/", "bob").await;
    a.expect_none("users:online", QUIET).await;
    let mut chat = server.connect("/chat", "carol").await;
    assert_eq!(users(&chat.wait_for("users:online").await), vec!["carol"], "per namespace");

    drop(b1);
    a.expect_none("users:online", QUIET).await;
    b2.disconnect();
    assert_eq!(users(&a.wait_for("users:online").await), vec!["alice"]);
    assert_eq!(a.ack("users:online", json!(null)).await, json!(["alice"]));
}

#[tokio::test]
async fn presence_updates_are_coalesced_in_a_connection_storm() {
    let interval = Duration::from_millis(300);
    let server = spawn_standalone(|o| o.chat.presence_interval = interval).await;
    let mut watcher = server.connect("/", "watcher").await;
    watcher.wait_for("users:online").await;
    tokio::time::sleep(interval).await;

    let started = std::time::Instant::now();
    let connects: Vec<_> = (0..20)
        .map(|i| {
            let (addr, auth) = (server.addr, json!({"token": server.token(&format!("storm{i}"))}));
            tokio::spawn(async move { TestClient::connect(addr, "/", auth).await.expect("connects") })
        })
        .collect();
    let mut clients = Vec::new();
    for connect in connects {
        clients.push(connect.await.expect("task"));
    }
    let full = watcher.wait_for_where("users:online", |e| users(e).len() == 21, Duration::from_secs(3)).await;
    assert_eq!(users(&full).len(), 21);
    let elapsed = started.elapsed();
    let lists = 1 + watcher.collect("users:online", Duration::ZERO).await.len();
    let allowed = (elapsed.as_millis() / interval.as_millis()) as usize + 1;
    assert!(lists <= allowed, "{lists} users:online in {elapsed:?} with an interval of {interval:?}");
}

#[tokio::test]
async fn presence_without_broadcast_answers_on_connect_and_on_request() {
    let server = spawn_standalone(|o| o.chat.presence_broadcast = false).await;
    let mut a = server.connect("/", "alice").await;
    assert_eq!(users(&a.wait_for("users:online").await), vec!["alice"]);
    let mut b = server.connect("/", "bob").await;
    assert_eq!(users(&b.wait_for("users:online").await), vec!["alice", "bob"]);
    a.expect_none("users:online", QUIET).await;
    let mut list = a.ack("users:online", json!(null)).await;
    list.as_array_mut().expect("the ack is the list").sort_by(|x, y| x.as_str().cmp(&y.as_str()));
    assert_eq!(list, json!(["alice", "bob"]));
    drop(b);
    a.expect_none("users:online", QUIET).await;
    assert_eq!(a.ack("users:online", json!(null)).await, json!(["alice"]));
}
