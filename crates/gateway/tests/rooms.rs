//! Rooms and broadcasts through `Namespace::emit`: who receives and who
//! does not.
//!
//! "Does not receive" is checked without sleeping: after a broadcast, the
//! client asks for an echo acknowledgement; since frames of one session go
//! out in the order they were queued, the ack must be the very next packet.

mod common;

use common::{Server, Ws, config, connect_sid};
use serde_json::json;
use switchboard_gateway::Target;

/// A client connected to `/` with its socket id.
async fn client(server: &Server) -> (Ws, String) {
    Ws::connected(server.addr, "40").await
}

/// Asserts that nothing was queued for `ws` before this call.
async fn assert_nothing_received(ws: &mut Ws) {
    assert_eq!(ws.request(r#"4299["echo"]"#).await, "4399[]", "an unexpected packet arrived first");
}

async fn join(ws: &mut Ws, room: &str) {
    assert_eq!(ws.request(&format!(r#"421["join","{room}"]"#)).await, "431[]");
}

#[tokio::test]
async fn room_members_receive_and_others_do_not() {
    let server = Server::echo(config()).await;
    let (mut a, _) = client(&server).await;
    let (mut b, _) = client(&server).await;
    let (mut c, _) = client(&server).await;
    join(&mut a, "r").await;
    join(&mut b, "r").await;

    // The sender is a member, so it gets the broadcast too (then its ack).
    a.send(r#"422["to","r",{"text":"hi"}]"#).await;
    assert_eq!(a.recv_text().await, r#"42["msg",{"text":"hi"}]"#);
    assert_eq!(a.recv_text().await, "432[2]", "queued for two sockets");
    assert_eq!(b.recv_text().await, r#"42["msg",{"text":"hi"}]"#);
    assert_nothing_received(&mut c).await;
    assert_nothing_received(&mut b).await;
}

#[tokio::test]
async fn broadcast_from_a_non_member_reaches_the_members() {
    let server = Server::echo(config()).await;
    let (mut a, _) = client(&server).await;
    let (mut b, _) = client(&server).await;
    join(&mut b, "r").await;
    assert_eq!(a.request(r#"421["to","r","x"]"#).await, "431[1]");
    assert_eq!(b.recv_text().await, r#"42["msg","x"]"#);
}

#[tokio::test]
async fn except_leaves_sockets_out() {
    let server = Server::echo(config()).await;
    let (mut a, _) = client(&server).await;
    let (mut b, b_id) = client(&server).await;
    let (mut c, _) = client(&server).await;
    for ws in [&mut a, &mut b, &mut c] {
        join(ws, "r").await;
    }
    join(&mut c, "quiet").await;

    assert_eq!(a.request(&format!(r#"421["to","r",1,"{b_id}"]"#)).await, r#"42["msg",1]"#);
    assert_eq!(a.recv_text().await, "431[2]");
    assert_eq!(c.recv_text().await, r#"42["msg",1]"#);
    assert_nothing_received(&mut b).await;

    // A room can be excluded too.
    assert_eq!(a.request(r#"422["to","r",2,"quiet"]"#).await, r#"42["msg",2]"#);
    assert_eq!(a.recv_text().await, "432[2]");
    assert_eq!(b.recv_text().await, r#"42["msg",2]"#);
    assert_nothing_received(&mut c).await;
}

#[tokio::test]
async fn a_socket_id_is_a_room() {
    let server = Server::echo(config()).await;
    let (mut a, _) = client(&server).await;
    let (mut b, b_id) = client(&server).await;
    let (mut c, _) = client(&server).await;
    assert_eq!(a.request(&format!(r#"421["to","{b_id}","direct"]"#)).await, "431[1]");
    assert_eq!(b.recv_text().await, r#"42["msg","direct"]"#);
    assert_nothing_received(&mut c).await;
    assert_eq!(server.nsp("/").room_members(&b_id).len(), 1);
}

#[tokio::test]
async fn leaving_a_room_stops_delivery() {
    let server = Server::echo(config()).await;
    let (mut a, _) = client(&server).await;
    let (mut b, _) = client(&server).await;
    join(&mut a, "r").await;
    join(&mut b, "r").await;
    assert_eq!(b.request(r#"422["leave","r"]"#).await, "432[]");
    assert_eq!(server.nsp("/").room_members("r").len(), 1);
    assert_eq!(a.request(r#"423["to","r","after"]"#).await, r#"42["msg","after"]"#);
    assert_nothing_received(&mut b).await;
}

#[tokio::test]
async fn a_disconnected_socket_leaves_its_rooms() {
    let server = Server::echo(config()).await;
    let (mut a, _) = client(&server).await;
    let (mut b, b_id) = client(&server).await;
    join(&mut a, "r").await;
    join(&mut b, "r").await;
    b.send("41").await;
    server.log.disconnect_of(&b_id).await;
    assert_eq!(server.nsp("/").room_members("r").len(), 1);
    assert_eq!(a.request(r#"422["to","r",0]"#).await, r#"42["msg",0]"#);
    assert_eq!(a.recv_text().await, "432[1]");
}

#[tokio::test]
async fn broadcast_to_a_whole_namespace() {
    let server = Server::echo(config()).await;
    let (mut a, _) = client(&server).await;
    let (mut b, _) = client(&server).await;
    let (mut admin_only, _) = Ws::open(server.addr).await;
    connect_sid(&admin_only.request("40/admin,").await, "40/admin,");

    assert_eq!(server.nsp("/").emit(&Target::all(), "all", &[json!("x")]), 2);
    assert_eq!(a.recv_text().await, r#"42["all","x"]"#);
    assert_eq!(b.recv_text().await, r#"42["all","x"]"#);
    assert_eq!(admin_only.request(r#"42/admin,1["echo"]"#).await, "43/admin,1[]", "other namespaces hear nothing");

    assert_eq!(server.nsp("/admin").emit(&Target::all(), "all", &[]), 1);
    assert_eq!(admin_only.recv_text().await, r#"42/admin,["all"]"#);
    assert_nothing_received(&mut a).await;
}

#[tokio::test]
async fn rooms_of_different_namespaces_are_separate() {
    let server = Server::echo(config()).await;
    let (mut a, _) = client(&server).await;
    let (mut b, _) = Ws::open(server.addr).await;
    connect_sid(&b.request("40/admin,").await, "40/admin,");
    join(&mut a, "r").await;
    assert_eq!(b.request(r#"42/admin,1["join","r"]"#).await, "43/admin,1[]");
    assert_eq!(a.request(r#"422["to","r","root"]"#).await, r#"42["msg","root"]"#);
    assert_eq!(a.recv_text().await, "432[1]");
    assert_eq!(b.request(r#"42/admin,2["echo"]"#).await, "43/admin,2[]");
}
