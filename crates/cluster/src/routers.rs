//! The gateway's sessions with the routers: one `Router.Session` stream per
//! live router, kept open (reconnecting with backoff), and what goes on it.
//!
//! Each router has an inbox (an unbounded channel) that outlives its
//! streams: announcements and publishes are queued there in the order they
//! happen, and a stream sends `Hello`, then a `Resync` of what this gateway
//! holds that the router owns (read at that moment), then the inbox. An
//! announcement queued before a resync is repeated by it, which is harmless
//! (the router keeps sets), and the inbox's order keeps the last word right.
//! When the live router set changes, every stream gets a fresh `Resync`:
//! the new owners learn what they now own.
//!
//! A publish waits for its `Published` or `Refused`; a broken stream fails
//! the publishes it carried (`unavailable`: the client's ack says so), and a
//! `NOT_OWNER` refusal is retried after the live set is read again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use switchboard_gateway::Gateway;
use switchboard_proto::v1::router_client::RouterClient;
use switchboard_proto::v1::{
    self, Barrier, GatewayMessage, Hello, Membership, Presence, Resync, RoomPresence, RouterMessage, gateway_message,
    router_message,
};
use switchboard_router::membership::LiveSet;
use switchboard_router::ownership::owner;
use switchboard_router::{GatewayId, RouterId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::lanes::lane_key;

/// Entries per `Resync` message.
const RESYNC_PART: usize = 1000;

/// What became of a publish.
#[derive(Debug)]
pub(crate) enum Outcome {
    Published(v1::Published),
    Refused(v1::Refused),
    /// The stream broke before an answer.
    Lost,
}

/// One router as this gateway sees it.
struct Conn {
    inbox: mpsc::UnboundedSender<GatewayMessage>,
    client: Mutex<Option<RouterClient<Channel>>>,
    connected: AtomicBool,
    stop: CancellationToken,
}

/// The sessions with every live router.
pub(crate) struct Routers {
    gateway_id: GatewayId,
    address: String,
    gateway: Arc<std::sync::OnceLock<Gateway>>,
    conns: Mutex<HashMap<RouterId, Arc<Conn>>>,
    live: watch::Receiver<LiveSet>,
    next_id: AtomicU64,
    pending: DashMap<u64, (RouterId, oneshot::Sender<Outcome>)>,
    barriers: DashMap<u64, (RouterId, oneshot::Sender<()>)>,
}

impl Routers {
    pub(crate) fn new(
        gateway_id: GatewayId,
        address: String,
        gateway: Arc<std::sync::OnceLock<Gateway>>,
        live: watch::Receiver<LiveSet>,
    ) -> Arc<Self> {
        Arc::new(Self {
            gateway_id,
            address,
            gateway,
            conns: Mutex::new(HashMap::new()),
            live,
            next_id: AtomicU64::new(1),
            pending: DashMap::new(),
            barriers: DashMap::new(),
        })
    }

    /// The owner of a key among the live routers, as this gateway sees them.
    pub(crate) fn owner_of(&self, key: &str) -> Option<RouterId> {
        owner(key, self.live.borrow().ids()).cloned()
    }

    /// Whether a session with at least one router is up.
    pub(crate) fn any_connected(&self) -> bool {
        lock(&self.conns).values().any(|conn| conn.connected.load(Ordering::Acquire))
    }

    /// Queues a message for the owner of `key`; false when there is none.
    pub(crate) fn send_to_owner(&self, key: &str, message: gateway_message::Message) -> bool {
        let Some(router) = self.owner_of(key) else { return false };
        self.send(&router, message)
    }

    fn send(&self, router: &RouterId, message: gateway_message::Message) -> bool {
        let conns = lock(&self.conns);
        let Some(conn) = conns.get(router) else { return false };
        conn.inbox.send(GatewayMessage { message: Some(message) }).is_ok()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a publish to `router` and waits for its outcome.
    pub(crate) async fn publish(&self, router: &RouterId, mut publish: v1::Publish, timeout: Duration) -> Outcome {
        let id = self.next_id();
        publish.id = id;
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, (router.clone(), tx));
        if !self.send(router, gateway_message::Message::Publish(publish)) {
            self.pending.remove(&id);
            return Outcome::Lost;
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::Lost,
            Err(_) => {
                self.pending.remove(&id);
                Outcome::Lost
            }
        }
    }

    /// Waits until the owners of `keys` applied what was queued for them so
    /// far (bounded by `timeout`; a router that does not answer in time is
    /// given up on).
    pub(crate) async fn barrier(&self, keys: impl IntoIterator<Item = String>, timeout: Duration) {
        let mut routers: Vec<RouterId> = keys.into_iter().filter_map(|key| self.owner_of(&key)).collect();
        routers.sort_unstable();
        routers.dedup();
        let mut waits = Vec::with_capacity(routers.len());
        for router in routers {
            let id = self.next_id();
            let (tx, rx) = oneshot::channel();
            self.barriers.insert(id, (router.clone(), tx));
            if self.send(&router, gateway_message::Message::Barrier(Barrier { id })) {
                waits.push((id, rx));
            } else {
                self.barriers.remove(&id);
            }
        }
        for (id, rx) in waits {
            if tokio::time::timeout(timeout, rx).await.is_err() {
                self.barriers.remove(&id);
            }
        }
    }

    /// A unary client of `router`, when its session is up.
    pub(crate) fn client(&self, router: &RouterId) -> Option<RouterClient<Channel>> {
        lock(&self.conns).get(router).and_then(|conn| lock(&conn.client).clone())
    }

    /// Follows the live routers until `stop`: a session task per router,
    /// and a resync to every router when the set changes.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut live = self.live.clone();
        loop {
            let set = live.borrow_and_update().clone();
            self.reconcile(&set, &stop);
            tokio::select! {
                () = stop.cancelled() => break,
                changed = live.changed() => if changed.is_err() { break },
            }
        }
        for conn in lock(&self.conns).drain().map(|(_, conn)| conn) {
            conn.stop.cancel();
        }
    }

    fn reconcile(self: &Arc<Self>, set: &LiveSet, stop: &CancellationToken) {
        let mut existing = Vec::new();
        {
            let mut conns = lock(&self.conns);
            let gone: Vec<RouterId> = conns.keys().filter(|id| !set.contains(id.as_str())).cloned().collect();
            for id in gone {
                if let Some(conn) = conns.remove(&id) {
                    conn.stop.cancel();
                    tracing::info!(router = %id, "router left: session closed");
                }
                self.fail_router(&id);
            }
            for member in set.members() {
                if let Some(conn) = conns.get(&member.id) {
                    existing.push((member.id.clone(), conn.clone()));
                    continue;
                }
                let (inbox, rx) = mpsc::unbounded_channel();
                let conn = Arc::new(Conn {
                    inbox,
                    client: Mutex::new(None),
                    connected: AtomicBool::new(false),
                    stop: stop.child_token(),
                });
                conns.insert(member.id.clone(), conn.clone());
                let routers = self.clone();
                let (id, address) = (member.id.clone(), member.address.clone());
                tokio::spawn(async move { routers.session(id, address, conn, rx).await });
            }
        }
        // Ownership may have moved: tell every router what it owns now. Read
        // without the lock: reading the rooms takes the room index's locks,
        // under which joins announce (and so take this lock).
        for (id, conn) in existing {
            for message in self.resync_for(&id) {
                let _ = conn.inbox.send(message);
            }
        }
    }

    /// Fails what waits on a router that left or whose stream broke.
    fn fail_router(&self, router: &RouterId) {
        let ids: Vec<u64> = self.pending.iter().filter(|e| &e.value().0 == router).map(|e| *e.key()).collect();
        for id in ids {
            if let Some((_, (_, tx))) = self.pending.remove(&id) {
                let _ = tx.send(Outcome::Lost);
            }
        }
        let ids: Vec<u64> = self.barriers.iter().filter(|e| &e.value().0 == router).map(|e| *e.key()).collect();
        for id in ids {
            self.barriers.remove(&id);
        }
    }

    /// One router's session, reconnecting until the router leaves.
    async fn session(
        self: Arc<Self>,
        router: RouterId,
        address: String,
        conn: Arc<Conn>,
        mut inbox: mpsc::UnboundedReceiver<GatewayMessage>,
    ) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if conn.stop.is_cancelled() {
                return;
            }
            match self.stream_once(&router, &address, &conn, &mut inbox).await {
                Ok(()) => return,
                Err(error) => {
                    conn.connected.store(false, Ordering::Release);
                    *lock(&conn.client) = None;
                    self.fail_router(&router);
                    metrics::counter!("switchboard_gateway_router_session_failures_total").increment(1);
                    tracing::warn!(router = %router, %address, %error, "router session failed; reconnecting");
                }
            }
            tokio::select! {
                () = conn.stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Opens one stream and runs it until it breaks (`Err`) or the router
    /// leaves (`Ok`).
    async fn stream_once(
        &self,
        router: &RouterId,
        address: &str,
        conn: &Conn,
        inbox: &mut mpsc::UnboundedReceiver<GatewayMessage>,
    ) -> Result<(), String> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = tokio::select! {
            () = conn.stop.cancelled() => return Ok(()),
            channel = endpoint.connect() => channel.map_err(|e| format!("connect: {e}"))?,
        };
        // History replies can be large (a room's kept messages).
        let mut client = RouterClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
        let (out, out_rx) = mpsc::channel::<GatewayMessage>(1024);
        let hello = Hello {
            gateway_id: self.gateway_id.to_string(),
            address: self.address.clone(),
            revision: switchboard_proto::REVISION,
        };
        out.send(GatewayMessage { message: Some(gateway_message::Message::Hello(hello)) })
            .await
            .map_err(|_| "stream closed".to_owned())?;
        for message in self.resync_for(router) {
            out.send(message).await.map_err(|_| "stream closed".to_owned())?;
        }
        let response = client
            .session(tokio_stream::wrappers::ReceiverStream::new(out_rx))
            .await
            .map_err(|status| format!("session: {status}"))?;
        let mut answers = response.into_inner();
        *lock(&conn.client) = Some(client);
        conn.connected.store(true, Ordering::Release);
        tracing::info!(router = %router, %address, "router session open");
        loop {
            tokio::select! {
                () = conn.stop.cancelled() => return Ok(()),
                message = inbox.recv() => {
                    let Some(message) = message else { return Ok(()) };
                    out.send(message).await.map_err(|_| "stream closed".to_owned())?;
                }
                answer = answers.message() => match answer {
                    Ok(Some(answer)) => self.on_answer(answer),
                    Ok(None) => return Err("the router closed the stream".to_owned()),
                    Err(status) => return Err(format!("stream: {status}")),
                },
            }
        }
    }

    fn on_answer(&self, answer: RouterMessage) {
        match answer.message {
            Some(router_message::Message::Published(published)) => {
                if let Some((_, (_, tx))) = self.pending.remove(&published.id) {
                    let _ = tx.send(Outcome::Published(published));
                }
            }
            Some(router_message::Message::Refused(refused)) => {
                if let Some((_, (_, tx))) = self.pending.remove(&refused.id) {
                    let _ = tx.send(Outcome::Refused(refused));
                }
            }
            Some(router_message::Message::BarrierReached(reached)) => {
                if let Some((_, (_, tx))) = self.barriers.remove(&reached.id) {
                    let _ = tx.send(());
                }
            }
            Some(router_message::Message::Welcome(welcome)) => {
                tracing::debug!(router = %welcome.router_id, revision = welcome.revision, "welcome");
            }
            None => {}
        }
    }

    /// Everything this gateway holds that `router` owns, as `Resync` parts.
    fn resync_for(&self, router: &RouterId) -> Vec<GatewayMessage> {
        let live = self.live.borrow().clone();
        let owns = |key: &str| owner(key, live.ids()) == Some(router);
        let mut memberships = Vec::new();
        let mut room_presences = Vec::new();
        let mut presences = Vec::new();
        if let Some(gateway) = self.gateway.get() {
            for nsp in gateway.namespaces() {
                let name = nsp.name();
                for room in nsp.local_rooms() {
                    if owns(&lane_key(name, Some(&room))) {
                        memberships.push(Membership { nsp: name.to_owned(), room: room.to_string(), present: true });
                    }
                }
                for (room, user) in nsp.local_room_users() {
                    if owns(&lane_key(name, Some(&room))) {
                        room_presences.push(RoomPresence {
                            nsp: name.to_owned(),
                            room: room.to_string(),
                            user_id: user.to_string(),
                            present: true,
                        });
                    }
                }
                if owns(&lane_key(name, None)) {
                    for user in nsp.online_users() {
                        presences.push(Presence { nsp: name.to_owned(), user_id: user, online: true });
                    }
                }
            }
        }
        let mut parts = Vec::new();
        loop {
            let part = Resync {
                memberships: take(&mut memberships),
                room_presences: take(&mut room_presences),
                presences: take(&mut presences),
                last: false,
            };
            let done = memberships.is_empty() && room_presences.is_empty() && presences.is_empty();
            parts.push(part);
            if done {
                break;
            }
        }
        if let Some(last) = parts.last_mut() {
            last.last = true;
        }
        parts.into_iter().map(|part| GatewayMessage { message: Some(gateway_message::Message::Resync(part)) }).collect()
    }
}

/// The first `RESYNC_PART` items, taken out.
fn take<T>(items: &mut Vec<T>) -> Vec<T> {
    let n = items.len().min(RESYNC_PART);
    items.drain(..n).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
