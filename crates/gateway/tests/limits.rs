//! Limits (SPEC.md section 6): each one refused with a clear outcome.

mod common;

use std::time::Duration;

use common::{Record, Server, Ws, config, connect_sid, secret_auth, token};
use serde_json::json;
use switchboard_gateway::{Config, DisconnectReason, Limits, Target};
use tokio::net::TcpSocket;
use tokio_tungstenite::MaybeTlsStream;

fn limits(change: impl FnOnce(&mut Limits)) -> Config {
    let mut config = config();
    change(&mut config.limits);
    config
}

#[tokio::test]
async fn event_rate_limit_answers_acks_with_an_error() {
    let server = Server::echo(limits(|l| {
        l.event_rate = 1.0;
        l.event_burst = 2.0;
    }))
    .await;
    let (mut ws, _) = Ws::connected(server.addr, "40").await;
    ws.send_batch(&[r#"421["echo",1]"#, r#"422["echo",2]"#, r#"423["echo",3]"#]).await;
    assert_eq!(ws.recv_text().await, "431[1]");
    assert_eq!(ws.recv_text().await, "432[2]");
    assert_eq!(ws.recv_text().await, r#"433[{"error":"rate limit exceeded"}]"#);
    let handled = server.log.records().iter().filter(|r| matches!(r, Record::Event { .. })).count();
    assert_eq!(handled, 2, "the refused event never reaches the handler");

    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ws.request(r#"424["echo",4]"#).await, "434[4]");
}

#[tokio::test]
async fn rate_limited_event_without_ack_is_dropped_with_a_notice() {
    let server = Server::echo(limits(|l| {
        l.event_rate = 0.5;
        l.event_burst = 1.0;
    }))
    .await;
    let (mut ws, _) = Ws::connected(server.addr, "40").await;
    ws.send_batch(&[r#"42["echo","a"]"#, r#"42["echo","b"]"#, r#"42["echo","c"]"#]).await;
    assert_eq!(ws.recv_text().await, r#"42["echo","a"]"#);
    let notice = ws.recv_text().await;
    assert_eq!(common::json_after(&notice, "42"), json!(["error", {"event": "echo", "error": "rate limit exceeded"}]));
    // At most one notice a second; the session stays.
    assert!(server.log.disconnects().is_empty());
}

#[tokio::test]
async fn too_many_attachments_close_the_session() {
    let server = Server::echo(limits(|l| l.max_attachments = 1)).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;

    ws.send(r#"451-1["echo",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(b"ok").await;
    assert_eq!(ws.recv_text().await, r#"461-1[{"_placeholder":true,"num":0}]"#);
    assert_eq!(ws.recv_binary().await, b"ok".to_vec());

    ws.send(r#"452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#).await;
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    server.log.disconnect_of(&id).await;
}

#[tokio::test]
async fn sockets_per_user_are_limited() {
    let server = Server::with_auth(limits(|l| l.max_sockets_per_user = 1), secret_auth()).await;
    let connect = format!(r#"40{{"token":"{}"}}"#, token("alice"));
    let (mut first, first_id) = Ws::connected(server.addr, &connect).await;

    let (mut second, _) = Ws::open(server.addr).await;
    assert_eq!(second.request(&connect).await, r#"44{"message":"Too many connections"}"#);
    // Another user is not affected.
    connect_sid(&second.request(&format!(r#"40{{"token":"{}"}}"#, token("bob"))).await, "40");

    first.send("41").await;
    server.log.disconnect_of(&first_id).await;
    let (mut third, _) = Ws::open(server.addr).await;
    connect_sid(&third.request(&connect).await, "40");
}

#[tokio::test]
async fn room_limits_are_refused_in_the_ack() {
    let server = Server::echo(limits(|l| {
        l.max_rooms_per_socket = 1;
        l.max_room_name_len = 5;
    }))
    .await;
    let (mut ws, _) = Ws::connected(server.addr, "40").await;
    assert_eq!(ws.request(r#"421["join","sixsix"]"#).await, r#"431[{"error":"room name too long"}]"#);
    assert_eq!(ws.request(r#"422["join","five5"]"#).await, "432[]");
    assert_eq!(ws.request(r#"423["join","b"]"#).await, r#"433[{"error":"too many rooms"}]"#);
    assert_eq!(ws.request(r#"424["join","five5"]"#).await, "434[]", "joining a room again is no new room");
}

/// A WebSocket client whose kernel receive buffer is as small as allowed.
async fn client_with_small_buffer(server: &Server) -> Ws {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = tokio::time::timeout(common::WAIT, socket.connect(server.addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let handshake = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp));
    let (stream, _) =
        tokio::time::timeout(common::WAIT, handshake).await.expect("handshake in time").expect("handshake");
    Ws { stream }
}

/// The WebSocket writer is blocked on a full TCP buffer here, which is the
/// case that matters: a client that reads nothing at all.
#[tokio::test]
async fn slow_reader_is_cut_off() {
    let server = Server::echo(limits(|l| l.max_pending_bytes = 64 * 1024)).await;
    let mut slow = client_with_small_buffer(&server).await;
    assert!(slow.recv_text().await.starts_with("0{"));
    let slow_id = connect_sid(&slow.request("40").await, "40");
    let (mut other, _) = Ws::connected(server.addr, "40").await;

    // The slow client stops reading; the server keeps emitting to it. Each
    // emit is followed by a yield so that the session's writer drains the
    // queue into the kernel: the queue only fills once the TCP buffers are
    // full and the writer is blocked.
    let nsp = server.nsp("/");
    // 8 MiB in all: more than the kernel buffers of a loopback connection.
    let big = json!("x".repeat(16 * 1024));
    for _ in 0..512 {
        nsp.emit(&Target::room(slow_id.as_str()), "big", std::slice::from_ref(&big));
        tokio::task::yield_now().await;
    }
    assert_eq!(server.log.disconnect_of(&slow_id).await, DisconnectReason::SlowReader);
    assert_eq!(other.request(r#"421["echo","still here"]"#).await, r#"431["still here"]"#);
    common::eventually("the slow session to be gone", || server.gateway.session_count() == 1).await;
    drop(slow);
}
