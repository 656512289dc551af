//! The WebSocket transport: Socket.IO over it, and the ways it closes.

mod common;

use common::{Server, Ws, WsFrame, config, connect_sid, engine, is_base64id};
use futures_util::{SinkExt, StreamExt};
use switchboard_gateway::{Config, DisconnectReason};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn connect_event_and_ack_round_trip() {
    let server = Server::echo(config()).await;
    let (mut ws, open) = Ws::open(server.addr).await;
    let engine_sid = common::json_after(&open, "0")["sid"].as_str().expect("sid").to_owned();

    let reply = ws.request("40").await;
    let id = connect_sid(&reply, "40");
    assert_eq!(reply, format!(r#"40{{"sid":"{id}"}}"#));
    assert!(is_base64id(&id));
    assert_ne!(id, engine_sid, "the Socket.IO id is not the Engine.IO session id");

    assert_eq!(ws.request(r#"42["echo","hi"]"#).await, r#"42["echo","hi"]"#);
    assert_eq!(ws.request(r#"421["echo",1,{"a":[2]},null]"#).await, r#"431[1,{"a":[2]},null]"#);
    assert_eq!(ws.request(r#"4212["echo"]"#).await, "4312[]");

    let seen = server.log.records();
    assert!(seen.iter().any(|r| matches!(r, common::Record::Event { name, ack: Some(12), .. } if name == "echo")));
}

/// JSON objects keep the key order the client sent, as `JSON.parse` /
/// `JSON.stringify` do in the reference server.
#[tokio::test]
async fn object_keys_keep_their_order() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::connected(server.addr, "40").await;
    assert_eq!(ws.request(r#"421["echo",{"b":1,"a":{"z":0,"y":1}}]"#).await, r#"431[{"b":1,"a":{"z":0,"y":1}}]"#);
}

#[tokio::test]
async fn frames_that_arrive_in_one_read_are_all_handled() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::connected(server.addr, "40").await;
    ws.send_batch(&[r#"421["echo","a"]"#, r#"422["echo","b"]"#, r#"423["echo","c"]"#]).await;
    assert_eq!(ws.recv_text().await, r#"431["a"]"#);
    assert_eq!(ws.recv_text().await, r#"432["b"]"#);
    assert_eq!(ws.recv_text().await, r#"433["c"]"#);
}

#[tokio::test]
async fn connect_and_event_in_one_read() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_batch(&["40", r#"421["echo","x"]"#]).await;
    connect_sid(&ws.recv_text().await, "40");
    assert_eq!(ws.recv_text().await, r#"431["x"]"#);
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let server = Server::echo(Config { engine: engine(25_000, 20_000, 1000), ..config() }).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;

    let at_limit = format!(r#"421["echo","{}"]"#, "a".repeat(1000 - r#"421["echo",""]"#.len()));
    assert_eq!(at_limit.len(), 1000);
    assert!(ws.request(&at_limit).await.starts_with("431["), "a message of exactly maxPayload is accepted");

    ws.send(&format!(r#"42["echo","{}"]"#, "b".repeat(2000))).await;
    let (texts, code) = ws.closed().await;
    assert!(texts.is_empty(), "nothing answers an oversized message: {texts:?}");
    assert_eq!(code, Some(1009));
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::TransportError);
}

#[tokio::test]
async fn engine_garbage_closes_the_connection() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send("abc").await;
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::ParseError);
    common::eventually("the session to be gone", || server.gateway.session_count() == 0).await;
}

#[tokio::test]
async fn socketio_garbage_closes_the_connection() {
    for garbage in [r#"42["echo""#, "4Z", r#"42{"not":"an array"}"#, "42[]", "43[]"] {
        let server = Server::echo(config()).await;
        let (mut ws, id) = Ws::connected(server.addr, "40").await;
        ws.send(garbage).await;
        let (texts, _) = ws.closed().await;
        assert!(texts.is_empty(), "{garbage:?} got {texts:?}");
        server.log.disconnect_of(&id).await;
    }
}

#[tokio::test]
async fn client_close_packet_is_a_transport_close() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send("1").await;
    ws.closed().await;
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::TransportClose);
}

#[tokio::test]
async fn websocket_close_frame_is_a_transport_close() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    tokio::time::timeout(common::WAIT, ws.stream.close(None))
        .await
        .expect("close in time")
        .expect("send a close frame");
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::TransportClose);
    common::eventually("the session to be gone", || server.gateway.session_count() == 0).await;
}

#[tokio::test]
async fn cut_connection_is_a_transport_close() {
    let server = Server::echo(config()).await;
    let (ws, id) = Ws::connected(server.addr, "40").await;
    ws.cut();
    let reason = server.log.disconnect_of(&id).await;
    assert!(
        matches!(reason, DisconnectReason::TransportClose | DisconnectReason::TransportError),
        "a cut connection is a transport close or error, got {reason:?}"
    );
}

#[tokio::test]
async fn server_disconnect_sends_disconnect_and_keeps_the_session() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    assert_eq!(ws.request(r#"42["kick"]"#).await, "41");
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::ServerNamespaceDisconnect);

    // The Engine.IO session is still there: the client may connect again.
    let again = connect_sid(&ws.request("40").await, "40");
    assert_ne!(again, id);
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]");
}

#[tokio::test]
async fn server_disconnect_with_close_ends_the_session() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send(r#"42["kick-close"]"#).await;
    let (texts, _) = ws.closed().await;
    assert_eq!(texts, vec!["41".to_owned()]);
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::ServerNamespaceDisconnect);
    common::eventually("the session to be gone", || server.gateway.session_count() == 0).await;
}

#[tokio::test]
async fn shutdown_closes_every_session() {
    let server = Server::echo(config()).await;
    let (mut ws, ws_id) = Ws::connected(server.addr, "40").await;
    let mut polling = common::Polling::open(server.addr).await;
    let polling_id = connect_sid(&polling.request("40").await, "40");

    let (addr, target) = (server.addr, polling.target());
    let pending = tokio::spawn(async move { common::http(addr, "GET", &target, &[], None).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    server.gateway.shutdown();
    ws.closed().await;
    let get = tokio::time::timeout(common::WAIT, pending).await.expect("GET answered").expect("GET task");
    assert_eq!((get.status, get.text().as_str()), (200, "1"), "a pending GET ends with a close packet");
    assert_eq!(server.log.disconnect_of(&ws_id).await, DisconnectReason::ServerShuttingDown);
    assert_eq!(server.log.disconnect_of(&polling_id).await, DisconnectReason::ServerShuttingDown);
    tokio::time::timeout(common::WAIT, server.gateway.drained()).await.expect("every session task ends");

    let refused = common::http(server.addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], None).await;
    assert_ne!(refused.status, 200, "no new session while shutting down");
}

#[tokio::test]
async fn websocket_ping_frames_are_answered() {
    let server = Server::echo(config()).await;
    let (mut ws, _) = Ws::connected(server.addr, "40").await;
    let ping = ws.stream.send(Message::Ping(b"hey".to_vec().into()));
    tokio::time::timeout(common::WAIT, ping).await.expect("ping in time").expect("send ping");
    let pong = tokio::time::timeout(common::WAIT, ws.stream.next()).await.expect("pong in time");
    match pong {
        Some(Ok(Message::Pong(data))) => assert_eq!(&data[..], b"hey"),
        other => panic!("expected a pong, got {other:?}"),
    }
    ws.send(r#"421["echo"]"#).await;
    assert_eq!(ws.recv().await, WsFrame::Text("431[]".into()));
}
