//! The upgrade from long-polling to WebSocket: probe (`2probe`/`3probe`), the
//! noop (`6`) that ends the pending GET, `5`, then WebSocket only.

mod common;

use std::time::Duration;

use common::{Polling, Server, Ws, WsFrame, config, connect_sid, http};
use serde_json::json;
use switchboard_gateway::Target;

const BAD_REQUEST: &str = r#"{"code":3,"message":"Bad request"}"#;

/// Asserts the answer of a GET during the probe: the noop `6`. (The server
/// re-checks every 100 ms; on a starved machine two checks may both see the
/// GET still pending, and two noops are as good as one to a client.)
fn assert_noop(body: &str) {
    assert!(!body.is_empty() && body.split(common::RS).all(|p| p == "6"), "expected the noop 6, got {body:?}");
}

/// A polling session connected to `/`: the session and the socket id.
async fn polling_socket(server: &Server) -> (Polling, String) {
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&session.request("40").await, "40");
    (session, id)
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let server = Server::echo(config()).await;
    let (session, id) = polling_socket(&server).await;

    let addr = server.addr;
    let target = session.target();
    let pending = tokio::spawn(async move { http(addr, "GET", &target, &[], None).await });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut ws = Ws::upgrade(server.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    let pending = tokio::time::timeout(common::WAIT, pending).await.expect("GET answered").expect("GET task");
    assert_eq!(pending.status, 200);
    assert_noop(&pending.text());

    ws.send("5").await;
    assert_eq!(ws.request(r#"421["echo","over ws"]"#).await, r#"431["over ws"]"#);
    server.nsp("/").emit(&Target::room(id.as_str()), "pushed", &[json!(1)]);
    assert_eq!(ws.recv_text().await, r#"42["pushed",1]"#);

    // engine.io-protocol suite, "ignores HTTP requests with same sid after upgrade".
    let get = session.get().await;
    assert_eq!((get.status, get.text().as_str()), (400, BAD_REQUEST));
    let post = session.post(r#"42["echo"]"#).await;
    assert_eq!((post.status, post.text().as_str()), (400, BAD_REQUEST));
    assert_eq!(ws.request(r#"422["echo","still"]"#).await, r#"432["still"]"#);
    assert!(server.log.disconnects().is_empty(), "the socket lived through the upgrade");
}

/// A fast client sends `5` and its first message together (one TCP read).
#[tokio::test]
async fn upgrade_packet_and_first_message_in_one_read() {
    let server = Server::echo(config()).await;
    let (session, _) = polling_socket(&server).await;
    let mut ws = Ws::upgrade(server.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    assert_noop(&session.get().await.text());
    ws.send_batch(&["5", r#"421["echo","first"]"#, r#"422["echo","second"]"#]).await;
    assert_eq!(ws.recv_text().await, r#"431["first"]"#);
    assert_eq!(ws.recv_text().await, r#"432["second"]"#);
}

#[tokio::test]
async fn probe_without_a_pending_get_answers_the_next_get_with_a_noop() {
    let server = Server::echo(config()).await;
    let (session, _) = polling_socket(&server).await;
    let mut ws = Ws::upgrade(server.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    let get = session.get().await;
    assert_eq!(get.status, 200);
    assert_noop(&get.text());
    ws.send("5").await;
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]");
}

#[tokio::test]
async fn packets_queued_during_the_upgrade_arrive_over_websocket() {
    let server = Server::echo(config()).await;
    let (session, id) = polling_socket(&server).await;
    let mut ws = Ws::upgrade(server.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    assert_noop(&session.get().await.text());

    // The client has paused polling; the server keeps emitting.
    let nsp = server.nsp("/");
    for n in 1..=3 {
        nsp.emit(&Target::room(id.as_str()), "queued", &[json!(n)]);
    }
    ws.send("5").await;
    for n in 1..=3 {
        assert_eq!(ws.recv_text().await, format!(r#"42["queued",{n}]"#));
    }
}

#[tokio::test]
async fn packets_queued_before_the_probe_are_not_lost() {
    let server = Server::echo(config()).await;
    let (session, id) = polling_socket(&server).await;
    server.nsp("/").emit(&Target::room(id.as_str()), "early", &[]);

    let mut ws = Ws::upgrade(server.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    // Whatever was queued goes out on one transport or the other, once.
    let get = session.get().await.text();
    let mut seen: Vec<String> = get.split(common::RS).filter(|p| *p != "6").map(str::to_owned).collect();
    ws.send("5").await;
    ws.send(r#"421["echo"]"#).await;
    loop {
        let text = ws.recv_text().await;
        if text == "431[]" {
            break;
        }
        seen.push(text);
    }
    assert_eq!(seen, vec![r#"42["early"]"#.to_owned()]);
}

#[tokio::test]
async fn second_websocket_for_an_upgraded_session_is_refused() {
    let server = Server::echo(config()).await;
    let (session, _) = polling_socket(&server).await;
    let mut ws = Ws::upgrade(server.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    ws.send("5").await;

    match common::ws::connect(server.addr, &format!("&sid={}", session.sid), &[]).await {
        Err(_) => {}
        Ok(stream) => {
            let mut other = Ws { stream };
            assert!(matches!(other.recv().await, WsFrame::Closed(_)), "a second upgrade is closed at once");
        }
    }
    assert_eq!(ws.request(r#"421["echo","first"]"#).await, r#"431["first"]"#);
}

#[tokio::test]
async fn websocket_dropped_before_the_probe_leaves_the_session_on_polling() {
    let server = Server::echo(config()).await;
    let (mut session, id) = polling_socket(&server).await;
    let ws = Ws::upgrade(server.addr, &session.sid).await;
    ws.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(session.request(r#"421["echo","still polling"]"#).await, r#"431["still polling"]"#);
    assert!(server.log.disconnects().iter().all(|(gone, _)| *gone != id));
}

/// `Socket._maybeUpgrade` in the reference server: when the probing
/// transport closes before `5`, the upgrade is cleaned up and the session
/// goes on over polling.
#[tokio::test]
async fn websocket_dropped_after_the_probe_leaves_the_session_on_polling() {
    let server = Server::echo(config()).await;
    let (mut session, id) = polling_socket(&server).await;
    let mut ws = Ws::upgrade(server.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    assert_noop(&session.get().await.text());
    ws.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(session.request(r#"421["echo","still polling"]"#).await, r#"431["still polling"]"#);
    assert!(server.log.disconnects().iter().all(|(gone, _)| *gone != id));
}

#[tokio::test]
async fn upgrade_of_a_websocket_session_is_refused() {
    let server = Server::echo(config()).await;
    let (_ws, open) = Ws::open(server.addr).await;
    let sid = common::json_after(&open, "0")["sid"].as_str().expect("sid").to_owned();
    let result = common::ws::connect(server.addr, &format!("&sid={sid}"), &[]).await;
    if let Ok(stream) = result {
        let mut other = Ws { stream };
        assert!(matches!(other.recv().await, WsFrame::Closed(_)));
    }
    // Polling requests for a WebSocket session are a transport mismatch.
    let get = http(server.addr, "GET", &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"), &[], None).await;
    assert_eq!((get.status, get.text().as_str()), (400, BAD_REQUEST));
}
