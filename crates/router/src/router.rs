//! [`Router`]: one router replica. It ties together its lease and view of
//! the live routers ([`membership`](crate::membership)), which keys it owns
//! ([`ownership`](crate::ownership)), what gateways announced to it
//! ([`rooms`](crate::rooms)) and broadcasting ([`fanout`](crate::fanout)).
//!
//! It knows no transport: the gRPC layer (and, in standalone mode, the
//! in-process gateway) calls these methods and maps their errors to wire
//! outcomes. Announcements are recorded whoever owns the key in this
//! router's view, which may lag a gateway's by one poll; what this router
//! turns out not to own is dropped at the next change of the live set, when
//! gateways re-announce to the new owners. Broadcasts are refused unless
//! this router owns every lane, so that two routers never number one room.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use switchboard_broker::{Broker, Retention};
use switchboard_proto::v1;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::RouterConfig;
use crate::fanout::{Fanout, Lane, PUBLISHES, Pending, Publish, Published, outcome_label};
use crate::history;
use crate::membership::{GATEWAYS, LiveSet, Membership, ROUTERS};
use crate::ownership::{owner, room_key};
use crate::rooms::{Holdings, PresenceChange, PresenceEvent, RoomTable};
use crate::{GatewayId, Member, RouterError, RouterId};

/// One router replica; clones share it.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    id: RouterId,
    routers: Membership,
    gateways: Membership,
    table: Arc<Mutex<RoomTable>>,
    fanout: Fanout,
    broker: Arc<dyn Broker>,
    retention: Retention,
    /// Leaving: owns nothing any more (see [`Router::retire`]).
    retired: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("id", &self.inner.id).finish_non_exhaustive()
    }
}

impl Router {
    /// A replica `id` that gateways reach on `address` (its gRPC address),
    /// over `broker`. Nothing happens until [`run`](Self::run).
    pub fn new(id: RouterId, address: impl Into<String>, broker: Arc<dyn Broker>, config: RouterConfig) -> Router {
        let own = Member::new(id.clone(), address);
        let table = Arc::new(Mutex::new(RoomTable::new()));
        let inner = Inner {
            routers: Membership::register(broker.clone(), ROUTERS, own, config.lease),
            gateways: Membership::observe(broker.clone(), GATEWAYS, config.lease),
            fanout: Fanout::new(&id, broker.clone(), table.clone(), &config),
            table,
            broker,
            retention: config.retention,
            retired: std::sync::atomic::AtomicBool::new(false),
            id,
        };
        Router { inner: Arc::new(inner) }
    }

    pub fn id(&self) -> &RouterId {
        &self.inner.id
    }

    /// The live routers as this replica sees them, and their changes.
    pub fn live_routers(&self) -> watch::Receiver<LiveSet> {
        self.inner.routers.subscribe()
    }

    /// The live gateways as this replica sees them, and their changes.
    pub fn live_gateways(&self) -> watch::Receiver<LiveSet> {
        self.inner.gateways.subscribe()
    }

    /// The owner of an ownership key among the live routers.
    pub fn owner(&self, key: &str) -> Option<RouterId> {
        if self.inner.retired.load(std::sync::atomic::Ordering::Acquire) {
            let me = &self.inner.id;
            return self.inner.routers.with_live(|live| owner(key, live.ids().filter(|id| *id != me)).cloned());
        }
        self.inner.routers.with_live(|live| owner(key, live.ids()).cloned())
    }

    /// Hands everything over before leaving: from now on this replica owns
    /// no key in its own view, so publishes to it are refused `NOT_OWNER`
    /// (the gateway publishes again to the next owner) instead of being
    /// numbered by two routers at once while the others learn it is gone.
    pub fn retire(&self) {
        self.inner.retired.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether this replica owns `key` in its view.
    pub fn owns(&self, key: &str) -> bool {
        self.owner(key).as_ref() == Some(&self.inner.id)
    }

    /// A gateway's first member of a room joined (`present`), or its last
    /// left; true when that changed the room's gateways.
    pub fn membership(&self, gateway: &GatewayId, nsp: &str, room: &str, present: bool) -> bool {
        self.table().membership(gateway, nsp, room, present)
    }

    /// A user's first socket on a gateway connected (`online`), or its last
    /// there left; whether the user came online or went offline.
    pub fn presence(&self, gateway: &GatewayId, nsp: &str, user: &str, online: bool) -> PresenceChange {
        self.table().presence(gateway, nsp, user, online)
    }

    /// A user's first socket in a room on a gateway joined it (`present`),
    /// or its last there left; whether the user joined or left the room
    /// cluster-wide.
    pub fn room_presence(
        &self,
        gateway: &GatewayId,
        nsp: &str,
        room: &str,
        user: &str,
        present: bool,
    ) -> PresenceChange {
        self.table().room_presence(gateway, nsp, room, user, present)
    }

    /// Replaces what a gateway holds here (it re-announced everything).
    pub fn resync(&self, gateway: &GatewayId, state: Holdings) -> Vec<PresenceEvent> {
        self.table().resync(gateway, state)
    }

    /// Drops a gateway whose lease ended: its rooms, its users (those that
    /// went offline are returned) and its delivery queue.
    pub fn forget_gateway(&self, gateway: &GatewayId) -> Vec<PresenceEvent> {
        let offline = self.table().forget_gateway(gateway);
        self.inner.fanout.forget_gateway(gateway);
        offline
    }

    /// The gateways holding members of a room.
    pub fn gateways_of(&self, nsp: &str, room: &str) -> Vec<GatewayId> {
        self.table().gateways_of(nsp, room)
    }

    /// The users in a room (that this replica owns).
    pub fn room_users(&self, nsp: &str, room: &str) -> Vec<String> {
        self.table().room_users(nsp, room)
    }

    /// The users online in a namespace (whose presence this replica owns).
    pub fn online_users(&self, nsp: &str) -> Vec<String> {
        self.table().online_users(nsp)
    }

    /// The gateways holding a socket of any of `users` in a namespace
    /// (whose presence this replica owns), sorted.
    pub fn locate_users<'a>(&self, nsp: &str, users: impl IntoIterator<Item = &'a str>) -> Vec<GatewayId> {
        self.table().locate_users(nsp, users)
    }

    /// How many rooms this replica's table holds.
    pub fn rooms_owned(&self) -> usize {
        self.table().room_count()
    }

    /// Whether this replica holds its lease in `sb:routers` and reaches the
    /// broker (its last renewal and read of the live set succeeded): what
    /// readiness and the gRPC health status report.
    pub fn is_healthy(&self) -> bool {
        self.inner.routers.is_healthy()
    }

    /// Broadcasts a packet (see [`fanout`](crate::fanout)): stored and
    /// numbered, then delivered once to each gateway with members;
    /// [`start_publish`](Self::start_publish) and [`Pending::finish`] in one.
    pub async fn publish(&self, publish: Publish) -> Result<Published, RouterError> {
        self.start_publish(publish, Instant::now()).await?.finish().await
    }

    /// The sequential stage of a broadcast that arrived at `arrived`:
    /// checked, and queued for the appender when this returns, so that
    /// broadcasts started one after the other are appended, numbered and
    /// queued for their gateways in that order; [`Pending::finish`] then
    /// waits for that and for its batches, concurrently with later
    /// broadcasts.
    ///
    /// Refused with [`RouterError::Invalid`] for a publish that breaks the
    /// contract (volatile with store; `id_field` without store, with more
    /// than one room, or on a packet whose first argument is not a JSON
    /// object), with [`RouterError::NotOwner`] unless this replica owns each
    /// of its rooms (or the namespace), with [`RouterError::Unavailable`]
    /// when the broker failed, now or since `arrived`.
    pub async fn start_publish(&self, publish: Publish, arrived: Instant) -> Result<Pending, RouterError> {
        let outcome = self.begin(publish, arrived).await;
        if let Err(error) = &outcome {
            metrics::counter!(PUBLISHES, "outcome" => outcome_label(Some(error))).increment(1);
        }
        outcome
    }

    async fn begin(&self, publish: Publish, arrived: Instant) -> Result<Pending, RouterError> {
        let lanes = Lane::of(&publish.nsp, &publish.rooms);
        validate(&publish, &lanes)?;
        for lane in &lanes {
            let owner = self.owner(&lane.key);
            if owner.as_ref() != Some(&self.inner.id) {
                return Err(RouterError::NotOwner { key: lane.key.clone(), owner });
            }
        }
        self.inner.fanout.begin(lanes, publish, arrived).await
    }

    /// The kept messages of a room (see the [history module](crate::history)):
    /// after the stream id `since`, or the newest; at most `limit`, oldest
    /// first, each with its id written in. Refused with
    /// [`RouterError::NotOwner`] unless this replica owns the room, with
    /// [`RouterError::Invalid`] when `since` is not a stream id, with
    /// [`RouterError::Unavailable`] when the broker failed.
    pub async fn history(
        &self,
        nsp: &str,
        room: &str,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<v1::StoredMessage>, RouterError> {
        let key = room_key(nsp, room);
        let owner = self.owner(&key);
        if owner.as_ref() != Some(&self.inner.id) {
            return Err(RouterError::NotOwner { key, owner });
        }
        let stream = format!("sb:{key}");
        history::read(&*self.inner.broker, &stream, since, limit, self.inner.retention.max_len).await
    }

    /// Holds the lease and follows the live routers and gateways until
    /// `shutdown`, then removes the lease; the error is that of removing it
    /// (the lease then ends by itself within its ttl).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RouterError> {
        let (stop, stopped) = watch::channel(false);
        let wait = |mut stopped: watch::Receiver<bool>| async move {
            // An error means the sender is gone, which is a stop too.
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let trigger = async {
            shutdown.await;
            let _ = stop.send(true);
        };
        let (left, _, (), ()) = tokio::join!(
            self.inner.routers.run(wait(stopped.clone())),
            self.inner.gateways.run(wait(stopped.clone())),
            self.follow(wait(stopped)),
            trigger,
        );
        tracing::info!(router = %self.inner.id, "router stopped");
        left
    }

    /// Reacts to changes of the live sets: drops what moved to another
    /// owner, forgets gateways whose lease ended.
    async fn follow(&self, shutdown: impl Future<Output = ()>) {
        let mut routers = self.inner.routers.subscribe();
        let mut gateways = self.inner.gateways.subscribe();
        let mut known = gateways.borrow_and_update().clone();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Ok(()) = routers.changed() => {
                    let live = routers.borrow_and_update().clone();
                    let id = &self.inner.id;
                    self.table().retain_owned(|key| owner(key, live.ids()) == Some(id));
                }
                Ok(()) = gateways.changed() => {
                    let live = gateways.borrow_and_update().clone();
                    // Only gateways seen live and then gone: one that never
                    // registered (or not yet) keeps what it announced.
                    for gone in known.members().iter().filter(|member| !live.contains(member.id.as_str())) {
                        let offline = self.forget_gateway(&gone.id);
                        tracing::info!(gateway = %gone.id, users_offline = offline.len(), "gateway lease ended");
                    }
                    known = live;
                }
            }
        }
    }

    fn table(&self) -> MutexGuard<'_, RoomTable> {
        self.inner.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What the contract refuses as INVALID in a publish.
fn validate(publish: &Publish, lanes: &[Lane]) -> Result<(), RouterError> {
    if publish.volatile && publish.store {
        return Err(RouterError::Invalid("volatile with store".to_owned()));
    }
    if !publish.id_field.is_empty() {
        if !publish.store {
            return Err(RouterError::Invalid("id_field without store".to_owned()));
        }
        if lanes.len() > 1 {
            return Err(RouterError::Invalid("id_field with more than one room".to_owned()));
        }
        if publish.packet.with_field(&publish.id_field, "").is_none() {
            return Err(RouterError::Invalid("id_field: the first argument is not a JSON object".to_owned()));
        }
    }
    Ok(())
}
