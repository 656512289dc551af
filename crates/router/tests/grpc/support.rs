//! Routers served over gRPC, fake gateways, bounded waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchboard_broker::{Broker, RedisBroker, RedisOptions, Subscription};
use switchboard_proto::REVISION;
use switchboard_proto::v1::gateway_message::Message as FromGateway;
use switchboard_proto::v1::router_client::RouterClient;
use switchboard_proto::v1::router_message::Message as FromRouter;
use switchboard_proto::v1::{self, GatewayMessage};
use switchboard_router::ownership::{nsp_key, room_key};
use switchboard_router::{LeaseConfig, NodeId, Router, RouterConfig, RouterError, gateway_channel};
use switchboard_testkit::RedisServer;
pub(crate) use switchboard_testkit::eventually;

pub(crate) use crate::batches::{batches_of, next_batch_from};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

pub(crate) const NSP: &str = "/chat";
/// The Redis command timeout of these tests, short to keep outages quick.
pub(crate) const TIMEOUT: Duration = Duration::from_millis(400);
/// Nothing on a channel for this long counts as nothing sent.
pub(crate) const QUIET: Duration = Duration::from_millis(150);
/// Bound on any one wait for an answer or a batch.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

pub(crate) fn fast() -> RouterConfig {
    let lease = LeaseConfig {
        ttl: Duration::from_millis(600),
        renew_every: Duration::from_millis(100),
        poll_every: Duration::from_millis(50),
    };
    RouterConfig { lease, ..RouterConfig::default() }
}

pub(crate) async fn redis(server: &RedisServer) -> Arc<dyn Broker> {
    let options = RedisOptions {
        command_timeout: TIMEOUT,
        connect_timeout: TIMEOUT,
        reconnect_delay: Duration::from_millis(20),
        reconnect_delay_max: Duration::from_millis(200),
        pubsub_ping_interval: Duration::from_millis(200),
        ..RedisOptions::default()
    };
    let broker = RedisBroker::connect(&server.url(), options).await.expect("a valid url");
    broker.ping().await.expect("the test Redis answers");
    Arc::new(broker)
}

/// A router replica served over gRPC on 127.0.0.1, registered in
/// `sb:routers` with that address.
pub(crate) struct Node {
    pub(crate) router: Router,
    pub(crate) addr: SocketAddr,
    shutdown: CancellationToken,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    stop: Option<oneshot::Sender<()>>,
    running: Option<JoinHandle<Result<(), RouterError>>>,
}

impl Node {
    pub(crate) async fn start(id: &str, broker: Arc<dyn Broker>) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new(NodeId::new(id).unwrap(), addr.to_string(), broker, fast());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(switchboard_router::grpc::serve(router.clone(), listener, shutdown.clone(), |_| {}));
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn({
            let router = router.clone();
            async move {
                router
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        Node { router, addr, shutdown, server: Some(server), stop: Some(stop), running: Some(running) }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url()).unwrap().connect().await.expect("the router serves")
    }

    pub(crate) async fn client(&self) -> RouterClient<Channel> {
        RouterClient::new(self.channel().await)
    }

    /// The `grpc.health.v1` status of `switchboard.v1.Router`.
    pub(crate) async fn health(&self) -> i32 {
        let mut health = HealthClient::new(self.channel().await);
        let request = HealthCheckRequest { service: "switchboard.v1.Router".into() };
        health.check(request).await.expect("health answers").into_inner().status
    }

    /// Stops serving and leaves `sb:routers`.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        let server = self.server.take().unwrap();
        tokio::time::timeout(WAIT, server).await.expect("the server stops").unwrap().expect("it served");
        let _ = self.stop.take().unwrap().send(());
        self.running.take().unwrap().await.unwrap().expect("the lease is removed");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(running) = &self.running {
            running.abort();
        }
    }
}

/// Two routers that see each other and are healthy.
pub(crate) async fn two_routers(server: &RedisServer) -> (Node, Node) {
    let a = Node::start("a", redis(server).await).await;
    let b = Node::start("b", redis(server).await).await;
    for node in [&a, &b] {
        let mut live = node.router.live_routers();
        let both = |live: &switchboard_router::LiveSet| live.contains("a") && live.contains("b");
        tokio::time::timeout(WAIT, live.wait_for(both)).await.expect("the routers see each other").unwrap();
        eventually("healthy", WAIT, || async { node.router.is_healthy().then_some(()) }).await;
    }
    (a, b)
}

/// A room of `nsp` owned by `node`.
pub(crate) fn room_of(node: &Node, prefix: &str) -> String {
    (0..1000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|room| node.router.owns(&room_key(NSP, room)))
        .expect("the router owns some room")
}

/// Of two routers, the one that owns `nsp:<NSP>` first.
pub(crate) fn by_namespace<'a>(a: &'a Node, b: &'a Node) -> (&'a Node, &'a Node) {
    if a.router.owns(&nsp_key(NSP)) { (a, b) } else { (b, a) }
}

/// A fake gateway's session with one router.
pub(crate) struct Session {
    out: mpsc::Sender<GatewayMessage>,
    inbound: tonic::Streaming<v1::RouterMessage>,
    pub(crate) welcome: v1::Welcome,
}

impl Session {
    /// Opens a session to `node` as gateway `gateway` and awaits Welcome.
    pub(crate) async fn open(node: &Node, gateway: &str) -> Session {
        let (out, messages) = mpsc::channel(4096);
        let hello = v1::Hello { gateway_id: gateway.to_owned(), address: "127.0.0.1:1".to_owned(), revision: REVISION };
        out.send(GatewayMessage { message: Some(FromGateway::Hello(hello)) }).await.unwrap();
        let mut client = node.client().await;
        let inbound = client.session(ReceiverStream::new(messages)).await.expect("a session opens").into_inner();
        let mut session = Session { out, inbound, welcome: v1::Welcome::default() };
        match session.next().await {
            FromRouter::Welcome(welcome) => session.welcome = welcome,
            other => panic!("expected Welcome, got {other:?}"),
        }
        session
    }

    pub(crate) async fn send(&self, message: FromGateway) {
        self.out.send(GatewayMessage { message: Some(message) }).await.expect("the session is open");
    }

    pub(crate) async fn membership(&self, room: &str, present: bool) {
        let membership = v1::Membership { nsp: NSP.to_owned(), room: room.to_owned(), present };
        self.send(FromGateway::Membership(membership)).await;
    }

    pub(crate) async fn publish(&self, publish: v1::Publish) {
        self.send(FromGateway::Publish(publish)).await;
    }

    /// The router's next message, within [`WAIT`].
    pub(crate) async fn next(&mut self) -> FromRouter {
        match tokio::time::timeout(WAIT, self.inbound.message()).await {
            Ok(Ok(Some(v1::RouterMessage { message: Some(message) }))) => message,
            other => panic!("expected a message from the router, got {other:?}"),
        }
    }

    /// The stream's end: the status it ended with, within [`WAIT`].
    pub(crate) async fn ended(&mut self) -> Option<tonic::Status> {
        match tokio::time::timeout(WAIT, self.inbound.message()).await {
            Ok(Ok(None)) => None,
            Ok(Err(status)) => Some(status),
            other => panic!("expected the end of the session, got {other:?}"),
        }
    }

    /// The answer to the publish sent last, which must be Published.
    pub(crate) async fn published(&mut self) -> v1::Published {
        match self.next().await {
            FromRouter::Published(published) => published,
            other => panic!("expected Published, got {other:?}"),
        }
    }

    pub(crate) async fn refused(&mut self) -> v1::Refused {
        match self.next().await {
            FromRouter::Refused(refused) => refused,
            other => panic!("expected Refused, got {other:?}"),
        }
    }
}

/// A publish `id` of `event` with `args` to `rooms` of [`NSP`], stored.
pub(crate) fn publish(id: u64, rooms: &[&str], event: &str, args: &[Value]) -> v1::Publish {
    v1::Publish {
        id,
        nsp: NSP.to_owned(),
        rooms: rooms.iter().map(|room| (*room).to_owned()).collect(),
        except: vec!["sid-1".to_owned()],
        volatile: false,
        store: false,
        packet: Some(v1::Packet::from_json(event, args)),
        id_field: String::new(),
    }
}

/// A gateway's channel `sb:gw:<id>`, subscribed before anything is
/// published to it.
pub(crate) async fn channel_of(broker: &dyn Broker, gateway: &str) -> Subscription {
    broker.subscribe(&gateway_channel(&NodeId::new(gateway).unwrap())).await.unwrap()
}

/// The arguments of a packet, as JSON.
pub(crate) fn args(packet: Option<&v1::Packet>) -> Value {
    let packet = packet.expect("a packet");
    serde_json::from_slice(&packet.args_array()).expect("arguments are a JSON array")
}
