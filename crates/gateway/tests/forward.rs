//! No sticky sessions: two gateways of one cluster (one secret, each knowing
//! the other's address). A session opened on one is reachable through the
//! other: polling requests are forwarded, the WebSocket upgrade is proxied.
//! Sids that are forged, signed with another secret, or of a gateway that
//! is not live get the reference server's unknown-session answer.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{Log, Polling, Server, TestHandler, Ws, WsFrame, config, connect_sid, http};
use serde_json::json;
use switchboard_auth::Authenticator;
use switchboard_gateway::{DisconnectReason, Gateway, Peers, SidSigner, Target};
use tokio_tungstenite::tungstenite;

const CLUSTER_SECRET: &[u8] = b"forward-tests-cluster-secret";
const UNKNOWN: &str = r#"{"code":1,"message":"Session ID unknown"}"#;

/// A fixed map of gateway ids to addresses, filled once the servers listen.
#[derive(Debug, Default)]
struct StaticPeers(Mutex<HashMap<String, String>>);

impl StaticPeers {
    fn insert(&self, id: &str, addr: impl ToString) {
        self.0.lock().expect("peers lock").insert(id.to_owned(), addr.to_string());
    }
}

impl Peers for StaticPeers {
    fn address(&self, gateway_id: &str) -> Option<String> {
        self.0.lock().expect("peers lock").get(gateway_id).cloned()
    }
}

/// Gateways `gw-a` and `gw-b`, each in the other's peer map.
struct Cluster {
    a: Server,
    b: Server,
    peers: Arc<StaticPeers>,
}

async fn node(id: &str, peers: Arc<StaticPeers>) -> Server {
    let log = Log::default();
    let builder = Gateway::builder(config(), Authenticator::anonymous())
        .namespace("/", TestHandler::new(&log))
        .cluster(SidSigner::new(id, CLUSTER_SECRET), peers);
    Server::start(builder, log).await
}

async fn cluster() -> Cluster {
    let peers = Arc::new(StaticPeers::default());
    let a = node("gw-a", peers.clone()).await;
    let b = node("gw-b", peers.clone()).await;
    peers.insert("gw-a", a.addr);
    peers.insert("gw-b", b.addr);
    Cluster { a, b, peers }
}

/// The target of a polling request for `sid`.
fn target(sid: &str) -> String {
    format!("/socket.io/?EIO=4&transport=polling&sid={sid}")
}

/// Asserts the unknown-session answer to a GET and a POST for `sid` at `addr`.
async fn assert_unknown(addr: SocketAddr, sid: &str) {
    let get = http(addr, "GET", &target(sid), &[], None).await;
    assert_eq!((get.status, get.text().as_str()), (400, UNKNOWN), "GET {sid} at {addr}");
    let post = http(addr, "POST", &target(sid), &[], Some(b"40")).await;
    assert_eq!((post.status, post.text().as_str()), (400, UNKNOWN), "POST {sid} at {addr}");
}

/// Asserts that a WebSocket upgrade for `sid` at `addr` is refused with the
/// unknown-session answer.
async fn assert_upgrade_refused(addr: SocketAddr, sid: &str) {
    match common::ws::connect(addr, &format!("&sid={sid}"), &[]).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            assert_eq!(body, UNKNOWN);
        }
        Err(other) => panic!("upgrade of {sid} at {addr}: {other}"),
        Ok(_) => panic!("upgrade of {sid} at {addr} was accepted"),
    }
}

#[tokio::test]
async fn sids_name_their_gateway_and_plain_gateways_keep_plain_sids() {
    let cluster = cluster().await;
    let session = Polling::open(cluster.a.addr).await;
    let checker = SidSigner::new("gw-b", CLUSTER_SECRET);
    assert_eq!(checker.owner(&session.sid), Some("gw-a"), "{}", session.sid);

    let plain = Server::echo(config()).await;
    let session = Polling::open(plain.addr).await;
    assert!(common::is_base64id(&session.sid), "{}", session.sid);
}

#[tokio::test]
async fn polling_requests_through_another_gateway_reach_the_session() {
    let cluster = cluster().await;
    let mut session = Polling::open(cluster.a.addr).await;
    session.addr = cluster.b.addr;

    let id = connect_sid(&session.request("40").await, "40");
    assert!(!cluster.a.log.connect_of(&id).await, "connected on A");
    session.send(r#"42["echo","through b"]"#).await;
    assert_eq!(session.recv().await, r#"42["echo","through b"]"#);
    assert_eq!(session.request(r#"421["echo",{"n":1}]"#).await, r#"431[{"n":1}]"#);

    // A body larger than one read goes through whole, both ways.
    let big = "x".repeat(200_000);
    assert_eq!(session.request(&format!(r#"422["echo","{big}"]"#)).await, format!(r#"432["{big}"]"#));

    // A server push reaches the GET that B passes on.
    cluster.a.nsp("/").emit(&Target::room(id.as_str()), "pushed", &[json!(1)]);
    assert_eq!(session.recv().await, r#"42["pushed",1]"#);

    assert_eq!((cluster.a.gateway.session_count(), cluster.b.gateway.session_count()), (1, 0));

    // The client's close, through B, ends the session on A.
    session.send("1").await;
    session.assert_gone().await;
    assert_eq!(cluster.a.log.disconnect_of(&id).await, DisconnectReason::TransportClose);
    common::eventually("A has no session", || cluster.a.gateway.session_count() == 0).await;
}

#[tokio::test]
async fn a_websocket_upgrade_through_another_gateway_is_proxied() {
    let cluster = cluster().await;
    let mut session = Polling::open(cluster.a.addr).await;
    session.addr = cluster.b.addr;
    let id = connect_sid(&session.request("40").await, "40");

    let mut ws = Ws::upgrade(cluster.b.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    let noop = session.get().await;
    // The noop `6` (twice, on a starved machine: see tests/upgrade.rs).
    let body = noop.text();
    assert!(noop.status == 200 && body.split(common::RS).all(|p| p == "6"), "expected the noop, got {body:?}");
    ws.send("5").await;
    assert_eq!(ws.request(r#"421["echo","over ws"]"#).await, r#"431["over ws"]"#);
    cluster.a.nsp("/").emit(&Target::room(id.as_str()), "pushed", &[json!(2)]);
    assert_eq!(ws.recv_text().await, r#"42["pushed",2]"#);
    let event = r#"451-["echo",{"_placeholder":true,"num":0}]"#;
    ws.send(event).await;
    ws.send_binary(&[1, 2, 3]).await;
    assert_eq!(ws.recv_text().await, event);
    assert_eq!(ws.recv_binary().await, [1, 2, 3]);

    // Polling is over for the upgraded session, through B as on A.
    let get = session.get().await;
    assert_eq!((get.status, get.text().as_str()), (400, r#"{"code":3,"message":"Bad request"}"#));
    assert_eq!(ws.request(r#"422["echo","still"]"#).await, r#"432["still"]"#);
    assert_eq!((cluster.a.gateway.session_count(), cluster.b.gateway.session_count()), (1, 0));

    // Cutting the client's connection to B ends the session on A.
    ws.cut();
    assert_eq!(cluster.a.log.disconnect_of(&id).await, DisconnectReason::TransportClose);
    common::eventually("A has no session", || cluster.a.gateway.session_count() == 0).await;
}

#[tokio::test]
async fn the_owner_closing_a_proxied_websocket_closes_it_for_the_client() {
    let cluster = cluster().await;
    let mut session = Polling::open(cluster.a.addr).await;
    let id = connect_sid(&session.request("40").await, "40");
    let mut ws = Ws::upgrade(cluster.b.addr, &session.sid).await;
    assert_eq!(ws.request("2probe").await, "3probe");
    ws.send("5").await;
    assert_eq!(ws.request(r#"421["echo"]"#).await, "431[]");

    ws.send(r#"42["kick-close"]"#).await;
    let (texts, _) = ws.closed().await;
    assert_eq!(texts, ["41"], "the DISCONNECT, then the close");
    assert_eq!(cluster.a.log.disconnect_of(&id).await, DisconnectReason::ServerNamespaceDisconnect);
}

#[tokio::test]
async fn forged_sids_are_unknown_on_every_gateway() {
    let cluster = cluster().await;
    let mut session = Polling::open(cluster.a.addr).await;
    let genuine = session.sid.clone();

    // One character of the random part changed: the signature no longer fits.
    let (gateway, rest) = genuine.split_once('.').expect("signed sid");
    let flipped = if rest.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{gateway}.{flipped}{}", &rest[1..]);
    // A well-formed sid of gw-a, signed with another secret.
    let other_secret = SidSigner::new("gw-a", b"not the cluster secret").mint();
    for sid in [&tampered, &other_secret] {
        assert_unknown(cluster.a.addr, sid).await;
        assert_unknown(cluster.b.addr, sid).await;
        assert_upgrade_refused(cluster.b.addr, sid).await;
    }

    // The genuine session is untouched.
    session.addr = cluster.b.addr;
    let id = connect_sid(&session.request("40").await, "40");
    assert!(!cluster.a.log.connect_of(&id).await);
}

#[tokio::test]
async fn sids_of_gateways_that_cannot_be_reached_are_unknown() {
    let cluster = cluster().await;
    // gw-c is not in the peer map (not live).
    let not_live = SidSigner::new("gw-c", CLUSTER_SECRET).mint();
    assert_unknown(cluster.a.addr, &not_live).await;
    assert_unknown(cluster.b.addr, &not_live).await;
    assert_upgrade_refused(cluster.b.addr, &not_live).await;

    // gw-d is in the map, but nothing listens at its address.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = gone.local_addr().expect("address");
    drop(gone);
    cluster.peers.insert("gw-d", dead);
    let unreachable = SidSigner::new("gw-d", CLUSTER_SECRET).mint();
    assert_unknown(cluster.b.addr, &unreachable).await;
    assert_upgrade_refused(cluster.b.addr, &unreachable).await;

    // A gateway's own sid that it no longer holds is not sent anywhere.
    let own = SidSigner::new("gw-b", CLUSTER_SECRET).mint();
    assert_unknown(cluster.b.addr, &own).await;
}

#[tokio::test]
async fn a_forwarded_request_is_not_forwarded_again() {
    let cluster = cluster().await;
    let mut session = Polling::open(cluster.a.addr).await;
    session.send("40").await;

    // A GET that claims to come from another gateway: B answers it itself.
    let forwarded = [("x-switchboard-forwarded", "gw-x")];
    let get = http(cluster.b.addr, "GET", &session.target(), &forwarded, None).await;
    assert_eq!((get.status, get.text().as_str()), (400, UNKNOWN));
    match common::ws::connect(cluster.b.addr, &format!("&sid={}", session.sid), &forwarded).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("a forwarded upgrade was not refused: {other:?}"),
    }

    // The CONNECT reply is still queued on A: nothing reached it.
    let id = connect_sid(&session.recv().await, "40");
    assert!(!cluster.a.log.connect_of(&id).await);
    assert_eq!(cluster.b.gateway.session_count(), 0);
}

#[tokio::test]
async fn a_websocket_session_opened_through_either_gateway_is_local() {
    let cluster = cluster().await;
    let (mut ws, open) = Ws::open(cluster.b.addr).await;
    let sid = common::json_after(&open, "0")["sid"].as_str().expect("sid").to_owned();
    assert_eq!(SidSigner::new("gw-a", CLUSTER_SECRET).owner(&sid), Some("gw-b"));
    assert_eq!(ws.request("40").await.get(..4), Some("40{\""));
    assert_eq!((cluster.a.gateway.session_count(), cluster.b.gateway.session_count()), (0, 1));
    assert!(matches!(ws.request(r#"421["echo"]"#).await.as_str(), "431[]"));
    ws.send("1").await;
    assert!(matches!(ws.recv().await, WsFrame::Closed(_)));
}

/// Counts `switchboard_gateway_forwarded_requests_total` by its labels
/// (installed for the test's thread: the test runtime runs every task there).
#[derive(Debug, Default)]
struct Forwards(Mutex<HashMap<(String, String), Arc<AtomicU64>>>);

impl Forwards {
    fn get(&self, kind: &str, outcome: &str) -> u64 {
        let counters = self.0.lock().expect("counters lock");
        counters.get(&(kind.to_owned(), outcome.to_owned())).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl metrics::Recorder for Forwards {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() != "switchboard_gateway_forwarded_requests_total" {
            return metrics::Counter::noop();
        }
        let label =
            |name: &str| key.labels().find(|l| l.key() == name).map(|l| l.value().to_owned()).unwrap_or_default();
        let mut counters = self.0.lock().expect("counters lock");
        let counter = counters.entry((label("kind"), label("outcome"))).or_default().clone();
        metrics::Counter::from_arc(counter)
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[tokio::test]
async fn forwards_are_counted_by_kind_and_outcome() {
    let forwards = Forwards::default();
    let _recorder = metrics::set_default_local_recorder(&forwards);
    let cluster = cluster().await;
    let mut session = Polling::open(cluster.a.addr).await;
    session.addr = cluster.b.addr;
    session.send("40").await;
    session.recv().await;
    assert_eq!(forwards.get("polling", "ok"), 2, "a POST and a GET through B");

    let ws = Ws::upgrade(cluster.b.addr, &session.sid).await;
    assert_eq!(forwards.get("websocket", "ok"), 1);
    ws.cut();

    let forged = SidSigner::new("gw-a", b"another secret").mint();
    http(cluster.b.addr, "GET", &target(&forged), &[], None).await;
    http(cluster.b.addr, "GET", &target(&session.sid), &[("x-switchboard-forwarded", "gw-x")], None).await;
    assert_eq!(forwards.get("polling", "refused"), 2);

    let not_live = SidSigner::new("gw-c", CLUSTER_SECRET).mint();
    http(cluster.b.addr, "GET", &target(&not_live), &[], None).await;
    assert_upgrade_refused(cluster.b.addr, &not_live).await;
    assert_eq!((forwards.get("polling", "unreachable"), forwards.get("websocket", "unreachable")), (1, 1));

    // Sids that name no other gateway are no forwarding matter.
    http(cluster.b.addr, "GET", &target("abcdefghijklmnopqrst"), &[], None).await;
    http(cluster.b.addr, "GET", &target(&SidSigner::new("gw-b", CLUSTER_SECRET).mint()), &[], None).await;
    assert_eq!(forwards.get("polling", "refused"), 2);
}
