//! The gateway side of a Switchboard cluster: [`Link`] implements the
//! gateway's [`ClusterLink`] over gRPC (to the room routers) and Redis
//! (deliveries, sessions, leases). The design is docs/cluster.md.
//!
//! # Layout
//!
//! - this file: [`ClusterConfig`], [`Link`] (the link a gateway is built
//!   with, and the tasks that keep it working: [`Link::run`]).
//! - `routers`: a `Router.Session` stream per live router, announcements,
//!   resyncs, publishes and barriers.
//! - `deliveries`: the gateway's channel `sb:gw:<id>`, delivered to local
//!   members.
//! - `sessions`: positions, session records, resuming and replaying.
//! - `lanes`: lane keys, streams, tags and offsets.
//!
//! What is not here: the router (crate `switchboard-router`), and the
//! forwarding of polling requests between gateways (crate
//! `switchboard-gateway`, fed by [`Link::gateway_address`]).

mod commands;
mod deliveries;
mod lanes;
mod routers;
mod sessions;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use switchboard_broker::Broker;
use switchboard_gateway::cluster::{
    Accepted, ClusterLink, Command, CommandReply, Outgoing, Phase, Replay, Resumable, SessionState, Unavailable,
};
use switchboard_gateway::{BoxFuture, Gateway};
use switchboard_proto::v1::{self, gateway_message};
use switchboard_router::membership::{GATEWAYS, ROUTERS};
use switchboard_router::{GatewayId, LeaseConfig, Member, Membership};
use tokio_util::sync::CancellationToken;

pub use deliveries::DELIVERIES;

use crate::lanes::lane_key;
use crate::routers::{Outcome, Routers};
use crate::sessions::Sessions;

/// Settings of a cluster gateway.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This gateway's id: its channel `sb:gw:<id>`, its lease, its sids.
    pub gateway_id: GatewayId,
    /// The internal HTTP address other gateways forward requests to.
    pub address: String,
    pub lease: LeaseConfig,
    /// How long a disconnected session is kept (SWITCHBOARD_RECOVERY_WINDOW).
    pub recovery_window: Duration,
    /// How long a broadcast waits for its router's answer.
    pub publish_timeout: Duration,
}

impl ClusterConfig {
    pub fn new(gateway_id: GatewayId, address: impl Into<String>) -> Self {
        Self {
            gateway_id,
            address: address.into(),
            lease: LeaseConfig::default(),
            recovery_window: Duration::from_secs(120),
            publish_timeout: Duration::from_secs(3),
        }
    }
}

/// The link of a cluster gateway; clones share it.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClusterConfig,
    broker: Arc<dyn Broker>,
    gateway: Arc<OnceLock<Gateway>>,
    gateways: Membership,
    routers_view: Membership,
    routers: Arc<Routers>,
    sessions: Arc<Sessions>,
    requests: Arc<commands::Requests>,
    lanes: Arc<deliveries::Lanes>,
    channel: String,
    /// This gateway's entry in `sb:gateways` (`<id>|<address>`).
    lease_entry: String,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("gateway", &self.inner.config.gateway_id).finish_non_exhaustive()
    }
}

impl Link {
    pub fn new(config: ClusterConfig, broker: Arc<dyn Broker>) -> Link {
        let own = Member::new(config.gateway_id.clone(), config.address.clone());
        let lease_entry = own.lease_entry();
        let gateways = Membership::register(broker.clone(), GATEWAYS, own, config.lease);
        let routers_view = Membership::observe(broker.clone(), ROUTERS, config.lease);
        let gateway = Arc::new(OnceLock::new());
        let routers =
            Routers::new(config.gateway_id.clone(), config.address.clone(), gateway.clone(), routers_view.subscribe());
        let sessions = Arc::new(Sessions::new(broker.clone(), config.gateway_id.to_string(), config.recovery_window));
        let channel = switchboard_router::gateway_channel(&config.gateway_id);
        let requests = Arc::default();
        let lanes = Arc::default();
        let inner = Inner {
            config,
            broker,
            gateway,
            gateways,
            routers_view,
            routers,
            sessions,
            requests,
            lanes,
            channel,
            lease_entry,
        };
        Link { inner: Arc::new(inner) }
    }

    /// The gateway this link delivers to (built with this link).
    pub fn attach(&self, gateway: Gateway) {
        let _ = self.inner.gateway.set(gateway);
    }

    pub fn gateway_id(&self) -> &GatewayId {
        &self.inner.config.gateway_id
    }

    /// The internal address of a live gateway (for forwarding).
    pub fn gateway_address(&self, id: &str) -> Option<String> {
        self.inner.gateways.with_live(|live| live.get(id).map(|member| member.address.clone()))
    }

    /// Ready to serve: Redis answers (the last lease renewal and read of
    /// the live sets succeeded), the lease is held, and a router session
    /// is up.
    pub fn ready(&self) -> bool {
        let own = self.inner.config.gateway_id.as_str();
        self.inner.gateways.is_healthy()
            && self.inner.routers_view.is_healthy()
            && self.inner.gateways.with_live(|live| live.contains(own))
            && self.inner.routers.any_connected()
    }

    /// Runs the link until `shutdown`: the lease, the router sessions, the
    /// gateway channel and the session records. The lease is removed at the
    /// end.
    pub async fn run(&self, shutdown: CancellationToken) {
        let inner = &self.inner;
        let channel = deliveries::Channel {
            broker: inner.broker.clone(),
            gateway_id: inner.config.gateway_id.to_string(),
            channel: inner.channel.clone(),
            gateway: inner.gateway.clone(),
            sessions: inner.sessions.clone(),
            requests: inner.requests.clone(),
            lanes: inner.lanes.clone(),
        };
        let deliveries = tokio::spawn(deliveries::run(channel, shutdown.clone()));
        let routers = tokio::spawn(inner.routers.clone().run(shutdown.clone()));
        let flush = {
            let sessions = inner.sessions.clone();
            let stop = shutdown.clone();
            let refresh_every = (inner.config.recovery_window / 3).max(Duration::from_secs(1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let mut last_refresh = tokio::time::Instant::now();
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    let all = last_refresh.elapsed() >= refresh_every;
                    if all {
                        last_refresh = tokio::time::Instant::now();
                    }
                    sessions.flush(all).await;
                }
                sessions.flush(false).await;
                sessions.settle(Duration::from_secs(2)).await;
            })
        };
        let (left, _) = tokio::join!(
            inner.gateways.run(shutdown.clone().cancelled_owned()),
            inner.routers_view.run(shutdown.clone().cancelled_owned()),
        );
        if let Err(error) = left {
            tracing::warn!(%error, "gateway lease not removed; it ends by itself");
        }
        let _ = tokio::join!(deliveries, routers, flush);
    }

    async fn publish_once(&self, outgoing: &Outgoing<'_>) -> Result<Accepted, Retry> {
        let nsp = outgoing.nsp;
        let packet = v1::Packet {
            event: outgoing.event.to_owned(),
            args_json: outgoing.args_json.clone(),
            attachments: outgoing.attachments.to_vec(),
        };
        let target = outgoing.target;
        let rooms: Vec<String> = target.rooms.iter().map(|r| r.to_string()).collect();
        let except: Vec<String> = target.except.iter().map(|r| r.to_string()).collect();
        // One publish per owner; a later part leaves out the earlier parts'
        // rooms, so that a socket in rooms of two owners gets it once.
        let mut parts: Vec<(switchboard_router::RouterId, Vec<String>)> = Vec::new();
        if rooms.is_empty() {
            let owner = self.inner.routers.owner_of(&lane_key(nsp, None)).ok_or(Retry::NoRouter)?;
            parts.push((owner, Vec::new()));
        } else {
            for room in rooms {
                let owner = self.inner.routers.owner_of(&lane_key(nsp, Some(&room))).ok_or(Retry::NoRouter)?;
                match parts.iter_mut().find(|(router, _)| *router == owner) {
                    Some((_, part)) => part.push(room),
                    None => parts.push((owner, vec![room])),
                }
            }
        }
        let mut accepted = Accepted::default();
        let mut earlier: Vec<String> = Vec::new();
        for (router, part_rooms) in parts {
            let mut part_except = except.clone();
            part_except.extend(earlier.iter().cloned());
            earlier.extend(part_rooms.iter().cloned());
            let publish = v1::Publish {
                id: 0,
                nsp: nsp.to_owned(),
                rooms: part_rooms,
                except: part_except,
                volatile: target.volatile,
                store: outgoing.store_with_id.is_some(),
                packet: Some(packet.clone()),
                id_field: outgoing.store_with_id.unwrap_or_default().to_owned(),
            };
            match self.inner.routers.publish(&router, publish, self.inner.config.publish_timeout).await {
                Outcome::Published(published) => {
                    if accepted.offset.is_none() {
                        accepted.offset = published.offsets.into_iter().next();
                    }
                }
                Outcome::Refused(refused) => {
                    return Err(match v1::RefusalCode::try_from(refused.code) {
                        Ok(v1::RefusalCode::NotOwner) => Retry::NotOwner,
                        _ => Retry::Failed(refused.reason),
                    });
                }
                Outcome::Lost => return Err(Retry::Failed(format!("no answer from router {router}"))),
            }
        }
        Ok(accepted)
    }
}

impl Link {
    /// A unary call to the owner of `key`.
    async fn owner_client(
        &self,
        key: &str,
    ) -> Result<switchboard_proto::v1::router_client::RouterClient<tonic::transport::Channel>, Unavailable> {
        let router = self.inner.routers.owner_of(key).ok_or_else(|| Unavailable("no router".to_owned()))?;
        self.inner.routers.client(&router).ok_or_else(|| Unavailable("router not connected".to_owned()))
    }

    /// The gateways holding sockets of `users` in `nsp`.
    async fn locate(&self, nsp: &str, users: Vec<String>) -> Result<Vec<String>, Unavailable> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let key = lane_key(nsp, None);
        self.inner.routers.barrier([key.clone()], Duration::from_secs(2)).await;
        let mut client = self.owner_client(&key).await?;
        let request = v1::LocateUsersRequest { nsp: nsp.to_owned(), user_ids: users };
        let reply = tokio::time::timeout(Duration::from_secs(5), client.locate_users(request))
            .await
            .map_err(|_| Unavailable("router timed out".to_owned()))?
            .map_err(|status| Unavailable(status.message().to_owned()))?;
        Ok(reply.into_inner().gateway_ids)
    }

    fn all_gateways(&self) -> Vec<String> {
        self.inner.gateways.with_live(|live| live.ids().map(|id| id.to_string()).collect())
    }

    async fn run_command(&self, nsp: &str, command: Command) -> Result<CommandReply, Unavailable> {
        let mut users_of_room = None;
        let gateways = match &command {
            Command::JoinUser { user, .. } | Command::LeaveUser { user, .. } | Command::DisconnectUser { user } => {
                self.locate(nsp, vec![user.clone()]).await?
            }
            Command::DisconnectSocket { .. } => self.all_gateways(),
            Command::Emit { users, sockets, .. } => {
                if sockets.is_empty() {
                    self.locate(nsp, users.clone()).await?
                } else {
                    self.all_gateways()
                }
            }
            Command::RoomSockets { room } => {
                let key = lane_key(nsp, Some(room));
                self.inner.routers.barrier([key.clone()], Duration::from_secs(2)).await;
                let mut client = self.owner_client(&key).await?;
                let request = v1::RoomMembersRequest { nsp: nsp.to_owned(), room: room.clone() };
                let reply = tokio::time::timeout(Duration::from_secs(5), client.room_members(request))
                    .await
                    .map_err(|_| Unavailable("router timed out".to_owned()))?
                    .map_err(|status| Unavailable(status.message().to_owned()))?
                    .into_inner();
                users_of_room = Some(reply.user_ids);
                reply.gateway_ids
            }
        };
        let mut reply = if gateways.is_empty() {
            CommandReply::default()
        } else {
            self.inner.requests.ask(&self.inner.broker, &self.inner.channel, &gateways, nsp, &command).await?
        };
        if let Some(users) = users_of_room {
            reply.users = users;
        }
        Ok(reply)
    }
}

/// How long a user's socket slots outlive their last change.
const USER_SLOTS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The socket slots of a user in a namespace (SWITCHBOARD_MAX_SOCKETS_PER_USER
/// cluster-wide).
fn user_slots_key(nsp: &str, user: &str) -> String {
    format!("sb:usersockets:{nsp}:{user}")
}

/// Why a publish attempt failed.
enum Retry {
    NoRouter,
    NotOwner,
    Failed(String),
}

impl ClusterLink for Link {
    fn room_changed(&self, nsp: &str, room: &str, present: bool) {
        let key = lane_key(nsp, Some(room));
        if present {
            self.inner.sessions.lane_opened(key.clone());
        }
        // The room's deliveries start (or stop) here: no gap across that.
        self.inner.lanes.forget(&key);
        let message = v1::Membership { nsp: nsp.to_owned(), room: room.to_owned(), present };
        self.inner.routers.send_to_owner(&key, gateway_message::Message::Membership(message));
    }

    fn room_user_changed(&self, nsp: &str, room: &str, user: &str, present: bool) {
        let key = lane_key(nsp, Some(room));
        let message =
            v1::RoomPresence { nsp: nsp.to_owned(), room: room.to_owned(), user_id: user.to_owned(), present };
        self.inner.routers.send_to_owner(&key, gateway_message::Message::RoomPresence(message));
    }

    fn user_changed(&self, nsp: &str, user: &str, online: bool) {
        let key = lane_key(nsp, None);
        if online {
            self.inner.sessions.lane_opened(key.clone());
        }
        // The namespace's broadcasts stop coming here when its last socket
        // leaves, and start again with its next first socket: what was sent
        // in between is not for the sockets then, so no gap is seen there.
        // (Called with the socket not counted: on its way in or out.)
        if self.inner.gateway.get().and_then(|g| g.namespace(nsp)).is_none_or(|n| n.socket_count() == 0) {
            self.inner.lanes.forget(&key);
        }
        let message = v1::Presence { nsp: nsp.to_owned(), user_id: user.to_owned(), online };
        self.inner.routers.send_to_owner(&key, gateway_message::Message::Presence(message));
    }

    fn publish<'a>(&'a self, outgoing: Outgoing<'a>) -> BoxFuture<'a, Result<Accepted, Unavailable>> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            // The client hears within about `publish_timeout` and a second,
            // whatever happens: retries stop at that deadline.
            let deadline = started + self.inner.config.publish_timeout + Duration::from_secs(1);
            let mut attempt = 0;
            let outcome = loop {
                attempt += 1;
                let remaining = deadline.saturating_duration_since(std::time::Instant::now());
                let once = tokio::time::timeout(remaining, self.publish_once(&outgoing)).await;
                let Ok(once) = once else {
                    break Err(Unavailable("no answer in time".to_owned()));
                };
                match once {
                    Ok(accepted) => break Ok(accepted),
                    // The live set is read every 250 ms: the view may be
                    // stale for that long after a router joined or left.
                    Err(Retry::NotOwner | Retry::NoRouter)
                        if attempt < 4 && std::time::Instant::now() + Duration::from_millis(300) < deadline =>
                    {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    Err(Retry::NotOwner) => break Err(Unavailable("ownership is moving".to_owned())),
                    Err(Retry::NoRouter) => break Err(Unavailable("no router".to_owned())),
                    Err(Retry::Failed(reason)) => break Err(Unavailable(reason)),
                }
            };
            let label = if outcome.is_ok() { "ok" } else { "unavailable" };
            metrics::counter!("switchboard_gateway_cluster_publishes_total", "outcome" => label).increment(1);
            metrics::histogram!("switchboard_gateway_cluster_publish_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            outcome
        })
    }

    fn barrier<'a>(&'a self, nsp: &'a str, rooms: &'a [Arc<str>]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let keys = rooms.iter().map(|room| lane_key(nsp, Some(room))).chain([lane_key(nsp, None)]);
            self.inner.routers.barrier(keys, Duration::from_secs(2)).await;
        })
    }

    fn online_users<'a>(&'a self, nsp: &'a str) -> BoxFuture<'a, Result<Vec<String>, Unavailable>> {
        Box::pin(async move {
            let key = lane_key(nsp, None);
            // Our own announcements first, so that a user who just connected
            // here is in the list.
            self.inner.routers.barrier([key.clone()], Duration::from_secs(2)).await;
            let router = self.inner.routers.owner_of(&key).ok_or_else(|| Unavailable("no router".to_owned()))?;
            let mut client =
                self.inner.routers.client(&router).ok_or_else(|| Unavailable("router not connected".to_owned()))?;
            let request = v1::OnlineUsersRequest { nsp: nsp.to_owned() };
            let reply = tokio::time::timeout(Duration::from_secs(5), client.online_users(request))
                .await
                .map_err(|_| Unavailable("router timed out".to_owned()))?
                .map_err(|status| Unavailable(status.message().to_owned()))?;
            Ok(reply.into_inner().user_ids)
        })
    }

    fn catch_up(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.requests.catch_up(&self.inner.broker, &self.inner.channel, Duration::from_secs(1)))
    }

    fn acquire_user_slot<'a>(
        &'a self,
        nsp: &'a str,
        user: &'a str,
        sid: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<bool, Unavailable>> {
        Box::pin(async move {
            let key = user_slots_key(nsp, user);
            self.inner
                .broker
                .slot_acquire(&key, sid, &self.inner.lease_entry, GATEWAYS, max, USER_SLOTS_TTL)
                .await
                .map_err(|error| Unavailable(error.to_string()))
        })
    }

    fn release_user_slot(&self, nsp: &str, user: &str, sid: &str) {
        let (broker, key, sid) = (self.inner.broker.clone(), user_slots_key(nsp, user), sid.to_owned());
        tokio::spawn(async move {
            if let Err(error) = broker.slot_release(&key, &sid).await {
                tracing::debug!(%error, "socket slot not released (it goes with this gateway's lease)");
            }
        });
    }

    fn leads(&self, key: &str) -> bool {
        let own = &self.inner.config.gateway_id;
        self.inner.gateways.with_live(|live| switchboard_router::ownership::owner(key, live.ids()) == Some(own))
    }

    fn history<'a>(
        &'a self,
        nsp: &'a str,
        room: &'a str,
        since: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<serde_json::Value>, Unavailable>> {
        Box::pin(async move {
            let key = lane_key(nsp, Some(room));
            let router = self.inner.routers.owner_of(&key).ok_or_else(|| Unavailable("no router".to_owned()))?;
            let mut client =
                self.inner.routers.client(&router).ok_or_else(|| Unavailable("router not connected".to_owned()))?;
            let request = v1::HistoryRequest {
                nsp: nsp.to_owned(),
                room: room.to_owned(),
                since: since.unwrap_or_default().to_owned(),
                limit: u32::try_from(limit).unwrap_or(u32::MAX),
            };
            let reply = tokio::time::timeout(Duration::from_secs(5), client.history(request))
                .await
                .map_err(|_| Unavailable("router timed out".to_owned()))?
                .map_err(|status| Unavailable(status.message().to_owned()))?;
            let messages = reply
                .into_inner()
                .messages
                .into_iter()
                .filter_map(|stored| {
                    let packet = stored.packet?;
                    let args: Vec<serde_json::Value> = serde_json::from_slice(&packet.args_array()).ok()?;
                    args.into_iter().next()
                })
                .collect();
            Ok(messages)
        })
    }

    fn command<'a>(&'a self, nsp: &'a str, command: Command) -> BoxFuture<'a, Result<CommandReply, Unavailable>> {
        Box::pin(self.run_command(nsp, command))
    }

    fn session<'a>(&'a self, nsp: &'a str, session: SessionState, phase: Phase) -> BoxFuture<'a, ()> {
        Box::pin(self.inner.sessions.session(nsp, session, phase))
    }

    fn resume<'a>(&'a self, nsp: &'a str, pid: &'a str, offset: &'a str) -> BoxFuture<'a, Option<Resumable>> {
        Box::pin(self.inner.sessions.resume(nsp, pid, offset))
    }

    fn replay<'a>(&'a self, nsp: &'a str, session: &'a Resumable) -> BoxFuture<'a, Option<Replay>> {
        Box::pin(self.inner.sessions.replay(nsp, session))
    }
}
