//! Namespaces: CONNECT and its refusals (CONNECT_ERROR `{message, data}`),
//! authentication, dynamic namespaces, multiplexing, DISCONNECT.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Log, Polling, Record, Server, TestHandler, Ws, config, connect_sid, secret_auth, token};
use serde_json::json;
use switchboard_auth::Authenticator;
use switchboard_gateway::{Config, ConnectRefusal, DisconnectReason, Gateway, Handler};

#[tokio::test]
async fn unknown_namespace_is_refused() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    assert_eq!(ws.request("40/nope,").await, r#"44/nope,{"message":"Invalid namespace"}"#);
    assert_eq!(ws.request(r#"40/nope,{"token":"x"}"#).await, r#"44/nope,{"message":"Invalid namespace"}"#);
    // The session is still usable.
    connect_sid(&ws.request("40").await, "40");
    assert!(server.gateway.namespace("/nope").is_none());
}

#[tokio::test]
async fn connect_without_a_token_is_refused() {
    let server = Server::with_auth(config(), secret_auth()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    assert_eq!(ws.request("40").await, r#"44{"message":"Authentication required"}"#);
    assert_eq!(ws.request("40{}").await, r#"44{"message":"Authentication required"}"#);
    assert_eq!(ws.request("40/admin,").await, r#"44/admin,{"message":"Authentication required"}"#);
    assert!(server.log.records().is_empty(), "no handler heard of a refused socket");
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let server = Server::with_auth(config(), secret_auth()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let expired =
        switchboard_auth::sign_hs256(common::SECRET, &json!({"sub": "alice", "iat": now - 600, "exp": now - 300}))
            .expect("sign");
    let other_secret = switchboard_auth::mint_hs256("another-secret", "alice", "Alice", "user", 600);
    for bad in ["garbage", "a.b.c", expired.as_str(), other_secret.as_str()] {
        let connect = format!(r#"40{{"token":"{bad}"}}"#);
        assert_eq!(ws.request(&connect).await, r#"44{"message":"Invalid token"}"#, "token {bad:?}");
    }
    assert!(server.log.records().is_empty());
}

#[tokio::test]
async fn token_in_the_connect_payload_gives_the_identity() {
    let server = Server::with_auth(config(), secret_auth()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let reply = ws.request(&format!(r#"40{{"token":"{}"}}"#, token("alice"))).await;
    let id = connect_sid(&reply, "40");
    assert_eq!(reply, format!(r#"40{{"sid":"{id}"}}"#));
    assert_eq!(user_of(&server.log, &id).await, "alice");
}

#[tokio::test]
async fn connect_payload_reaches_the_handler() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let id = connect_sid(&ws.request(r#"40/admin,{"room":"lobby","n":[1]}"#).await, "40/admin,");
    let auth = server
        .log
        .wait_for("the connect", |r| match r {
            Record::Connect { id: new, nsp, auth, .. } if *new == id && nsp == "/admin" => Some(auth.clone()),
            _ => None,
        })
        .await;
    assert_eq!(auth, json!({"room": "lobby", "n": [1]}));
}

async fn user_of(log: &Log, id: &str) -> String {
    log.wait_for("the connect", |r| match r {
        Record::Connect { id: new, user, .. } if new == id => Some(user.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn bearer_header_of_the_websocket_handshake_authenticates() {
    let server = Server::with_auth(config(), secret_auth()).await;
    let bearer = format!("Bearer {}", token("bob"));
    let (mut ws, _) = Ws::open_with(server.addr, &[("Authorization", &bearer)]).await;
    let id = connect_sid(&ws.request("40").await, "40");
    assert_eq!(user_of(&server.log, &id).await, "bob");
    // The header counts for every namespace of the session.
    let admin = connect_sid(&ws.request("40/admin,").await, "40/admin,");
    assert_eq!(user_of(&server.log, &admin).await, "bob");
}

#[tokio::test]
async fn bearer_header_of_the_polling_handshake_authenticates() {
    let server = Server::with_auth(config(), secret_auth()).await;
    let bearer = format!("Bearer {}", token("carol"));
    let mut session = Polling::open_with(server.addr, &[("Authorization", &bearer)]).await;
    let id = connect_sid(&session.request("40").await, "40");
    assert_eq!(user_of(&server.log, &id).await, "carol");
}

#[tokio::test]
async fn token_in_the_payload_wins_over_the_header() {
    let server = Server::with_auth(config(), secret_auth()).await;
    let bearer = format!("Bearer {}", token("bob"));
    let (mut ws, _) = Ws::open_with(server.addr, &[("Authorization", &bearer)]).await;
    let id = connect_sid(&ws.request(&format!(r#"40{{"token":"{}"}}"#, token("alice"))).await, "40");
    assert_eq!(user_of(&server.log, &id).await, "alice");
}

#[tokio::test]
async fn dynamic_namespaces_are_created_on_first_connect() {
    let log = Log::default();
    let handler: Arc<dyn Handler> = TestHandler::new(&log);
    let builder = Gateway::builder(config(), Authenticator::anonymous())
        .namespace("/", TestHandler::new(&log))
        .dynamic_namespaces(Box::new(move |name| name.starts_with("/dyn-").then(|| handler.clone())));
    let server = Server::start(builder, log).await;
    assert!(server.gateway.namespace("/dyn-1").is_none());

    let (mut ws, _) = Ws::open(server.addr).await;
    let id = connect_sid(&ws.request("40/dyn-1,").await, "40/dyn-1,");
    assert!(server.gateway.namespace("/dyn-1").is_some());
    assert_eq!(ws.request(r#"42/dyn-1,0["echo","x"]"#).await, r#"43/dyn-1,0["x"]"#);
    assert_eq!(ws.request("40/other,").await, r#"44/other,{"message":"Invalid namespace"}"#);
    assert!(server.gateway.namespace("/other").is_none());

    // A second client joins the same dynamic namespace.
    let (mut other, _) = Ws::open(server.addr).await;
    let second = connect_sid(&other.request("40/dyn-1,").await, "40/dyn-1,");
    assert_ne!(id, second);
    assert_eq!(server.nsp("/dyn-1").sockets().len(), 2);
}

#[tokio::test]
async fn two_namespaces_share_one_session() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let root = connect_sid(&ws.request("40").await, "40");
    let reply = ws.request("40/admin,").await;
    let admin = connect_sid(&reply, "40/admin,");
    assert_eq!(reply, format!(r#"40/admin,{{"sid":"{admin}"}}"#));
    assert_ne!(root, admin, "each namespace has its own socket id");

    assert_eq!(ws.request(r#"421["echo","a"]"#).await, r#"431["a"]"#);
    assert_eq!(ws.request(r#"42/admin,2["echo","b"]"#).await, r#"43/admin,2["b"]"#);
    assert_eq!(ws.request(r#"42/admin,["echo","c"]"#).await, r#"42/admin,["echo","c"]"#);
    assert_eq!(server.gateway.session_count(), 1);
}

#[tokio::test]
async fn client_disconnect_leaves_one_namespace() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let root = connect_sid(&ws.request("40").await, "40");
    let admin = connect_sid(&ws.request("40/admin,").await, "40/admin,");

    ws.send("41/admin,").await;
    assert_eq!(server.log.disconnect_of(&admin).await, DisconnectReason::ClientNamespaceDisconnect);
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]", "the other namespace stays connected");
    assert!(server.log.disconnects().iter().all(|(id, _)| *id != root));

    // Connecting again gives a new socket.
    let again = connect_sid(&ws.request("40/admin,").await, "40/admin,");
    assert_ne!(again, admin);
}

#[tokio::test]
async fn client_disconnect_of_the_last_namespace_keeps_the_session() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send("41").await;
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::ClientNamespaceDisconnect);
    connect_sid(&ws.request("40").await, "40");
}

#[tokio::test]
async fn event_to_a_namespace_not_joined_closes_the_session() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send(r#"42/admin,["echo","x"]"#).await;
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    server.log.disconnect_of(&id).await;
}

#[tokio::test]
async fn server_disconnect_of_a_namespace() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    connect_sid(&ws.request("40").await, "40");
    let admin = connect_sid(&ws.request("40/admin,").await, "40/admin,");
    assert_eq!(ws.request(r#"42/admin,["kick"]"#).await, "41/admin,");
    assert_eq!(server.log.disconnect_of(&admin).await, DisconnectReason::ServerNamespaceDisconnect);
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]");
}

/// The reference server sends `{message: err.message, data: err.data}`;
/// JSON leaves an undefined `data` out.
#[tokio::test]
async fn handler_refusal_without_data() {
    let log = Log::default();
    let refusing = TestHandler::refusing(&log, ConnectRefusal::new("not allowed"));
    let server =
        Server::start(Gateway::builder(config(), Authenticator::anonymous()).namespace("/", refusing), log).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    assert_eq!(ws.request("40").await, r#"44{"message":"not allowed"}"#);
}

#[tokio::test]
async fn handler_refusal_with_data() {
    let log = Log::default();
    let refusal = ConnectRefusal { message: "not allowed".into(), data: Some(json!({"retry": false})) };
    let refusing = TestHandler::refusing(&log, refusal);
    let builder = Gateway::builder(config(), Authenticator::anonymous())
        .namespace("/admin", refusing)
        .namespace("/", TestHandler::new(&log));
    let server = Server::start(builder, log).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let refused = ws.request("40/admin,").await;
    assert_eq!(common::json_after(&refused, "44/admin,"), json!({"message": "not allowed", "data": {"retry": false}}));
    connect_sid(&ws.request("40").await, "40");
    assert!(server.log.records().iter().all(|r| !matches!(r, Record::Connect { nsp, .. } if nsp == "/admin")));
}

/// `Client.ondecoded` in the reference server: a CONNECT for a namespace
/// the client is already connected to is an invalid state, and the client is
/// closed.
#[tokio::test]
async fn second_connect_to_the_same_namespace_closes_the_session() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send("40").await;
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    server.log.disconnect_of(&id).await;
}

#[tokio::test]
async fn session_without_connect_is_closed_after_the_connect_timeout() {
    let server = Server::echo(Config { connect_timeout: Duration::from_millis(300), ..config() }).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");

    // A pending GET of a polling session ends with the close.
    let polling = Polling::open(server.addr).await;
    polling.assert_gone().await;

    // A session that connects in time stays.
    let (mut ws, _) = Ws::connected(server.addr, "40").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]");
}
