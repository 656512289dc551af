//! A cluster in one test process: a private redis-server, one or two routers
//! (the real gRPC service on 127.0.0.1:0) and gateways built as
//! `switchboard gateway` builds them, with the chat mounted. Clients are
//! the testkit's Socket.IO client over WebSocket.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_auth::Authenticator;
use switchboard_broker::{Broker, RedisBroker, RedisOptions};
use switchboard_chat::{Chat, ChatConfig};
use switchboard_cluster::{ClusterConfig, Link};
use switchboard_gateway::{Config, Gateway, Peers, SidSigner};
use switchboard_router::{GatewayId, Router, RouterConfig, RouterId};
use switchboard_testkit::{RedisServer, TestClient, eventually, mint_hs256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "cluster-test-secret";
const API_KEY: &str = "cluster-test-key";

struct RouterNode {
    stop: CancellationToken,
}

impl Drop for RouterNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn broker(redis: &RedisServer) -> Arc<dyn Broker> {
    Arc::new(RedisBroker::connect(&redis.url(), RedisOptions::default()).await.expect("redis"))
}

async fn start_router(redis: &RedisServer, id: &str) -> RouterNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let router = Router::new(RouterId::new(id).unwrap(), address, broker(redis).await, RouterConfig::default());
    let stop = CancellationToken::new();
    tokio::spawn({
        let (router, stop) = (router.clone(), stop.clone());
        async move { router.run(stop.cancelled_owned()).await }
    });
    tokio::spawn(switchboard_router::grpc::serve(router, listener, stop.clone(), |_| {}));
    RouterNode { stop }
}

struct LinkPeers(Link);

impl Peers for LinkPeers {
    fn address(&self, gateway_id: &str) -> Option<String> {
        self.0.gateway_address(gateway_id)
    }
}

struct GatewayNode {
    addr: std::net::SocketAddr,
    link: Link,
    stop: CancellationToken,
}

impl Drop for GatewayNode {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_gateway(redis: &RedisServer, id: &str) -> GatewayNode {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let broker = broker(redis).await;
    let cluster = ClusterConfig::new(GatewayId::new(id).unwrap(), addr.to_string());
    let link = Link::new(cluster, broker.clone());
    let auth = Authenticator::from_config(&switchboard_auth::AuthConfig {
        secret: Some(SECRET.to_owned()),
        ..Default::default()
    })
    .unwrap();
    let chat_config = ChatConfig { presence_interval: Duration::from_millis(20), ..ChatConfig::default() };
    let chat = Chat::new(chat_config, broker);
    let gateway = chat
        .mount(Gateway::builder(Config::default(), auth))
        .link(Arc::new(link.clone()))
        .cluster(SidSigner::new(id, SECRET.as_bytes()), Arc::new(LinkPeers(link.clone())))
        .build();
    link.attach(gateway.clone());
    chat.follow_presence(&gateway);
    let app = gateway.router().merge(chat.api_router(gateway.clone(), Some(API_KEY.to_owned())));
    let stop = CancellationToken::new();
    tokio::spawn(switchboard_gateway::serve(listener, app, stop.clone()));
    tokio::spawn({
        let (link, stop) = (link.clone(), stop.clone());
        async move { link.run(stop).await }
    });
    let node = GatewayNode { addr, link, stop };
    eventually("the gateway is ready", Duration::from_secs(10), || async { node.link.ready().then_some(()) }).await;
    node
}

/// Redis, one router and `gateways` gateways (`gw-1`, ...), each seeing
/// the others; dropped gateways first.
struct InProcess {
    gateways: Vec<GatewayNode>,
    _router: RouterNode,
    redis: RedisServer,
}

async fn start_cluster(gateways: usize) -> InProcess {
    let redis = RedisServer::start();
    let router = start_router(&redis, "router-1").await;
    let mut nodes = Vec::with_capacity(gateways);
    for i in 1..=gateways {
        nodes.push(start_gateway(&redis, &format!("gw-{i}")).await);
    }
    // A socket whose gateway is unknown is looked for on every live gateway:
    // each must see the others (the live set is read every 250 ms).
    for node in &nodes {
        for i in 1..=gateways {
            let other = format!("gw-{i}");
            eventually("gateways see each other", Duration::from_secs(5), || async {
                node.link.gateway_address(&other)
            })
            .await;
        }
    }
    InProcess { gateways: nodes, _router: router, redis }
}

fn token(user: &str) -> String {
    mint_hs256(SECRET, user, user, "user", 3600)
}

async fn connect(node: &GatewayNode, user: &str) -> TestClient {
    TestClient::connect(node.addr, "/", json!({ "token": token(user) })).await.expect("connect")
}

async fn join(client: &mut TestClient, room: &str) {
    let ack = client.ack("room:join", json!(room)).await;
    assert_eq!(ack, json!({"ok": true}), "join {room}");
}

fn text(event: &switchboard_testkit::Event) -> Value {
    event.data()["text"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_span_gateways_in_order_and_only_where_members_are() {
    let cluster = start_cluster(3).await;
    let [gw1, gw2, gw3] = &cluster.gateways[..] else { unreachable!() };

    let mut alice = connect(gw1, "alice").await;
    let mut bob = connect(gw2, "bob").await;
    let mut carol = connect(gw3, "carol").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    let joined = alice.wait_for("room:user-joined").await;
    assert_eq!(joined.data()["userId"], "bob");

    for i in 0..20 {
        let ack = alice.ack("room:message", json!({"roomId": "lobby", "text": i})).await;
        assert_eq!(ack, json!({"ok": true}));
    }
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(text(&bob.wait_for("room:message").await));
    }
    assert_eq!(seen, (0..20).map(|i| json!(i)).collect::<Vec<_>>(), "in order, once each");
    carol.expect_none("room:message", Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_messages_history_and_presence_are_cluster_wide() {
    let cluster = start_cluster(2).await;
    let [gw1, gw2] = &cluster.gateways[..] else { unreachable!() };

    let mut alice = connect(gw1, "alice").await;
    let mut bob = connect(gw2, "bob").await;
    join(&mut alice, "general").await;
    join(&mut bob, "general").await;
    let ack = alice.ack("message:send", json!({"roomId": "general", "content": "hello"})).await;
    let id = ack["id"].as_str().expect("an id").to_owned();
    let new = bob.wait_for("message:new").await;
    assert_eq!(new.data()["id"], json!(id));
    assert_eq!(new.data()["content"], "hello");

    let mut dave = connect(gw1, "dave").await;
    dave.ack("room:join", json!("general")).await;
    let history = dave.wait_for("room:history").await;
    assert_eq!(history.data()[0]["id"], json!(id), "history: {:?}", history.data());

    let online = bob.ack("users:online", json!(null)).await;
    let mut users: Vec<String> = serde_json::from_value(online).unwrap();
    users.sort();
    assert_eq!(users, vec!["alice", "bob", "dave"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_resumes_on_another_gateway_with_what_it_missed() {
    let cluster = start_cluster(2).await;
    let [gw1, gw2] = &cluster.gateways[..] else { unreachable!() };

    let mut alice = connect(gw1, "alice").await;
    let mut bob = connect(gw2, "bob").await;
    join(&mut alice, "lobby").await;
    join(&mut bob, "lobby").await;
    alice.ack("room:message", json!({"roomId": "lobby", "text": "before"})).await;
    bob.wait_for("room:message").await;
    let (pid, offset, sid) = (bob.pid().expect("pid"), bob.last_offset().expect("offset"), bob.id().to_owned());
    drop(bob); // the transport is cut: no DISCONNECT
    // Let gw-2 notice and keep the session.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        alice.ack("room:message", json!({"roomId": "lobby", "text": i})).await;
    }
    let auth = json!({ "token": token("bob"), "pid": pid, "offset": offset });
    let mut bob = TestClient::connect(gw1.addr, "/", auth).await.expect("reconnect");
    assert_eq!(bob.id(), sid, "the same socket id");
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(text(&bob.wait_for("room:message").await));
    }
    assert_eq!(seen, (0..5).map(|i| json!(i)).collect::<Vec<_>>());
    alice.ack("room:message", json!({"roomId": "lobby", "text": "after"})).await;
    assert_eq!(text(&bob.wait_for("room:message").await), "after", "still in the room, live");
    bob.expect_none("room:message", Duration::from_millis(300)).await;
}

async fn api(node: &GatewayNode, method: &str, path: &str, body: Option<Value>) -> switchboard_testkit::HttpResponse {
    let bearer = format!("Bearer {API_KEY}");
    let body = body.map(|b| b.to_string());
    switchboard_testkit::http::request(
        node.addr,
        method,
        path,
        &[("authorization", &bearer), ("content-type", "application/json")],
        body.as_deref().map(str::as_bytes),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_api_reaches_sockets_on_every_gateway() {
    let cluster = start_cluster(2).await;
    let [gw1, gw2] = &cluster.gateways[..] else { unreachable!() };

    let mut erin_a = connect(gw1, "erin").await;
    let mut erin_b = connect(gw2, "erin").await;
    let mut frank = connect(gw2, "frank").await;

    // Join a user's sockets on both gateways, asked of a third party.
    let joined = api(gw1, "POST", "/api/users/erin/join", Some(json!({"room": "ops"}))).await;
    assert_eq!(joined.body, json!({"ok": true, "sockets": 2}), "{}", joined.text);
    let members = api(gw2, "GET", "/api/rooms/ops/members", None).await;
    let mut sockets: Vec<String> = serde_json::from_value(members.body["sockets"].clone()).unwrap();
    sockets.sort();
    let mut expected = vec![erin_a.id().to_owned(), erin_b.id().to_owned()];
    expected.sort();
    assert_eq!(sockets, expected, "{}", members.text);
    assert_eq!(members.body["users"], json!(["erin"]));

    // A broadcast to the room and an emit to a user, from either gateway.
    let emitted = api(gw2, "POST", "/api/emit", Some(json!({"rooms": ["ops"], "event": "deploy", "data": 1}))).await;
    assert_eq!(emitted.status, 200, "{}", emitted.text);
    assert_eq!(erin_a.wait_for("deploy").await.data(), &json!(1));
    assert_eq!(erin_b.wait_for("deploy").await.data(), &json!(1));
    let emitted = api(gw1, "POST", "/api/emit", Some(json!({"users": ["frank"], "event": "ping", "data": 2}))).await;
    assert_eq!(emitted.status, 200, "{}", emitted.text);
    assert_eq!(frank.wait_for("ping").await.data(), &json!(2));
    erin_a.expect_none("ping", Duration::from_millis(200)).await;

    let online = api(gw1, "GET", "/api/users/online", None).await;
    assert_eq!(online.body["users"], json!(["erin", "frank"]), "{}", online.text);

    // Disconnect a socket held by the other gateway.
    let gone = api(gw1, "POST", &format!("/api/sockets/{}/disconnect", frank.id()), Some(json!({}))).await;
    assert_eq!(gone.body, json!({"ok": true, "sockets": 1}), "{}", gone.text);
    assert_eq!(frank.wait_disconnect().await, "io server disconnect");
    let left = api(gw2, "POST", "/api/users/erin/leave", Some(json!({"room": "ops"}))).await;
    assert_eq!(left.body, json!({"ok": true, "sockets": 2}), "{}", left.text);
}

/// A delivery as a router would publish it, for the gap tests.
fn batch(router: &str, seq: u64, offset: &str, text: i64) -> bytes::Bytes {
    use switchboard_proto::prost::Message as _;
    use switchboard_proto::v1;
    let delivery = v1::Delivery {
        nsp: "/".to_owned(),
        rooms: vec!["lobby".to_owned()],
        stamps: vec![v1::Stamp { seq, offset: offset.to_owned() }],
        packet: Some(v1::Packet::from_json("room:message", &[json!({"text": text})])),
        ..Default::default()
    };
    let batch = v1::DeliveryBatch { router_id: router.to_owned(), deliveries: vec![delivery] };
    let message =
        v1::ChannelMessage { message: Some(v1::channel_message::Message::Deliveries(batch)), ..Default::default() };
    bytes::Bytes::from(message.encode_to_vec())
}

fn entry(text: i64) -> bytes::Bytes {
    use switchboard_proto::prost::Message as _;
    use switchboard_proto::v1;
    let delivery = v1::Delivery {
        nsp: "/".to_owned(),
        rooms: vec!["lobby".to_owned()],
        packet: Some(v1::Packet::from_json("room:message", &[json!({"text": text})])),
        ..Default::default()
    };
    bytes::Bytes::from(delivery.encode_to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_numbering_is_repaired_from_the_stream_and_late_copies_are_dropped() {
    let cluster = start_cluster(1).await;
    let gw1 = &cluster.gateways[0];
    let mut alice = connect(gw1, "alice").await;
    join(&mut alice, "lobby").await;

    let redis_broker = broker(&cluster.redis).await;
    let keep = switchboard_broker::Retention::new(1000, None);
    let mut ids = Vec::new();
    for text in 1..=3 {
        ids.push(redis_broker.stream_append("sb:room:/:lobby", entry(text), keep).await.unwrap());
    }
    let channel = "sb:gw:gw-1";
    redis_broker.publish(channel, batch("fake", 1, &ids[0], 1)).await.unwrap();
    // Number 2 never arrives: number 3 shows the gap.
    redis_broker.publish(channel, batch("fake", 3, &ids[2], 3)).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(text(&alice.wait_for("room:message").await));
    }
    assert_eq!(seen, vec![json!(1), json!(2), json!(3)], "the missing one first, then in order");
    // A late copy of number 2 is not delivered twice.
    redis_broker.publish(channel, batch("fake", 2, &ids[1], 2)).await.unwrap();
    alice.expect_none("room:message", Duration::from_millis(300)).await;
}
