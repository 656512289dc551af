//! A trivial `Router` served by tonic on a loopback port, and a client that
//! speaks the `Session` stream and a unary call to it; the standard health
//! service next to it; the API key check of `ServerApi` as an interceptor.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::Stream;
use switchboard_proto::REVISION;
use switchboard_proto::v1::gateway_message::Message as FromGateway;
use switchboard_proto::v1::router_client::RouterClient;
use switchboard_proto::v1::router_message::Message as FromRouter;
use switchboard_proto::v1::router_server::{Router, RouterServer};
use switchboard_proto::v1::server_api_client::ServerApiClient;
use switchboard_proto::v1::server_api_server::{ServerApi, ServerApiServer};
use switchboard_proto::v1::{self, GatewayMessage, RouterMessage};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::metadata::MetadataValue;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status, Streaming};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Every test is over within this.
const LIMIT: Duration = Duration::from_secs(10);

/// Answers `Hello` with `Welcome`, and each `Publish` with `Published`, one
/// offset per room from a counter.
#[derive(Default)]
struct CountingRouter {
    next: Arc<AtomicU64>,
}

type RouterStream = Pin<Box<dyn Stream<Item = Result<RouterMessage, Status>> + Send>>;

fn reply(message: FromRouter) -> Result<RouterMessage, Status> {
    Ok(RouterMessage { message: Some(message) })
}

#[tonic::async_trait]
impl Router for CountingRouter {
    type SessionStream = RouterStream;

    async fn session(
        &self,
        request: Request<Streaming<GatewayMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let next = self.next.clone();
        tokio::spawn(async move {
            while let Ok(Some(message)) = inbound.message().await {
                let answer = match message.message {
                    Some(FromGateway::Hello(hello)) => FromRouter::Welcome(v1::Welcome {
                        router_id: format!("router-for-{}", hello.gateway_id),
                        revision: REVISION,
                    }),
                    Some(FromGateway::Publish(publish)) if publish.id == 0 => continue,
                    Some(FromGateway::Publish(publish)) => {
                        let offsets = (0..publish.rooms.len().max(1))
                            .map(|_| format!("{}-0", next.fetch_add(1, Ordering::Relaxed) + 1))
                            .collect();
                        FromRouter::Published(v1::Published { id: publish.id, offsets, gateways: 1 })
                    }
                    _ => continue,
                };
                if tx.send(reply(answer)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn online_users(&self, request: Request<v1::OnlineUsersRequest>) -> Result<Response<v1::UsersReply>, Status> {
        match request.into_inner().nsp.as_str() {
            "/" => Ok(Response::new(v1::UsersReply { user_ids: vec!["alice".into(), "bob".into()] })),
            _ => Err(Status::failed_precondition("not the owner")),
        }
    }

    async fn room_members(&self, _: Request<v1::RoomMembersRequest>) -> Result<Response<v1::RoomMembersReply>, Status> {
        Err(Status::unimplemented("room_members"))
    }

    async fn locate_users(&self, _: Request<v1::LocateUsersRequest>) -> Result<Response<v1::GatewaysReply>, Status> {
        Err(Status::unimplemented("locate_users"))
    }

    async fn history(&self, _: Request<v1::HistoryRequest>) -> Result<Response<v1::HistoryReply>, Status> {
        Err(Status::unimplemented("history"))
    }
}

/// A server on 127.0.0.1:0 that stops when dropped.
struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl TestServer {
    async fn start(router: tonic::service::Routes) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(Server::builder().add_routes(router).serve_with_incoming_shutdown(
            TcpListenerStream::new(listener),
            async {
                let _ = stopped.await;
            },
        ));
        Self { addr, stop: Some(stop), task: Some(task) }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it and waits until it has stopped.
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn gateway(message: FromGateway) -> GatewayMessage {
    GatewayMessage { message: Some(message) }
}

fn publish(id: u64, rooms: &[&str]) -> FromGateway {
    FromGateway::Publish(v1::Publish {
        id,
        nsp: "/".into(),
        rooms: rooms.iter().map(|r| r.to_string()).collect(),
        except: vec!["sender-socket".into()],
        volatile: id == 0,
        store: false,
        packet: Some(v1::Packet::from_json("room:message", &[serde_json::json!({"text": "hi"})])),
        id_field: String::new(),
    })
}

async fn next_from_router(stream: &mut Streaming<RouterMessage>) -> FromRouter {
    stream.message().await.expect("stream error").expect("stream ended").message.expect("empty message")
}

#[tokio::test]
async fn a_session_says_hello_and_gets_publishes_answered() {
    tokio::time::timeout(LIMIT, async {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<RouterServer<CountingRouter>>().await;
        let routes = tonic::service::Routes::new(health).add_service(RouterServer::new(CountingRouter::default()));
        let server = TestServer::start(routes).await;

        let channel = Endpoint::from_shared(server.url()).unwrap().connect().await.unwrap();

        // The standard health service reports the Router as serving.
        let mut health = HealthClient::new(channel.clone());
        let status = health
            .check(HealthCheckRequest { service: "switchboard.v1.Router".into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);

        let mut client = RouterClient::new(channel);
        let (tx, rx) = mpsc::channel(16);
        tx.send(gateway(FromGateway::Hello(v1::Hello {
            gateway_id: "gw-1".into(),
            address: "127.0.0.1:4000".into(),
            revision: REVISION,
        })))
        .await
        .unwrap();
        let mut inbound = client.session(ReceiverStream::new(rx)).await.unwrap().into_inner();

        match next_from_router(&mut inbound).await {
            FromRouter::Welcome(welcome) => {
                assert_eq!(welcome.router_id, "router-for-gw-1");
                assert_eq!(welcome.revision, REVISION);
            }
            other => panic!("expected Welcome, got {other:?}"),
        }

        tx.send(gateway(FromGateway::Resync(v1::Resync { last: true, ..Default::default() }))).await.unwrap();
        let (nsp, room) = (String::from("/"), String::from("lobby"));
        tx.send(gateway(FromGateway::Membership(v1::Membership {
            nsp: nsp.clone(),
            room: room.clone(),
            present: true,
        })))
        .await
        .unwrap();
        let user_id = String::from("alice");
        tx.send(gateway(FromGateway::RoomPresence(v1::RoomPresence { nsp, room, user_id, present: true })))
            .await
            .unwrap();
        tx.send(gateway(publish(7, &["lobby"]))).await.unwrap();
        // A volatile publish with id 0 asks for no answer: the next answer
        // is the one to id 8.
        tx.send(gateway(publish(0, &["lobby"]))).await.unwrap();
        tx.send(gateway(publish(8, &["a", "b"]))).await.unwrap();

        match next_from_router(&mut inbound).await {
            FromRouter::Published(published) => {
                assert_eq!(published.id, 7);
                assert_eq!(published.offsets, ["1-0"]);
                assert_eq!(published.gateways, 1);
            }
            other => panic!("expected Published, got {other:?}"),
        }
        match next_from_router(&mut inbound).await {
            FromRouter::Published(published) => {
                assert_eq!(published.id, 8);
                assert_eq!(published.offsets, ["2-0", "3-0"]);
            }
            other => panic!("expected Published, got {other:?}"),
        }

        // The gateway closes its side: the router's stream ends.
        drop(tx);
        assert!(inbound.message().await.unwrap().is_none());

        // A unary call on the same server.
        let users = client.online_users(v1::OnlineUsersRequest { nsp: "/".into() }).await.unwrap();
        assert_eq!(users.into_inner().user_ids, ["alice", "bob"]);
        let refused = client.online_users(v1::OnlineUsersRequest { nsp: "/other".into() }).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

        drop(client);
        drop(health);
        server.shutdown().await;
    })
    .await
    .expect("the test took too long");
}

/// Answers `OnlineUsers` only; the key check is the interceptor's.
struct OnlineOnly;

#[tonic::async_trait]
impl ServerApi for OnlineOnly {
    async fn emit(&self, _: Request<v1::ApiEmitRequest>) -> Result<Response<v1::ApiEmitReply>, Status> {
        Err(Status::unimplemented("emit"))
    }

    async fn notify(&self, _: Request<v1::ApiNotifyRequest>) -> Result<Response<v1::ApiNotifyReply>, Status> {
        Err(Status::unimplemented("notify"))
    }

    async fn online_users(
        &self,
        _: Request<v1::ApiOnlineUsersRequest>,
    ) -> Result<Response<v1::ApiOnlineUsersReply>, Status> {
        Ok(Response::new(v1::ApiOnlineUsersReply { user_ids: vec!["alice".into()] }))
    }

    async fn room_members(
        &self,
        _: Request<v1::ApiRoomMembersRequest>,
    ) -> Result<Response<v1::ApiRoomMembersReply>, Status> {
        Err(Status::unimplemented("room_members"))
    }

    async fn history(&self, _: Request<v1::ApiHistoryRequest>) -> Result<Response<v1::ApiHistoryReply>, Status> {
        Err(Status::unimplemented("history"))
    }

    async fn join_user(&self, _: Request<v1::ApiJoinUserRequest>) -> Result<Response<v1::ApiSocketsReply>, Status> {
        Err(Status::unimplemented("join_user"))
    }

    async fn leave_user(&self, _: Request<v1::ApiLeaveUserRequest>) -> Result<Response<v1::ApiSocketsReply>, Status> {
        Err(Status::unimplemented("leave_user"))
    }

    async fn disconnect_user(
        &self,
        _: Request<v1::ApiDisconnectUserRequest>,
    ) -> Result<Response<v1::ApiSocketsReply>, Status> {
        Err(Status::unimplemented("disconnect_user"))
    }

    async fn disconnect_socket(
        &self,
        _: Request<v1::ApiDisconnectSocketRequest>,
    ) -> Result<Response<v1::ApiSocketsReply>, Status> {
        Err(Status::unimplemented("disconnect_socket"))
    }
}

#[tokio::test]
async fn the_server_api_wants_the_key_in_the_metadata() {
    tokio::time::timeout(LIMIT, async {
        let check = |request: Request<()>| {
            let given = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
            match given {
                Some("Bearer sesame") => Ok(request),
                _ => Err(Status::unauthenticated("unauthorized")),
            }
        };
        let routes = tonic::service::Routes::new(ServerApiServer::with_interceptor(OnlineOnly, check));
        let server = TestServer::start(routes).await;
        let mut client = ServerApiClient::connect(server.url()).await.unwrap();

        let denied = client.online_users(v1::ApiOnlineUsersRequest::default()).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::Unauthenticated);
        assert_eq!(denied.message(), "unauthorized");

        let mut request = Request::new(v1::ApiOnlineUsersRequest::default());
        request.metadata_mut().insert("authorization", MetadataValue::from_static("Bearer sesame"));
        assert_eq!(client.online_users(request).await.unwrap().into_inner().user_ids, ["alice"]);

        drop(client);
        server.shutdown().await;
    })
    .await
    .expect("the test took too long");
}
