//! Connection state recovery: a client whose connection was cut reconnects
//! with `{pid, offset}` and gets, before the CONNECT reply, every packet it
//! missed; the socket keeps its id and rooms and is `recovered`.

mod common;

use common::{Log, Server, TestHandler, Ws, connect_sid, json_after, last_arg, recovery_config, token};
use serde_json::json;
use switchboard_gateway::{DisconnectReason, Gateway, Target};

/// A gateway whose `/` sockets join room `r` on connect; tokens required.
async fn server() -> Server {
    let log = Log::default();
    let builder = Gateway::builder(recovery_config(), common::secret_auth())
        .namespace("/", TestHandler::joining(&log, "r"))
        .namespace("/admin", TestHandler::new(&log));
    Server::start(builder, log).await
}

/// The state a client keeps for recovery.
struct Kept {
    sid: String,
    pid: String,
    offset: String,
}

/// Connects as `user`, receives one broadcast to `r` (for its offset), then
/// has its connection cut; returns what the client kept.
async fn connect_receive_and_cut(server: &Server, user: &str) -> Kept {
    let (mut ws, _) = Ws::open(server.addr).await;
    let reply = ws.request(&format!(r#"40{{"token":"{}"}}"#, token(user))).await;
    let data = json_after(&reply, "40");
    let sid = data["sid"].as_str().expect("sid").to_owned();
    let pid = data["pid"].as_str().expect("pid with recovery on").to_owned();
    assert!(!server.log.connect_of(&sid).await);

    server.nsp("/").emit(&Target::room("r"), "news", &[json!(1)]);
    let news = ws.recv_text().await;
    let offset = last_arg(&news);
    assert_eq!(news, format!(r#"42["news",1,"{offset}"]"#), "the offset is the last argument");

    ws.cut();
    assert_eq!(server.log.disconnect_of(&sid).await, DisconnectReason::TransportClose);
    Kept { sid, pid, offset }
}

fn reconnect_packet(user: &str, pid: &str, offset: &str) -> String {
    format!(r#"40{{"token":"{}","pid":"{pid}","offset":"{offset}"}}"#, token(user))
}

#[tokio::test]
async fn missed_packets_are_replayed_before_the_connect_reply() {
    let server = server().await;
    let kept = connect_receive_and_cut(&server, "alice").await;

    let nsp = server.nsp("/");
    nsp.emit(&Target::room("r"), "news", &[json!(2)]);
    nsp.emit(&Target::room("elsewhere"), "not-for-you", &[]);
    nsp.emit(&Target::all(), "everyone", &[json!("x")]);
    nsp.emit(&Target::room(kept.sid.as_str()), "direct", &[json!({"d": 4})]);
    nsp.emit(&Target::room("r").except(kept.sid.as_str()), "excluded", &[]);
    server.nsp("/admin").emit(&Target::all(), "other-namespace", &[]);

    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send(&reconnect_packet("alice", &kept.pid, &kept.offset)).await;
    let mut replayed = Vec::new();
    let reply = loop {
        let packet = ws.recv_text().await;
        if packet.starts_with("40") {
            break packet;
        }
        replayed.push(common::without_offset(&packet));
    };
    assert_eq!(replayed, vec![r#"42["news",2]"#, r#"42["everyone","x"]"#, r#"42["direct",{"d":4}]"#]);
    assert_eq!(json_after(&reply, "40"), json!({"sid": kept.sid, "pid": kept.pid}), "same id, same pid");
    assert!(server.log.nth_connect_of(&kept.sid, 1).await, "socket.recovered() is true");

    // The recovered socket is back in its room.
    nsp.emit(&Target::room("r"), "news", &[json!(5)]);
    assert_eq!(common::without_offset(&ws.recv_text().await), r#"42["news",5]"#);
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]");
}

#[tokio::test]
async fn nothing_missed_still_recovers() {
    let server = server().await;
    let kept = connect_receive_and_cut(&server, "alice").await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let reply = ws.request(&reconnect_packet("alice", &kept.pid, &kept.offset)).await;
    assert_eq!(json_after(&reply, "40"), json!({"sid": kept.sid, "pid": kept.pid}));
    assert!(server.log.nth_connect_of(&kept.sid, 1).await);
}

#[tokio::test]
async fn unknown_offset_is_not_recovered() {
    let server = server().await;
    let kept = connect_receive_and_cut(&server, "alice").await;
    server.nsp("/").emit(&Target::room("r"), "news", &[json!(2)]);

    let (mut ws, _) = Ws::open(server.addr).await;
    let reply = ws.request(&reconnect_packet("alice", &kept.pid, "999999999")).await;
    let data = json_after(&reply, "40");
    let (sid, pid) = (data["sid"].as_str().expect("sid"), data["pid"].as_str().expect("pid"));
    assert_ne!(sid, kept.sid, "a new socket");
    assert_ne!(pid, kept.pid);
    assert!(!server.log.connect_of(sid).await, "not recovered");
}

#[tokio::test]
async fn unknown_private_id_is_not_recovered() {
    let server = server().await;
    let kept = connect_receive_and_cut(&server, "alice").await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let reply = ws.request(&reconnect_packet("alice", "AAAAAAAAAAAAAAAAAAAA", &kept.offset)).await;
    let sid = connect_sid(&reply, "40");
    assert_ne!(sid, kept.sid);
    assert!(!server.log.connect_of(&sid).await);
}

#[tokio::test]
async fn another_user_cannot_recover_a_session() {
    let server = server().await;
    let kept = connect_receive_and_cut(&server, "alice").await;
    server.nsp("/").emit(&Target::room(kept.sid.as_str()), "secret", &[json!("for alice")]);

    let (mut ws, _) = Ws::open(server.addr).await;
    let reply = ws.request(&reconnect_packet("mallory", &kept.pid, &kept.offset)).await;
    assert!(reply.starts_with("40{"), "mallory connects as herself, nothing replayed first: {reply}");
    let sid = connect_sid(&reply, "40");
    assert_ne!(sid, kept.sid);
    assert!(!server.log.connect_of(&sid).await);
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]", "nothing of alice's reaches mallory");
}

#[tokio::test]
async fn a_client_namespace_disconnect_is_not_recoverable() {
    let server = server().await;
    let (mut ws, _) = Ws::open(server.addr).await;
    let data = json_after(&ws.request(&format!(r#"40{{"token":"{}"}}"#, token("alice"))).await, "40");
    let (sid, pid) = (data["sid"].as_str().expect("sid").to_owned(), data["pid"].as_str().expect("pid").to_owned());
    server.nsp("/").emit(&Target::room("r"), "news", &[json!(1)]);
    let offset = last_arg(&ws.recv_text().await);
    ws.send("41").await;
    assert_eq!(server.log.disconnect_of(&sid).await, DisconnectReason::ClientNamespaceDisconnect);

    let reply = ws.request(&reconnect_packet("alice", &pid, &offset)).await;
    let again = connect_sid(&reply, "40");
    assert_ne!(again, sid);
    assert!(!server.log.connect_of(&again).await);
}

#[tokio::test]
async fn a_session_is_recovered_once() {
    let server = server().await;
    let kept = connect_receive_and_cut(&server, "alice").await;
    let (mut first, _) = Ws::open(server.addr).await;
    let reply = first.request(&reconnect_packet("alice", &kept.pid, &kept.offset)).await;
    assert_eq!(connect_sid(&reply, "40"), kept.sid);

    let (mut second, _) = Ws::open(server.addr).await;
    let reply = second.request(&reconnect_packet("alice", &kept.pid, &kept.offset)).await;
    assert_ne!(connect_sid(&reply, "40"), kept.sid, "the session was taken already");
}
