//! HTTP long-polling: payload framing, the Socket.IO layer over it, and the
//! ways a polling session ends.

mod common;

use std::time::Duration;

use common::{Polling, RS, Record, Server, config, connect_sid, engine, is_base64id};
use serde_json::json;
use switchboard_gateway::{Config, DisconnectReason, Target};

#[tokio::test]
async fn connect_over_polling() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;

    let post = session.post("40").await;
    assert_eq!((post.status, post.text().as_str()), (200, "ok"));
    assert_eq!(post.header("content-type"), Some("text/html"));

    let get = session.get().await;
    assert_eq!(get.status, 200);
    assert_eq!(get.header("content-type"), Some("text/plain; charset=UTF-8"));
    let reply = get.text();
    let id = connect_sid(&reply, "40");
    assert_eq!(reply, format!(r#"40{{"sid":"{id}"}}"#));
    assert!(is_base64id(&id));
    assert_ne!(id, session.sid, "the Socket.IO id is not the Engine.IO session id");
    assert!(!server.log.connect_of(&id).await, "a fresh socket is not recovered");

    assert_eq!(session.request(r#"421["echo","hi"]"#).await, r#"431["hi"]"#);
}

#[tokio::test]
async fn connect_reply_carries_the_private_id_when_recovery_is_on() {
    let server = Server::echo(common::recovery_config()).await;
    let mut session = Polling::open(server.addr).await;
    let reply = session.request("40").await;
    let data = common::json_after(&reply, "40");
    let (id, pid) = (data["sid"].as_str().expect("sid"), data["pid"].as_str().expect("pid"));
    assert_eq!(reply, format!(r#"40{{"sid":"{id}","pid":"{pid}"}}"#), "keys in the reference order");
    assert!(is_base64id(id) && is_base64id(pid));
    assert!(id != pid && id != session.sid && pid != session.sid);
}

#[tokio::test]
async fn payloads_carry_several_packets_both_ways() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    session.request("40").await;

    session.send(&format!(r#"421["echo","a"]{RS}422["echo","b"]{RS}423["echo",{{"n":3}}]"#)).await;
    let get = session.get().await;
    assert_eq!(get.text(), format!(r#"431["a"]{RS}432["b"]{RS}433[{{"n":3}}]"#));

    // CONNECT and an event in one payload, to a second namespace.
    session.send(&format!(r#"40/admin,{RS}42/admin,7["echo",true]"#)).await;
    let get = session.get().await.text();
    let packets: Vec<&str> = get.split(RS).collect();
    assert_eq!(packets.len(), 2, "{get:?}");
    connect_sid(packets[0], "40/admin,");
    assert_eq!(packets[1], "43/admin,7[true]");
}

#[tokio::test]
async fn server_packets_queue_between_polls() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");

    let nsp = server.nsp("/");
    for n in 1..=3 {
        assert_eq!(nsp.emit(&Target::room(id.as_str()), "tick", &[json!(n)]), 1);
    }
    assert_eq!(session.get().await.text(), format!(r#"42["tick",1]{RS}42["tick",2]{RS}42["tick",3]"#));
}

#[tokio::test]
async fn pending_get_returns_as_soon_as_there_is_data() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");

    let addr = server.addr;
    let target = session.target();
    let pending = tokio::spawn(async move { common::http(addr, "GET", &target, &[], None).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pending.is_finished(), "a GET with nothing to say waits");
    server.nsp("/").emit(&Target::room(id.as_str()), "late", &[json!("news")]);
    let response = tokio::time::timeout(common::WAIT, pending).await.expect("GET answered").expect("GET task");
    assert_eq!(response.text(), r#"42["late","news"]"#);
}

#[tokio::test]
async fn oversized_post_is_refused_with_413_and_closes_the_session() {
    let server = Server::echo(Config { engine: engine(25_000, 20_000, 100), ..config() }).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");

    let big = format!(r#"42["echo","{}"]"#, "x".repeat(200));
    let response = session.post(&big).await;
    assert_eq!(response.status, 413);
    session.assert_gone().await;
    server.log.disconnect_of(&id).await;
    let events = server.log.records().into_iter().filter(|r| matches!(r, Record::Event { .. })).count();
    assert_eq!(events, 0, "nothing of an oversized payload reaches the handler");
}

#[tokio::test]
async fn oversized_chunked_post_is_refused_with_413() {
    let server = Server::echo(Config { engine: engine(25_000, 20_000, 100), ..config() }).await;
    let session = Polling::open(server.addr).await;
    let chunk = format!(r#"42["echo","{}"]"#, "y".repeat(80));
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        session.target(),
        server.addr,
        chunk.len(),
        chunk.len()
    );
    let response = common::http::exchange(server.addr, request.as_bytes()).await;
    assert_eq!(response.status, 413);
    session.assert_gone().await;
}

#[tokio::test]
async fn post_within_the_limit_is_accepted() {
    let server = Server::echo(Config { engine: engine(25_000, 20_000, 100), ..config() }).await;
    let mut session = Polling::open(server.addr).await;
    session.request("40").await;
    let filler = "z".repeat(100 - r#"421["echo",""]"#.len());
    let packet = format!(r#"421["echo","{filler}"]"#);
    assert_eq!(packet.len(), 100, "exactly maxHttpBufferSize");
    assert_eq!(session.request(&packet).await, format!(r#"431["{filler}"]"#));
}

#[tokio::test]
async fn two_concurrent_gets_close_the_session() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");

    let addr = server.addr;
    let target = session.target();
    let first = tokio::spawn(async move { common::http(addr, "GET", &target, &[], None).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = session.get().await;
    assert_eq!(second.status, 400);

    let first = tokio::time::timeout(common::WAIT, first).await.expect("first GET answered").expect("GET task");
    assert_eq!((first.status, first.text().as_str()), (200, "1"), "the pending GET ends with a close packet");
    session.assert_gone().await;
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::TransportError);
}

#[tokio::test]
async fn malformed_payload_closes_the_session() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");

    let response = session.post("abc").await;
    assert_eq!(response.status, 400);
    session.assert_gone().await;
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::ParseError);
}

#[tokio::test]
async fn malformed_base64_closes_the_session() {
    let server = Server::echo(config()).await;
    let session = Polling::open(server.addr).await;
    let response = session.post(&format!("40{RS}b!!!")).await;
    assert_eq!(response.status, 400);
    session.assert_gone().await;
}

#[tokio::test]
async fn malformed_socketio_packet_closes_the_session() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");

    session.post(r#"42["echo""#).await;
    session.assert_gone().await;
    server.log.disconnect_of(&id).await;
}

/// engine.io-protocol test suite, "forcefully closes the session": a close
/// packet from the client ends the pending GET with a noop (`Polling.onClose`
/// sends `noop` while the transport is writable).
#[tokio::test]
async fn client_close_packet_ends_the_pending_get_with_a_noop() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");

    let addr = server.addr;
    let target = session.target();
    let pending = tokio::spawn(async move { common::http(addr, "GET", &target, &[], None).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    session.send("1").await;
    let pending = tokio::time::timeout(common::WAIT, pending).await.expect("GET answered").expect("GET task");
    assert_eq!((pending.status, pending.text().as_str()), (200, "6"));
    session.assert_gone().await;
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::TransportClose);
}

#[tokio::test]
async fn client_close_packet_closes_the_session() {
    let server = Server::echo(config()).await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");
    session.send("1").await;
    session.assert_gone().await;
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::TransportClose);
}
