//! The Engine.IO v4 heartbeat: the server pings every `pingInterval` and
//! closes the session when no pong comes within `pingTimeout`.

mod common;

use std::time::{Duration, Instant};

use common::{Polling, Server, Ws, config, connect_sid, engine};
use switchboard_gateway::{Config, DisconnectReason};

const INTERVAL_MS: u64 = 100;
const TIMEOUT_MS: u64 = 100;

async fn server() -> Server {
    Server::echo(Config { engine: engine(INTERVAL_MS, TIMEOUT_MS, 1_000_000), ..config() }).await
}

// With pings every 100 ms, a ping may come before any answer on a loaded
// machine: these helpers answer such pings and return the next other packet.

async fn ws_request(ws: &mut Ws, packet: &str) -> String {
    ws.send(packet).await;
    loop {
        match ws.recv_text().await.as_str() {
            "2" => ws.send("3").await,
            other => return other.to_owned(),
        }
    }
}

/// A WebSocket session connected to `/`.
async fn ws_connected(server: &Server) -> (Ws, String) {
    let (mut ws, _) = Ws::open(server.addr).await;
    let reply = ws_request(&mut ws, "40").await;
    let id = connect_sid(&reply, "40");
    (ws, id)
}

async fn polling_request(session: &mut Polling, packet: &str) -> String {
    session.send(packet).await;
    loop {
        match session.recv().await.as_str() {
            "2" => session.send("3").await,
            other => return other.to_owned(),
        }
    }
}

#[tokio::test]
async fn websocket_pong_keeps_the_session() {
    let server = server().await;
    let (mut ws, id) = ws_connected(&server).await;
    let start = Instant::now();
    for round in 0..3 {
        assert_eq!(ws.recv_text().await, "2", "ping {round}");
        ws.send("3").await;
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(3 * INTERVAL_MS - 30), "pings come every pingInterval, took {elapsed:?}");
    assert_eq!(ws_request(&mut ws, r#"421["echo","alive"]"#).await, r#"431["alive"]"#);
    assert!(server.log.disconnects().is_empty(), "{:?} still connected", id);
}

#[tokio::test]
async fn websocket_without_pong_is_closed_as_ping_timeout() {
    let server = server().await;
    let opened = Instant::now();
    let (mut ws, id) = ws_connected(&server).await;
    assert_eq!(ws.recv_text().await, "2");
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    let lived = opened.elapsed();
    let allowance = Duration::from_millis(INTERVAL_MS + TIMEOUT_MS);
    assert!(lived >= allowance, "closed after {lived:?}, before pingInterval + pingTimeout");
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::PingTimeout);
}

#[tokio::test]
async fn polling_pong_keeps_the_session() {
    let server = server().await;
    let mut session = Polling::open(server.addr).await;
    connect_sid(&polling_request(&mut session, "40").await, "40");
    for round in 0..3 {
        assert_eq!(session.recv().await, "2", "ping {round}");
        session.send("3").await;
    }
    assert_eq!(polling_request(&mut session, r#"421["echo"]"#).await, "431[]");
    assert!(server.log.disconnects().is_empty());
}

#[tokio::test]
async fn polling_without_pong_is_closed_as_ping_timeout() {
    let server = server().await;
    let mut session = Polling::open(server.addr).await;
    let id = connect_sid(&polling_request(&mut session, "40").await, "40");
    assert_eq!(session.recv().await, "2");
    tokio::time::sleep(Duration::from_millis(TIMEOUT_MS + 100)).await;
    session.assert_gone().await;
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::PingTimeout);
}

/// engine.io-protocol suite, "closes the session upon ping timeout": a
/// client that never polls is timed out too.
#[tokio::test]
async fn polling_session_that_never_polls_times_out() {
    let server = server().await;
    let session = Polling::open(server.addr).await;
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + TIMEOUT_MS + 100)).await;
    session.assert_gone().await;
}

#[tokio::test]
async fn pending_get_ends_with_a_close_packet_on_ping_timeout() {
    let server = server().await;
    let mut session = Polling::open(server.addr).await;
    connect_sid(&polling_request(&mut session, "40").await, "40");
    assert_eq!(session.recv().await, "2");
    // The next GET waits for data; the ping timeout ends it.
    let response = session.get().await;
    assert_eq!((response.status, response.text().as_str()), (200, "1"));
    session.assert_gone().await;
}

/// In protocol v4 only the server pings; the reference server treats a ping
/// from the client as an error (`invalid heartbeat direction`) and closes the
/// session as a transport error.
#[tokio::test]
async fn ping_from_the_client_is_refused() {
    let server = Server::echo(config()).await;
    let (mut ws, id) = Ws::connected(server.addr, "40").await;
    ws.send("2").await;
    let (texts, _) = ws.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    assert_eq!(server.log.disconnect_of(&id).await, DisconnectReason::TransportError);
}
