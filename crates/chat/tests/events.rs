//! SPEC.md section 3 against a real listener: `chat:message`,
//! `announcement`, rooms, typing, the `/chat` shorthand, binary payloads,
//! and refusals. Each test asserts who receives and who does not.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_testkit::{TestClient, spawn_standalone};

/// How long a test waits to be sure something does not arrive.
const QUIET: Duration = Duration::from_millis(200);

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn assert_recent(timestamp: &Value) {
    let ts = timestamp.as_u64().unwrap_or_else(|| panic!("timestamp {timestamp} is not a number"));
    assert!(ts.abs_diff(now_ms()) < 5_000, "timestamp {ts} is not now");
}

async fn join(client: &TestClient, room: &str) {
    assert_eq!(client.ack("room:join", json!(room)).await, json!({"ok": true}));
}

#[tokio::test]
async fn chat_message_reaches_every_other_socket_and_a_receipt_the_sender() {
    let server = spawn_standalone(|_| {}).await;
    let mut a1 = server.connect("/", "alice").await;
    let mut a2 = server.connect("/", "alice").await;
    let mut b = server.connect("/", "bob").await;
    let mut elsewhere = server.connect("/chat", "carol").await;

    let payload = json!({"id": "m1", "text": "hello", "sender": "mallory", "timestamp": 1});
    assert_eq!(a1.ack("chat:message", payload).await, json!({"ok": true}));
    assert_eq!(a1.wait_for("chat:message:received").await.data(), &json!({"id": "m1", "status": "delivered"}));
    for other in [&mut a2, &mut b] {
        let got = other.wait_for("chat:message").await;
        assert_recent(&got.data()["timestamp"]);
        assert_eq!(got.data()["sender"], "alice", "the server sets the sender");
        assert_eq!(got.data()["text"], "hello");
        assert_eq!(got.data()["id"], "m1");
    }
    a1.expect_none("chat:message", QUIET).await;
    elsewhere.expect_none("chat:message", Duration::ZERO).await;
}

#[tokio::test]
async fn malformed_chat_messages_are_refused_and_sent_nowhere() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let mut b = server.connect("/", "bob").await;
    for bad in [json!({"text": "no id"}), json!("a string"), json!(42), json!(null), json!([1, 2]), json!({"id": {}})] {
        assert_eq!(a.ack("chat:message", bad).await, json!({"error": "invalid payload"}));
    }
    assert_eq!(a.emit_with_ack("chat:message", &[]).await, vec![json!({"error": "invalid payload"})]);
    b.expect_none("chat:message", QUIET).await;
    a.expect_none("chat:message:received", Duration::ZERO).await;
    // Still connected and served.
    assert_eq!(a.ack("chat:message", json!({"id": 7})).await, json!({"ok": true}));
    assert_eq!(b.wait_for("chat:message").await.data()["id"], 7);
}

#[tokio::test]
async fn announcements_from_allowed_roles_reach_everyone_in_the_namespace() {
    let server = spawn_standalone(|o| o.chat.announce_roles = vec!["admin".into(), "staff".into()]).await;
    let mut admin = server.connect_as("/", "root", "Root", "admin").await;
    let mut staff = server.connect_as("/", "sam", "Sam", "staff").await;
    let mut user = server.connect("/", "ursula").await;
    let mut elsewhere = server.connect_as("/chat", "root", "Root", "admin").await;

    assert_eq!(admin.ack("announcement", json!({"title": "noon"})).await, json!({"ok": true}));
    for client in [&mut admin, &mut staff, &mut user] {
        assert_eq!(client.wait_for("announcement").await.data(), &json!({"title": "noon"}));
    }
    assert_eq!(staff.ack("announcement", json!("plain text")).await, json!({"ok": true}));
    assert_eq!(user.wait_for("announcement").await.data(), &json!("plain text"));

    assert_eq!(user.ack("announcement", json!("x")).await, json!({"error": "forbidden"}));
    for client in [&mut admin, &mut staff, &mut user] {
        client.expect_none_where("announcement", |e| e.data() == "x", QUIET).await;
    }
    elsewhere.expect_none("announcement", Duration::ZERO).await;
}

#[tokio::test]
async fn room_join_announces_the_joiner_to_the_others_and_sends_it_the_history() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let mut outsider = server.connect("/", "olga").await;
    let mut elsewhere = server.connect("/chat", "carol").await;
    join(&a, "lobby").await;
    join(&elsewhere, "lobby").await;
    assert_eq!(a.wait_for("room:history").await.data(), &json!([]));

    let mut b = server.connect("/", "bob").await;
    assert_eq!(b.ack("room:join", json!({"roomId": "lobby"})).await, json!({"ok": true}));
    assert_eq!(a.wait_for("room:user-joined").await.data(), &json!({"userId": "bob", "roomId": "lobby"}));
    assert_eq!(b.wait_for("room:history").await.data(), &json!([]));
    b.expect_none("room:user-joined", QUIET).await;
    outsider.expect_none("room:user-joined", Duration::ZERO).await;
    elsewhere.expect_none("room:user-joined", Duration::ZERO).await;

    // Joining again is no news to the others.
    join(&b, "lobby").await;
    a.expect_none("room:user-joined", QUIET).await;
}

#[tokio::test]
async fn room_join_refusals() {
    let server = spawn_standalone(|o| {
        o.gateway.limits.max_rooms_per_socket = 2;
        o.gateway.limits.max_room_name_len = 8;
    })
    .await;
    let a = server.connect("/", "alice").await;
    let b = server.connect("/", "bob").await;
    for bad in [json!(42), json!(null), json!({}), json!([]), json!({"since": "x"}), json!(true)] {
        assert_eq!(a.ack("room:join", bad).await, json!({"error": "invalid payload"}));
    }
    assert_eq!(
        a.ack("room:join", json!({"roomId": "r", "since": "nonsense"})).await,
        json!({"error": "invalid payload"})
    );
    assert_eq!(a.ack("room:join", json!("")).await, json!({"error": "invalid room name"}));
    assert_eq!(a.ack("room:join", json!("123456789")).await, json!({"error": "room name too long"}));
    assert_eq!(a.ack("room:join", json!(b.id())).await, json!({"error": "invalid room name"}), "a socket id");
    join(&a, "r1").await;
    join(&a, "r2").await;
    assert_eq!(a.ack("room:join", json!("r3")).await, json!({"error": "too many rooms"}));
}

#[tokio::test]
async fn room_message_reaches_members_only_sender_included() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let mut a_other = server.connect("/", "alice").await;
    let mut b = server.connect("/", "bob").await;
    let mut outsider = server.connect("/", "olga").await;
    let mut elsewhere = server.connect("/chat", "carol").await;
    join(&a, "lobby").await;
    join(&b, "lobby").await;
    join(&elsewhere, "lobby").await;

    let payload = json!({"roomId": "lobby", "text": "hi", "sender": "mallory", "meta": {"k": [1, 2]}});
    assert_eq!(a.ack("room:message", payload).await, json!({"ok": true}));
    for member in [&mut a, &mut b] {
        let got = member.wait_for("room:message").await;
        let data = got.data();
        assert_recent(&data["timestamp"]);
        assert_eq!(
            data,
            &json!({"roomId": "lobby", "text": "hi", "sender": "alice", "meta": {"k": [1, 2]}, "timestamp": data["timestamp"]})
        );
    }
    for other in [&mut a_other, &mut outsider, &mut elsewhere] {
        other.expect_none("room:message", QUIET).await;
    }

    assert_eq!(
        outsider.ack("room:message", json!({"roomId": "lobby", "text": "x"})).await,
        json!({"error": "not a member"})
    );
    for bad in [json!({"text": "no room"}), json!("lobby"), json!(7), json!(null), json!({"roomId": 12})] {
        assert_eq!(a.ack("room:message", bad).await, json!({"error": "invalid payload"}));
    }
    b.expect_none("room:message", QUIET).await;
}

#[tokio::test]
async fn room_leave_tells_the_others_and_ends_membership() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let mut leaver = server.connect("/", "lea").await;
    let mut outsider = server.connect("/", "olga").await;
    join(&a, "lobby").await;
    join(&leaver, "lobby").await;

    assert_eq!(leaver.ack("room:leave", json!("lobby")).await, json!({"ok": true}));
    assert_eq!(a.wait_for("room:user-left").await.data(), &json!({"userId": "lea", "roomId": "lobby"}));
    leaver.expect_none("room:user-left", QUIET).await;
    outsider.expect_none("room:user-left", Duration::ZERO).await;

    a.ack("room:message", json!({"roomId": "lobby", "text": "after"})).await;
    a.wait_for("room:message").await;
    leaver.expect_none("room:message", QUIET).await;
    assert_eq!(leaver.ack("room:message", json!({"roomId": "lobby"})).await, json!({"error": "not a member"}));
    assert_eq!(leaver.ack("room:leave", json!("lobby")).await, json!({"error": "not a member"}));
    assert_eq!(leaver.ack("room:leave", json!(5)).await, json!({"error": "invalid payload"}));
}

#[tokio::test]
async fn a_disconnect_is_room_user_left_in_every_room() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let mut b = server.connect("/", "bob").await;
    let gone = server.connect("/", "gus").await;
    join(&a, "r1").await;
    join(&b, "r2").await;
    join(&gone, "r1").await;
    join(&gone, "r2").await;
    gone.disconnect();
    assert_eq!(a.wait_for("room:user-left").await.data(), &json!({"userId": "gus", "roomId": "r1"}));
    assert_eq!(b.wait_for("room:user-left").await.data(), &json!({"userId": "gus", "roomId": "r2"}));

    // A dropped transport counts too.
    let dropped = server.connect("/", "dora").await;
    join(&dropped, "r1").await;
    a.wait_for("room:user-joined").await;
    drop(dropped);
    assert_eq!(a.wait_for("room:user-left").await.data(), &json!({"userId": "dora", "roomId": "r1"}));
}

#[tokio::test]
async fn typing_goes_to_the_others_in_the_room_only() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect_as("/", "alice", "Alice Typist", "user").await;
    let mut b = server.connect("/", "bob").await;
    let mut outsider = server.connect("/", "olga").await;
    join(&a, "lobby").await;
    join(&b, "lobby").await;

    assert_eq!(a.ack("typing:start", json!("lobby")).await, json!({"ok": true}));
    assert_eq!(b.wait_for("typing:start").await.data(), &json!({"userId": "alice", "userName": "Alice Typist"}));
    assert_eq!(a.ack("typing:stop", json!({"roomId": "lobby"})).await, json!({"ok": true}));
    assert_eq!(b.wait_for("typing:stop").await.data(), &json!({"userId": "alice"}));
    a.expect_none("typing:start", QUIET).await;
    outsider.expect_none("typing:start", Duration::ZERO).await;
    outsider.expect_none("typing:stop", Duration::ZERO).await;

    assert_eq!(outsider.ack("typing:start", json!("lobby")).await, json!({"error": "not a member"}));
    assert_eq!(outsider.ack("typing:stop", json!("lobby")).await, json!({"error": "not a member"}));
    assert_eq!(a.ack("typing:start", json!(null)).await, json!({"error": "invalid payload"}));
    b.expect_none("typing:start", QUIET).await;
}

#[tokio::test]
async fn chat_namespace_shorthand_and_separate_rooms() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/chat", "alice").await;
    let mut b = server.connect("/chat", "bob").await;
    let root_a = server.connect("/", "alice").await;
    let mut root_b = server.connect("/", "bob").await;
    join(&a, "lobby").await;
    join(&b, "lobby").await;
    join(&root_b, "lobby").await;

    assert_eq!(a.ack("message", json!({"roomId": "lobby", "content": "short"})).await, json!({"ok": true}));
    for member in [&mut a, &mut b] {
        let got = member.wait_for("room:message").await;
        let ts = got.data()["timestamp"].clone();
        assert_eq!(got.data(), &json!({"roomId": "lobby", "content": "short", "sender": "alice", "timestamp": ts}));
    }
    a.expect_none("message", QUIET).await;
    root_b.expect_none("room:message", Duration::ZERO).await;

    // alice is in the room on /chat only.
    assert_eq!(root_a.ack("room:message", json!({"roomId": "lobby"})).await, json!({"error": "not a member"}));
    root_b.ack("room:message", json!({"roomId": "lobby", "content": "on root"})).await;
    root_b.wait_for("room:message").await;
    b.expect_none("room:message", QUIET).await;

    // `message` is only a shorthand in /chat.
    assert_eq!(root_b.ack("message", json!({"roomId": "lobby"})).await, json!({"error": "unknown event"}));
}

#[tokio::test]
async fn binary_payloads_are_relayed_intact() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let mut b = server.connect("/", "bob").await;
    let file = Bytes::from((0..=255u8).collect::<Vec<_>>());
    let empty = Bytes::new();
    let payload =
        json!({"id": "bin", "file": {"_placeholder": true, "num": 0}, "parts": [{"_placeholder": true, "num": 1}]});
    let ack = a.emit_binary_with_ack("chat:message", &[payload], &[file.clone(), empty.clone()]).await;
    assert_eq!(ack, vec![json!({"ok": true})]);
    let got = b.wait_for("chat:message").await;
    assert_eq!(got.attachments, vec![file.clone(), empty]);
    assert_eq!(got.data()["file"], json!({"_placeholder": true, "num": 0}));
    assert_eq!(got.data()["sender"], "alice");

    join(&a, "lobby").await;
    join(&b, "lobby").await;
    let data = Bytes::from(vec![7u8; 100_000]);
    let payload = json!({"roomId": "lobby", "data": {"_placeholder": true, "num": 0}});
    a.emit_binary_with_ack("room:message", &[payload], std::slice::from_ref(&data)).await;
    for member in [&mut a, &mut b] {
        assert_eq!(member.wait_for("room:message").await.attachments, vec![data.clone()]);
    }
}

#[tokio::test]
async fn unknown_events_and_garbage_hurt_nobody_else() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let b = server.connect("/", "bob").await;
    assert_eq!(a.ack("no:such:event", json!({})).await, json!({"error": "unknown event"}));
    b.send_raw(r#"42["room:join""#);
    b.send_raw("42[]");
    a.ack("chat:message", json!({"id": "still-here"})).await;
    a.wait_for("chat:message:received").await;
}

#[tokio::test]
async fn recovered_sockets_do_not_announce_their_rooms_again() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let b = server.connect("/", "bob").await;
    join(&a, "lobby").await;
    join(&b, "lobby").await;
    a.wait_for("room:user-joined").await;
    a.ack("room:message", json!({"roomId": "lobby", "text": "before"})).await;
    // An event with an offset, so that bob can recover from it.
    let mut b = b;
    b.wait_for("room:message").await;
    let (pid, offset) = (b.pid().expect("recovery is on"), b.last_offset().expect("an offset"));
    drop(b);
    a.wait_for("room:user-left").await;
    let auth = json!({"token": server.token("bob"), "pid": pid, "offset": offset});
    let b = server.try_connect("/", auth).await.expect("reconnects");
    assert_eq!(
        b.ack("room:message", json!({"roomId": "lobby", "text": "back"})).await,
        json!({"ok": true}),
        "recovered"
    );
    a.expect_none("room:user-joined", QUIET).await;
}
