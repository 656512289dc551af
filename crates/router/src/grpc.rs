//! The gRPC service `switchboard.v1.Router` over a [`Router`], as the
//! comments of `proto/switchboard/v1/router.proto` describe it, and the
//! standard health service (`grpc.health.v1`) next to it.
//!
//! # Session
//!
//! One bidirectional stream per (gateway, router). The gateway's first
//! message is `Hello` (answered `Welcome{router_id, revision}`); then
//! `Membership`, `RoomPresence` and `Presence` go to the room table,
//! `Resync` parts are gathered and applied on the one with `last`, and each
//! `Publish` is answered `Published` or `Refused` (unless its id is 0).
//!
//! A gateway awaits nothing between two publishes, so the stream's
//! publishes are numbered and queued in arrival order: a reader task stamps
//! each message with its arrival time and queues it; the session task takes
//! them in turn, running each publish's sequential stage
//! ([`Router::start_publish`]: checked, and queued for the router's
//! appender, which appends, numbers and queues for the gateways in that
//! order); the wait for all that and its batches
//! ([`Pending::finish`](crate::Pending::finish)) runs on a task of its own,
//! which answers. Announcements and publishes thus keep their
//! order, and a slow batch holds back no other publish. The arrival time
//! lets a publish that queued behind one that met a Redis outage fail at
//! once with it.
//!
//! A broken stream leaves what the gateway announced in the table, until
//! its next `Resync` replaces it or its lease in `sb:gateways` ends. On
//! shutdown ([`RouterService::new`]'s token) every session ends with
//! `UNAVAILABLE`, so that a graceful server stop does not wait for
//! gateways to hang up.
//!
//! # Unary calls
//!
//! `OnlineUsers`, `RoomMembers`, `LocateUsers` and `History` are answered
//! by the owner of their key (`nsp:<nsp>` or `room:<nsp>:<room>`);
//! another replica answers `FAILED_PRECONDITION` (`not the owner`), one
//! that cannot reach Redis (see [`Router::is_healthy`]) `UNAVAILABLE`.
//!
//! # Publish outcomes
//!
//! [`RouterError::NotOwner`] → `REFUSAL_CODE_NOT_OWNER`,
//! [`RouterError::Unavailable`] → `REFUSAL_CODE_UNAVAILABLE`, anything
//! else (a malformed publish) → `REFUSAL_CODE_INVALID`.

use std::future::Future;
use std::time::Duration;

use switchboard_proto::v1::gateway_message::Message as FromGateway;
use switchboard_proto::v1::router_message::Message as FromRouter;
use switchboard_proto::v1::router_server::{self, RouterServer};
use switchboard_proto::{REVISION, v1};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::fanout::{PUBLISHES, Publish, outcome_label};
use crate::ownership::{nsp_key, room_key};
use crate::rooms::Holdings;
use crate::{NodeId, Published, Router, RouterError};

/// The gRPC name of the service, as `grpc.health.v1` reports it.
pub const SERVICE_NAME: &str = "switchboard.v1.Router";

/// Counter of gRPC calls by `method` (`Session`, `OnlineUsers`,
/// `RoomMembers`, `LocateUsers`, `History`) and `code` (the gRPC status
/// code, `OK`, `FAILED_PRECONDITION`, ...); a session counts when it ends.
pub const GRPC_REQUESTS: &str = "switchboard_router_grpc_requests_total";
/// Histogram of the time unary calls took, by `method`.
pub const GRPC_DURATION: &str = "switchboard_router_grpc_request_duration_seconds";
/// Gauge of open `Session` streams.
pub const SESSIONS: &str = "switchboard_router_sessions";
/// Gauge of the rooms in this router's table.
pub const ROOMS_OWNED: &str = "switchboard_router_rooms_owned";

/// How long a new session may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages read ahead from a gateway, and answers queued for it.
const QUEUE: usize = 1024;
/// How often the health status and the room gauge are refreshed.
const HEALTH_PERIOD: Duration = Duration::from_millis(200);

/// The `Router` service over one [`Router`] replica.
#[derive(Debug, Clone)]
pub struct RouterService {
    router: Router,
    shutdown: CancellationToken,
}

impl RouterService {
    /// The service of `router`; its sessions end when `shutdown` is
    /// cancelled.
    pub fn new(router: Router, shutdown: CancellationToken) -> Self {
        Self { router, shutdown }
    }

    /// The tonic server of it, to add to a `tonic::transport::Server`.
    pub fn into_server(self) -> RouterServer<Self> {
        RouterServer::new(self)
    }

    /// Refuses a call about `key` unless this replica can answer it.
    fn check_owner(&self, key: &str) -> Result<(), Status> {
        if !self.router.is_healthy() {
            return Err(Status::unavailable("this router cannot reach Redis"));
        }
        if !self.router.owns(key) {
            return Err(Status::failed_precondition("not the owner"));
        }
        Ok(())
    }
}

/// Serves the `Router` service of `router` and the health service on
/// `listener` until `shutdown` is cancelled: then sessions end and the
/// server stops once the calls in flight are done. The health status of
/// [`SERVICE_NAME`] (and of the server, `""`) is `SERVING` while
/// [`Router::is_healthy`], `NOT_SERVING` otherwise; `on_health` hears each
/// change (readiness), and `false` at the end.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: CancellationToken,
    on_health: impl Fn(bool) + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let stop_reporting = shutdown.child_token();
    let reporting =
        tokio::spawn(report_health(router.clone(), reporter, on_health, stop_reporting.clone().cancelled_owned()));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = Server::builder()
        .add_service(health)
        .add_service(RouterService::new(router, shutdown.clone()).into_server())
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned())
        .await;
    stop_reporting.cancel();
    let _ = reporting.await;
    served
}

/// Keeps the health status of [`SERVICE_NAME`] (and of the whole server)
/// and the [`ROOMS_OWNED`] gauge up to date until `shutdown`; then reports
/// `NOT_SERVING`.
pub async fn report_health(
    router: Router,
    reporter: HealthReporter,
    on_health: impl Fn(bool) + Send,
    shutdown: impl Future<Output = ()>,
) {
    let set = |healthy: bool| {
        let reporter = reporter.clone();
        async move {
            let status = if healthy { ServingStatus::Serving } else { ServingStatus::NotServing };
            reporter.set_service_status(SERVICE_NAME, status).await;
            reporter.set_service_status("", status).await;
        }
    };
    set(false).await;
    let mut last = None;
    let mut tick = tokio::time::interval(HEALTH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            _ = tick.tick() => {
                metrics::gauge!(ROOMS_OWNED).set(router.rooms_owned() as f64);
                let healthy = router.is_healthy();
                if last != Some(healthy) {
                    tracing::info!(router = %router.id(), healthy, "router health changed");
                    set(healthy).await;
                    on_health(healthy);
                    last = Some(healthy);
                }
            }
        }
    }
    set(false).await;
    on_health(false);
}

#[tonic::async_trait]
impl router_server::Router for RouterService {
    type SessionStream = ReceiverStream<Result<v1::RouterMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<v1::GatewayMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let (out, answers) = mpsc::channel(QUEUE);
        let session = Session { router: self.router.clone(), out };
        tokio::spawn(session.run(request.into_inner(), self.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(answers)))
    }

    async fn online_users(&self, request: Request<v1::OnlineUsersRequest>) -> Result<Response<v1::UsersReply>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let reply = self
            .check_owner(&nsp_key(&request.nsp))
            .map(|()| v1::UsersReply { user_ids: self.router.online_users(&request.nsp) });
        unary("OnlineUsers", started, reply)
    }

    async fn room_members(
        &self,
        request: Request<v1::RoomMembersRequest>,
    ) -> Result<Response<v1::RoomMembersReply>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let reply = self.check_owner(&room_key(&request.nsp, &request.room)).map(|()| v1::RoomMembersReply {
            user_ids: self.router.room_users(&request.nsp, &request.room),
            gateway_ids: ids(self.router.gateways_of(&request.nsp, &request.room)),
        });
        unary("RoomMembers", started, reply)
    }

    async fn locate_users(
        &self,
        request: Request<v1::LocateUsersRequest>,
    ) -> Result<Response<v1::GatewaysReply>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let reply = self.check_owner(&nsp_key(&request.nsp)).map(|()| v1::GatewaysReply {
            gateway_ids: ids(self.router.locate_users(&request.nsp, request.user_ids.iter().map(String::as_str))),
        });
        unary("LocateUsers", started, reply)
    }

    async fn history(&self, request: Request<v1::HistoryRequest>) -> Result<Response<v1::HistoryReply>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let reply = match self.check_owner(&room_key(&request.nsp, &request.room)) {
            Err(status) => Err(status),
            Ok(()) => {
                let since = Some(request.since.as_str()).filter(|since| !since.is_empty());
                let limit = usize::try_from(request.limit).unwrap_or(usize::MAX);
                self.router
                    .history(&request.nsp, &request.room, since, limit)
                    .await
                    .map(|messages| v1::HistoryReply { messages })
                    .map_err(|error| status_of(&error))
            }
        };
        unary("History", started, reply)
    }
}

fn ids(gateways: Vec<NodeId>) -> Vec<String> {
    gateways.iter().map(ToString::to_string).collect()
}

/// Records a unary call and turns its outcome into the answer.
fn unary<T>(method: &'static str, started: Instant, reply: Result<T, Status>) -> Result<Response<T>, Status> {
    let code = reply.as_ref().err().map_or(Code::Ok, Status::code);
    metrics::counter!(GRPC_REQUESTS, "method" => method, "code" => code_name(code)).increment(1);
    metrics::histogram!(GRPC_DURATION, "method" => method).record(started.elapsed().as_secs_f64());
    reply.map(Response::new)
}

/// The status of a unary call that failed with `error`.
fn status_of(error: &RouterError) -> Status {
    match error {
        RouterError::NotOwner { .. } => Status::failed_precondition("not the owner"),
        RouterError::Unavailable(_) => Status::unavailable(error.to_string()),
        RouterError::Invalid(_) | RouterError::InvalidId(_) | RouterError::Malformed(_) => {
            Status::invalid_argument(error.to_string())
        }
    }
}

/// The refusal code of a publish that failed with `error`.
fn refusal_code(error: &RouterError) -> v1::RefusalCode {
    match error {
        RouterError::NotOwner { .. } => v1::RefusalCode::NotOwner,
        RouterError::Unavailable(_) => v1::RefusalCode::Unavailable,
        RouterError::Invalid(_) | RouterError::InvalidId(_) | RouterError::Malformed(_) => v1::RefusalCode::Invalid,
    }
}

/// The answer to publish `id`.
fn answer(id: u64, outcome: Result<Published, RouterError>) -> v1::RouterMessage {
    let message = match outcome {
        Ok(published) => FromRouter::Published(v1::Published {
            id,
            offsets: published.offsets,
            gateways: u32::try_from(published.gateways).unwrap_or(u32::MAX),
        }),
        Err(error) => {
            FromRouter::Refused(v1::Refused { id, code: refusal_code(&error) as i32, reason: error.to_string() })
        }
    };
    v1::RouterMessage { message: Some(message) }
}

/// The router's form of a publish; `Invalid` for one the contract refuses
/// before anything else.
fn to_publish(publish: v1::Publish) -> Result<Publish, RouterError> {
    if publish.id == 0 && !publish.volatile {
        return Err(RouterError::Invalid("id 0 on a publish that is not volatile".to_owned()));
    }
    let packet = publish.packet.ok_or_else(|| RouterError::Invalid("a publish without a packet".to_owned()))?;
    Ok(Publish {
        nsp: publish.nsp,
        rooms: publish.rooms,
        except: publish.except,
        volatile: publish.volatile,
        store: publish.store,
        packet,
        id_field: publish.id_field,
    })
}

/// The gRPC name of a status code, a bounded label.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts an open session in [`SESSIONS`] while it lives.
struct Open;

impl Open {
    fn new() -> Open {
        metrics::gauge!(SESSIONS).increment(1.0);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(SESSIONS).decrement(1.0);
    }
}

/// One gateway's session.
struct Session {
    router: Router,
    out: mpsc::Sender<Result<v1::RouterMessage, Status>>,
}

impl Session {
    async fn run(self, inbound: Streaming<v1::GatewayMessage>, shutdown: CancellationToken) {
        let _open = Open::new();
        let code = self.serve(inbound, &shutdown).await;
        metrics::counter!(GRPC_REQUESTS, "method" => "Session", "code" => code_name(code)).increment(1);
    }

    /// The session until it ends; the code it ended with.
    async fn serve(&self, mut inbound: Streaming<v1::GatewayMessage>, shutdown: &CancellationToken) -> Code {
        let first = tokio::select! {
            () = shutdown.cancelled() => return self.end(Status::unavailable("the router is shutting down")).await,
            first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message()) => first,
        };
        let hello = match first {
            Ok(Ok(Some(v1::GatewayMessage { message: Some(FromGateway::Hello(hello)) }))) => hello,
            Ok(Ok(None)) => return Code::Ok,
            Ok(Err(status)) => return status.code(),
            Ok(Ok(Some(_))) => return self.end(Status::invalid_argument("a session starts with Hello")).await,
            Err(_) => return self.end(Status::deadline_exceeded("no Hello")).await,
        };
        let gateway = match NodeId::new(&hello.gateway_id) {
            Ok(gateway) => gateway,
            Err(error) => return self.end(Status::invalid_argument(error.to_string())).await,
        };
        tracing::info!(%gateway, address = hello.address, revision = hello.revision, "gateway session opened");
        let welcome = v1::Welcome { router_id: self.router.id().to_string(), revision: REVISION };
        if self.out.send(Ok(v1::RouterMessage { message: Some(FromRouter::Welcome(welcome)) })).await.is_err() {
            return Code::Cancelled;
        }

        let (queue, mut queued) = mpsc::channel(QUEUE);
        let mut reader = tokio::spawn(read(inbound, queue));
        let mut resync = Holdings::default();
        let code = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    reader.abort();
                    break self.end(Status::unavailable("the router is shutting down")).await;
                }
                next = queued.recv() => match next {
                    Some((arrived, message)) => self.handle(&gateway, message, arrived, &mut resync).await,
                    // The reader ended, and everything it read was handled.
                    None => break (&mut reader).await.unwrap_or(Code::Internal),
                },
            }
        };
        tracing::info!(%gateway, code = code_name(code), "gateway session ended");
        code
    }

    /// Ends the stream with `status`; its code.
    async fn end(&self, status: Status) -> Code {
        let code = status.code();
        let _ = self.out.send(Err(status)).await;
        code
    }

    async fn handle(&self, gateway: &NodeId, message: FromGateway, arrived: Instant, resync: &mut Holdings) {
        match message {
            FromGateway::Hello(_) => tracing::debug!(%gateway, "a second Hello on a session, ignored"),
            FromGateway::Membership(m) => {
                self.router.membership(gateway, &m.nsp, &m.room, m.present);
            }
            FromGateway::RoomPresence(p) => {
                self.router.room_presence(gateway, &p.nsp, &p.room, &p.user_id, p.present);
            }
            FromGateway::Presence(p) => {
                self.router.presence(gateway, &p.nsp, &p.user_id, p.online);
            }
            FromGateway::Resync(part) => {
                let present = part.memberships.into_iter().filter(|m| m.present);
                resync.rooms.extend(present.map(|m| (m.nsp, m.room)));
                let online = part.presences.into_iter().filter(|p| p.online);
                resync.users.extend(online.map(|p| (p.nsp, p.user_id)));
                let in_rooms = part.room_presences.into_iter().filter(|p| p.present);
                resync.room_users.extend(in_rooms.map(|p| (p.nsp, p.room, p.user_id)));
                if part.last {
                    let holdings = std::mem::take(resync);
                    let (rooms, users) = (holdings.rooms.len(), holdings.users.len());
                    let changes = self.router.resync(gateway, holdings);
                    tracing::info!(%gateway, rooms, users, presence_changes = changes.len(), "gateway resynced");
                }
            }
            FromGateway::Publish(publish) => self.publish(gateway, publish, arrived).await,
            FromGateway::Barrier(barrier) => {
                // Messages are handled in order: everything before it is in.
                let reached = v1::BarrierReached { id: barrier.id };
                let _ =
                    self.out.send(Ok(v1::RouterMessage { message: Some(FromRouter::BarrierReached(reached)) })).await;
            }
        }
    }

    async fn publish(&self, gateway: &NodeId, publish: v1::Publish, arrived: Instant) {
        let id = publish.id;
        let started = match to_publish(publish) {
            Ok(publish) => self.router.start_publish(publish, arrived).await,
            Err(error) => {
                metrics::counter!(PUBLISHES, "outcome" => outcome_label(Some(&error))).increment(1);
                Err(error)
            }
        };
        match started {
            Ok(pending) => {
                let out = self.out.clone();
                tokio::spawn(async move {
                    let outcome = pending.finish().await;
                    // A gateway that hung up does not need its answer.
                    if id != 0 {
                        let _ = out.send(Ok(answer(id, outcome))).await;
                    }
                });
            }
            Err(error) if id != 0 => {
                let _ = self.out.send(Ok(answer(id, Err(error)))).await;
            }
            Err(error) => tracing::debug!(%gateway, %error, "a publish without id refused"),
        }
    }
}

/// Reads a session's messages into `queue`, each with its arrival time,
/// until the stream ends (the code it ended with) or the session is gone.
async fn read(mut inbound: Streaming<v1::GatewayMessage>, queue: mpsc::Sender<(Instant, FromGateway)>) -> Code {
    loop {
        match inbound.message().await {
            Ok(Some(v1::GatewayMessage { message: Some(message) })) => {
                if queue.send((Instant::now(), message)).await.is_err() {
                    return Code::Ok;
                }
            }
            Ok(Some(v1::GatewayMessage { message: None })) => {
                tracing::debug!("a session message of a case this router does not know, ignored");
            }
            Ok(None) => return Code::Ok,
            Err(status) => return status.code(),
        }
    }
}
