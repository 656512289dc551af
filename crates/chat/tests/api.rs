//! The server API of docs/api.md and the `/notifications` namespace, against
//! a real listener.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::{TestClient, spawn_standalone};

const QUIET: Duration = Duration::from_millis(200);

const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/api/emit"),
    ("POST", "/api/notify"),
    ("GET", "/api/users/online"),
    ("GET", "/api/rooms/lobby/members"),
    ("GET", "/api/rooms/lobby/history"),
    ("POST", "/api/users/u/join"),
    ("POST", "/api/users/u/leave"),
    ("POST", "/api/users/u/disconnect"),
    ("POST", "/api/sockets/s/disconnect"),
];

async fn join(client: &TestClient, room: &str) {
    assert_eq!(client.ack("room:join", json!(room)).await, json!({"ok": true}));
}

fn sorted(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = serde_json::from_value(value.clone()).expect("a list of strings");
    list.sort();
    list
}

#[tokio::test]
async fn every_endpoint_needs_the_key() {
    let server = spawn_standalone(|o| o.api_key = Some("k3y".into())).await;
    let body = br#"{"event":"x","userId":"u","room":"lobby"}"#;
    for (method, path) in ENDPOINTS {
        for headers in
            [vec![], vec![("authorization", "Bearer wrong")], vec![("x-api-key", "k3")], vec![("x-api-key", "k3yy")]]
        {
            let res = server.http(method, path, &headers, Some(body)).await;
            assert_eq!(res.status, 401, "{method} {path} {headers:?}: {}", res.text);
            assert_eq!(res.body, json!({"error": "unauthorized"}));
        }
    }
    for headers in [[("authorization", "Bearer k3y")], [("x-api-key", "k3y")]] {
        let res = server.http("GET", "/api/users/online", &headers, None).await;
        assert_eq!(res.status, 200, "{headers:?}: {}", res.text);
    }
    let res = server.http("GET", "/api/nope", &[("x-api-key", "k3y")], None).await;
    assert_eq!((res.status, res.body), (404, json!({"error": "not found"})));
}

#[tokio::test]
async fn without_a_key_the_api_is_off() {
    let server = spawn_standalone(|o| o.api_key = None).await;
    for (method, path) in ENDPOINTS {
        let res = server.http(method, path, &[("x-api-key", "anything")], Some(b"{}")).await;
        assert_eq!(res.status, 404, "{method} {path}: {}", res.text);
    }
}

#[tokio::test]
async fn emit_to_a_namespace_rooms_users_with_exceptions() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let mut b = server.connect("/", "bob").await;
    let mut m = server.connect("/", "mute").await;
    let mut chat = server.connect("/chat", "carol").await;
    let mut notif = server.connect("/notifications", "dora").await;
    for client in [&a, &b, &m] {
        join(client, "lobby").await;
    }
    join(&m, "muted").await;

    let ok = json!({"ok": true});
    let res = server.api("POST", "/api/emit", Some(json!({"event": "news", "data": {"n": 1}}))).await;
    assert_eq!((res.status, &res.body), (200, &ok));
    for client in [&mut a, &mut b, &mut m] {
        assert_eq!(client.wait_for("news").await.data(), &json!({"n": 1}));
    }
    chat.expect_none("news", QUIET).await;

    let body = json!({"event": "ev", "data": 2, "rooms": ["lobby"], "except": ["muted"]});
    assert_eq!(server.api("POST", "/api/emit", Some(body)).await.body, ok);
    a.wait_for("ev").await;
    b.wait_for("ev").await;
    m.expect_none("ev", QUIET).await;

    let body = json!({"event": "ev", "data": 3, "except": [b.id()]});
    server.api("POST", "/api/emit", Some(body)).await;
    m.wait_for("ev").await;
    b.expect_none("ev", QUIET).await;

    let body = json!({"event": "direct", "args": ["x", {"y": 1}, 3], "rooms": [a.id()], "users": ["mute"]});
    server.api("POST", "/api/emit", Some(body)).await;
    assert_eq!(a.wait_for("direct").await.args[..3], [json!("x"), json!({"y": 1}), json!(3)]);
    m.wait_for("direct").await;
    b.expect_none("direct", QUIET).await;

    let body = json!({"event": "nobody", "users": ["ghost"]});
    server.api("POST", "/api/emit", Some(body)).await;
    a.expect_none("nobody", QUIET).await;

    let body = json!({"event": "every", "data": null, "namespace": "*"});
    server.api("POST", "/api/emit", Some(body)).await;
    for client in [&mut a, &mut chat, &mut notif] {
        assert_eq!(client.wait_for("every").await.args[0], Value::Null);
    }
    let body = json!({"event": "only-chat", "namespace": "/chat"});
    server.api("POST", "/api/emit", Some(body)).await;
    chat.wait_for("only-chat").await;
    a.expect_none("only-chat", QUIET).await;
}

#[tokio::test]
async fn emit_refusals() {
    let server = spawn_standalone(|_| {}).await;
    let mut a = server.connect("/", "alice").await;
    let res = server.api("POST", "/api/emit", Some(json!({"event": "x", "namespace": "/nope"}))).await;
    assert_eq!((res.status, res.body), (404, json!({"error": "unknown namespace"})));
    let key = format!("Bearer {}", server.api_key.as_deref().unwrap_or_default());
    let res = server.http("POST", "/api/emit", &[("authorization", &key)], Some(b"{not json")).await;
    assert_eq!(res.status, 400, "{}", res.text);
    assert!(res.body["error"].is_string());
    for body in [json!({"data": 1}), json!({"event": 5}), json!({"event": "connect"}), json!({"event": "disconnect"})] {
        let res = server.api("POST", "/api/emit", Some(body.clone())).await;
        assert_eq!(res.status, 400, "{body}: {}", res.text);
        assert!(res.body["error"].is_string(), "{}", res.text);
    }
    a.expect_none("connect", QUIET).await;
    a.expect_none("x", Duration::ZERO).await;
}

#[tokio::test]
async fn online_users_and_room_members() {
    let server = spawn_standalone(|_| {}).await;
    let a1 = server.connect("/", "alice").await;
    let a2 = server.connect("/", "alice").await;
    let b = server.connect("/", "bob").await;
    let chat = server.connect("/chat", "carol").await;
    join(&a1, "lobby").await;
    join(&a2, "lobby").await;
    join(&b, "other").await;

    let res = server.api("GET", "/api/users/online", None).await;
    assert_eq!(sorted(&res.body["users"]), vec!["alice", "bob"]);
    let res = server.api("GET", "/api/users/online?namespace=%2Fchat", None).await;
    assert_eq!(res.body, json!({"users": ["carol"]}));
    chat.disconnect();
    tokio::time::sleep(QUIET).await;
    assert_eq!(server.api("GET", "/api/users/online?namespace=/chat", None).await.body, json!({"users": []}));
    let res = server.api("GET", "/api/users/online?namespace=/nope", None).await;
    assert_eq!((res.status, res.body), (404, json!({"error": "unknown namespace"})));

    let res = server.api("GET", "/api/rooms/lobby/members", None).await;
    assert_eq!(res.body["users"], json!(["alice"]));
    let mut expected = vec![a1.id().to_owned(), a2.id().to_owned()];
    expected.sort();
    assert_eq!(sorted(&res.body["sockets"]), expected);
    let res = server.api("GET", "/api/rooms/lobby/members?namespace=/chat", None).await;
    assert_eq!(res.body, json!({"users": [], "sockets": []}));
}

#[tokio::test]
async fn room_history_newest_limit_or_since() {
    let server = spawn_standalone(|_| {}).await;
    let a = server.connect_as("/", "alice", "Historian", "user").await;
    join(&a, "lobby").await;
    let mut ids = Vec::new();
    for content in ["h0", "h1", "h2", "h3", "h4"] {
        ids.push(a.ack("message:send", json!({"roomId": "lobby", "content": content})).await["id"].clone());
    }
    let res = server.api("GET", "/api/rooms/lobby/history", None).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let all = res.body["messages"].as_array().expect("messages").clone();
    assert_eq!(all.iter().map(|m| m["id"].clone()).collect::<Vec<_>>(), ids);
    let created = all[0]["createdAt"].clone();
    assert_eq!(
        all[0],
        json!({"id": ids[0], "roomId": "lobby", "sender": {"id": "alice", "name": "Historian"}, "content": "h0", "type": "text", "createdAt": created})
    );
    let res = server.api("GET", "/api/rooms/lobby/history?limit=2", None).await;
    assert_eq!(res.body["messages"], json!(all[3..]));
    let since = ids[1].as_str().expect("id");
    let res = server.api("GET", &format!("/api/rooms/lobby/history?since={since}"), None).await;
    assert_eq!(res.body["messages"], json!(all[2..]));
    let res = server.api("GET", &format!("/api/rooms/lobby/history?since={since}&limit=1"), None).await;
    assert_eq!(res.body["messages"], json!(all[2..3]), "paging forward from since");
    let res = server.api("GET", "/api/rooms/lobby/history?namespace=/chat", None).await;
    assert_eq!(res.body, json!({"messages": []}));
    for bad in ["since=nonsense", "limit=many"] {
        let res = server.api("GET", &format!("/api/rooms/lobby/history?{bad}"), None).await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
    }
}

#[tokio::test]
async fn users_join_and_leave_rooms_through_the_api() {
    let server = spawn_standalone(|_| {}).await;
    let mut a1 = server.connect("/", "alice").await;
    let mut a2 = server.connect("/", "alice").await;
    let chat = server.connect("/chat", "alice").await;

    let res = server.api("POST", "/api/users/alice/join", Some(json!({"room": "lobby"}))).await;
    assert_eq!(res.body, json!({"ok": true, "sockets": 2}));
    assert_eq!(a1.ack("room:message", json!({"roomId": "lobby", "text": "in"})).await, json!({"ok": true}));
    a1.wait_for("room:message").await;
    a2.wait_for("room:message").await;

    let res = server.api("POST", "/api/users/alice/leave", Some(json!({"room": "lobby"}))).await;
    assert_eq!(res.body, json!({"ok": true, "sockets": 2}));
    assert_eq!(a1.ack("room:message", json!({"roomId": "lobby"})).await, json!({"error": "not a member"}));

    let body = json!({"room": "lobby", "namespace": "/chat"});
    assert_eq!(server.api("POST", "/api/users/alice/join", Some(body)).await.body, json!({"ok": true, "sockets": 1}));
    assert_eq!(chat.ack("message", json!({"roomId": "lobby", "content": "x"})).await, json!({"ok": true}));
    let res = server.api("POST", "/api/users/ghost/join", Some(json!({"room": "lobby"}))).await;
    assert_eq!(res.body, json!({"ok": true, "sockets": 0}));
    let res = server.api("POST", "/api/users/alice/join", Some(json!({"rooms": "lobby"}))).await;
    assert_eq!(res.status, 400, "{}", res.text);
    let res = server.api("POST", "/api/users/alice/join", Some(json!({"room": "x".repeat(500)}))).await;
    assert_eq!((res.status, res.body), (400, json!({"error": "room name too long"})));
}

#[tokio::test]
async fn disconnect_a_user_or_a_socket() {
    let server = spawn_standalone(|_| {}).await;
    let mut a1 = server.connect("/", "alice").await;
    let mut a2 = server.connect("/", "alice").await;
    let mut chat = server.connect("/chat", "alice").await;
    let mut other = server.connect("/", "bob").await;
    join(&a1, "lobby").await;
    join(&other, "lobby").await;

    let res = server.api("POST", "/api/users/alice/disconnect", None).await;
    assert_eq!(res.body, json!({"ok": true, "sockets": 2}));
    assert_eq!(a1.wait_disconnect().await, "io server disconnect");
    assert_eq!(a2.wait_disconnect().await, "io server disconnect");
    assert_eq!(other.wait_for("room:user-left").await.data(), &json!({"userId": "alice", "roomId": "lobby"}));
    chat.expect_none("never", QUIET).await;
    assert_eq!(chat.ack("users:online", json!(null)).await, json!(["alice"]), "other namespaces stay");

    let res = server.api("POST", "/api/users/alice/disconnect", Some(json!({"namespace": "/chat"}))).await;
    assert_eq!(res.body, json!({"ok": true, "sockets": 1}));
    assert_eq!(chat.wait_disconnect().await, "io server disconnect");

    let b2 = server.connect("/", "bob").await;
    let res = server.api("POST", &format!("/api/sockets/{}/disconnect", other.id()), None).await;
    assert_eq!(res.body, json!({"ok": true, "sockets": 1}));
    assert_eq!(other.wait_disconnect().await, "io server disconnect");
    assert_eq!(b2.ack("users:online", json!(null)).await, json!(["bob"]), "the user's other socket stays");
    let res = server.api("POST", "/api/sockets/nope/disconnect", None).await;
    assert_eq!(res.body, json!({"ok": true, "sockets": 0}));
}

#[tokio::test]
async fn notifications_reach_every_socket_of_the_user_only() {
    let server = spawn_standalone(|_| {}).await;
    let mut n1 = server.connect("/notifications", "nina").await;
    let mut n2 = server.connect("/notifications", "nina").await;
    let mut other = server.connect("/notifications", "otto").await;
    let mut root = server.connect("/", "nina").await;

    let data = json!({"text": "ping", "nested": {"a": [1, 2]}});
    let res = server.api("POST", "/api/notify", Some(json!({"userId": "nina", "data": data}))).await;
    assert_eq!((res.status, &res.body), (200, &json!({"ok": true})));
    for client in [&mut n1, &mut n2] {
        assert_eq!(client.wait_for("notification").await.data(), &data);
    }
    other.expect_none("notification", QUIET).await;
    root.expect_none("notification", Duration::ZERO).await;

    let body = json!({"event": "custom", "namespace": "/notifications", "rooms": ["user:nina"]});
    server.api("POST", "/api/emit", Some(body)).await;
    n1.wait_for("custom").await;
    other.expect_none("custom", QUIET).await;

    let res = server.api("POST", "/api/notify", Some(json!({"userId": "nobody", "data": 1}))).await;
    assert_eq!(res.body, json!({"ok": true}));
    let res = server.api("POST", "/api/notify", Some(json!({"data": 1}))).await;
    assert_eq!(res.status, 400);

    // Clients send nothing here.
    assert_eq!(n1.ack("room:join", json!("lobby")).await, json!({"error": "invalid payload"}));
}

#[tokio::test]
async fn dynamic_namespaces_run_the_chat() {
    let server = spawn_standalone(|o| o.dynamic_prefix = Some("/team-".into())).await;
    let a = server.connect("/team-red", "alice").await;
    let mut b = server.connect("/team-red", "bob").await;
    join(&a, "lobby").await;
    join(&b, "lobby").await;
    a.ack("message:send", json!({"roomId": "lobby", "content": "dyn"})).await;
    assert_eq!(b.wait_for("message:new").await.data()["content"], "dyn");
    let res = server.api("GET", "/api/rooms/lobby/history?namespace=/team-red", None).await;
    assert_eq!(res.body["messages"][0]["content"], "dyn");
    let refused = server.try_connect("/other", json!({"token": server.token("x")})).await;
    assert!(
        matches!(refused, Err(switchboard_testkit::ConnectError::Refused { message, .. }) if message == "Invalid namespace")
    );
}
