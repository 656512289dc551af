//! A Socket.IO socket: one client's connection to one namespace.
//!
//! It carries the identity the token gave, its rooms, the acknowledgements
//! the server waits for, and its rate limit. Emitting queues frames on the
//! Engine.IO session that carries it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use switchboard_auth::Identity;
use switchboard_protocol::packet::PacketKind;
use tokio::sync::oneshot;

use crate::encode;
use crate::engine::EngineConn;
use crate::frame::Frame;
use crate::handler::DisconnectReason;
use crate::limits::{Limit, TokenBucket};
use crate::namespace::{Namespace, Target};
use crate::outbox::PushError;
use crate::sync::lock;

/// Why joining a room was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("too many rooms")]
    TooManyRooms,
    #[error("room name too long")]
    NameTooLong,
    #[error("invalid room name")]
    InvalidName,
}

/// Why a server-to-client acknowledgement did not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("operation has timed out")]
    Timeout,
    #[error("socket has been disconnected")]
    Disconnected,
}

/// An acknowledgement from the client: its arguments and attachments.
#[derive(Debug, Clone)]
pub struct AckReply {
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
}

struct Limiter {
    bucket: TokenBucket,
    last_notice: Option<Instant>,
}

/// A delivery held while a resumed socket replays: its offset and frames.
type Held = (Option<Arc<str>>, Vec<Frame>);

/// One socket.
pub struct Socket {
    id: Arc<str>,
    key: u64,
    pid: Option<Arc<str>>,
    nsp: Arc<Namespace>,
    conn: Arc<EngineConn>,
    identity: Identity,
    user_id: Arc<str>,
    rooms: Mutex<Vec<Arc<str>>>,
    acks: Mutex<HashMap<u64, oneshot::Sender<AckReply>>>,
    limiter: Mutex<Limiter>,
    connected: AtomicBool,
    recovered: bool,
    /// While a resumed socket replays what it missed (in a cluster), live
    /// deliveries wait here with their offsets.
    holding: AtomicBool,
    held: Mutex<Vec<Held>>,
    /// After a replay: per room tag, the last stream id replayed, until a
    /// later delivery of that room passes (or a few seconds): a live copy
    /// of a replayed packet (appended before the replay read the stream,
    /// published after) is dropped.
    filtering: AtomicBool,
    floor: Mutex<Floor>,
}

/// Replayed positions a resumed socket still filters live deliveries by.
#[derive(Debug, Default)]
struct Floor {
    until: Option<Instant>,
    lanes: Vec<(String, (u64, u64))>,
}

/// How long a resumed socket filters live deliveries at most.
const FLOOR_FOR: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("id", &self.id).field("nsp", &self.nsp.name()).finish()
    }
}

pub(crate) struct NewSocket {
    pub id: Arc<str>,
    pub key: u64,
    pub pid: Option<Arc<str>>,
    pub nsp: Arc<Namespace>,
    pub conn: Arc<EngineConn>,
    pub identity: Identity,
    pub recovered: bool,
}

impl Socket {
    pub(crate) fn new(new: NewSocket) -> Arc<Self> {
        let limits = &new.nsp.config.limits;
        Arc::new(Self {
            user_id: Arc::from(new.identity.user_id.as_str()),
            id: new.id,
            key: new.key,
            pid: new.pid,
            limiter: Mutex::new(Limiter {
                bucket: TokenBucket::new(limits.event_burst, Instant::now()),
                last_notice: None,
            }),
            nsp: new.nsp,
            conn: new.conn,
            identity: new.identity,
            rooms: Mutex::new(Vec::new()),
            acks: Mutex::new(HashMap::new()),
            connected: AtomicBool::new(true),
            recovered: new.recovered,
            holding: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
            filtering: AtomicBool::new(false),
            floor: Mutex::new(Floor::default()),
        })
    }

    /// The Socket.IO id (not the Engine.IO session id).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn id_arc(&self) -> Arc<str> {
        self.id.clone()
    }

    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    pub(crate) fn pid(&self) -> Option<&Arc<str>> {
        self.pid.as_ref()
    }

    /// The query string of the Engine.IO handshake request.
    pub fn handshake_query(&self) -> &str {
        self.conn.handshake_query()
    }

    /// Who the token says this is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub(crate) fn user_id_arc(&self) -> Arc<str> {
        self.user_id.clone()
    }

    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.nsp
    }

    /// Whether this socket took over a previous session with every packet it
    /// missed.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Marks the socket gone; true the first time only.
    pub(crate) fn mark_disconnected(&self) -> bool {
        self.connected.swap(false, Ordering::AcqRel)
    }

    /// The rooms this socket is in (its own id not included).
    pub fn rooms(&self) -> Vec<Arc<str>> {
        lock(&self.rooms).clone()
    }

    pub fn in_room(&self, room: &str) -> bool {
        lock(&self.rooms).iter().any(|r| &**r == room)
    }

    /// Joins a room, within the room limits.
    pub fn join(self: &Arc<Self>, room: &str) -> Result<(), JoinError> {
        let limits = &self.nsp.config.limits;
        if room.is_empty() {
            return Err(JoinError::InvalidName);
        }
        if self.nsp.socket(room).is_some() {
            // A socket's id is its private room (its own included): joining
            // another's would capture what is sent to that socket.
            return Err(JoinError::InvalidName);
        }
        if room.chars().count() > limits.max_room_name_len {
            Limit::RoomNameLength.count();
            return Err(JoinError::NameTooLong);
        }
        let room: Arc<str> = {
            let mut rooms = lock(&self.rooms);
            if rooms.iter().any(|r| &**r == room) {
                return Ok(());
            }
            if rooms.len() >= limits.max_rooms_per_socket {
                Limit::RoomsPerSocket.count();
                return Err(JoinError::TooManyRooms);
            }
            let room: Arc<str> = Arc::from(room);
            rooms.push(room.clone());
            room
        };
        if self.connected() {
            self.nsp.join_index(&room, self);
            self.track_session();
        }
        Ok(())
    }

    /// In a cluster, tells the link this socket's rooms changed.
    pub(crate) fn track_session(&self) {
        if let (Some(link), Some(pid)) = (&self.nsp.link, &self.pid)
            && self.connected()
        {
            let state = crate::cluster::SessionState {
                pid: pid.clone(),
                sid: self.id.clone(),
                user_id: self.user_id.clone(),
                rooms: self.rooms(),
            };
            // Live records are only queued: the future is ready at once.
            let _ = futures_util::FutureExt::now_or_never(link.session(
                self.nsp.name(),
                state,
                crate::cluster::Phase::Live,
            ));
        }
    }

    /// Leaves a room; true if it was in it.
    pub fn leave(&self, room: &str) -> bool {
        let was_in = {
            let mut rooms = lock(&self.rooms);
            let before = rooms.len();
            rooms.retain(|r| &**r != room);
            rooms.len() != before
        };
        if was_in {
            self.nsp.leave_index(room, self);
            self.track_session();
        }
        was_in
    }

    pub(crate) fn take_rooms(&self) -> Vec<Arc<str>> {
        std::mem::take(&mut *lock(&self.rooms))
    }

    /// Emits an event to this socket (kept for recovery).
    pub fn emit(&self, event: &str, args: &[Value]) {
        self.emit_to_self(event, args, &[], false);
    }

    /// Emits an event that may be dropped under load and is not recovered.
    pub fn emit_volatile(&self, event: &str, args: &[Value]) {
        self.emit_to_self(event, args, &[], true);
    }

    /// Emits an event with binary attachments.
    pub fn emit_binary(&self, event: &str, args: &[Value], attachments: &[Bytes]) {
        self.emit_to_self(event, args, attachments, false);
    }

    fn emit_to_self(&self, event: &str, args: &[Value], attachments: &[Bytes], volatile: bool) {
        let target = Target { rooms: vec![self.id.clone()], except: Vec::new(), volatile };
        let frames = self.nsp.encode_logged(&target, event, args, attachments);
        self.push_frames(&frames);
    }

    /// Emits an event and waits for the client's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: &[Value],
        timeout: Option<Duration>,
    ) -> Result<AckReply, AckError> {
        let id = self.nsp.next_ack_id();
        let (tx, rx) = oneshot::channel();
        lock(&self.acks).insert(id, tx);
        self.push_frames(&encode::event(self.nsp.name(), Some(id), event, args, &[], None));
        let timeout = timeout.unwrap_or(self.nsp.config.ack_timeout);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                lock(&self.acks).remove(&id);
                metrics::counter!("switchboard_gateway_ack_timeouts_total").increment(1);
                Err(AckError::Timeout)
            }
        }
    }

    /// Answers the client's acknowledgement `id`.
    pub fn ack(&self, id: u64, args: &[Value]) {
        self.push_frames(&encode::ack(self.nsp.name(), id, args, &[]));
    }

    /// Answers with binary attachments.
    pub fn ack_binary(&self, id: u64, args: &[Value], attachments: &[Bytes]) {
        self.push_frames(&encode::ack(self.nsp.name(), id, args, attachments));
    }

    /// A broadcast to rooms that leaves this socket out (`socket.to(room)`).
    pub fn to(&self, room: impl Into<Arc<str>>) -> Target {
        Target::room(room).except(self.id.clone())
    }

    /// Emits to a target through this socket's namespace.
    pub fn broadcast(&self, target: &Target, event: &str, args: &[Value]) -> usize {
        self.nsp.emit(target, event, args)
    }

    /// Sends DISCONNECT and takes the socket out of its namespace; with
    /// `close`, the whole Engine.IO session closes too.
    pub async fn disconnect(self: &Arc<Self>, close: bool) {
        if !self.connected() {
            return;
        }
        self.push_frames(&[encode::control(PacketKind::Disconnect, self.nsp.name(), None)]);
        self.conn.forget_socket(self.nsp.name());
        self.nsp.remove_socket(self, DisconnectReason::ServerNamespaceDisconnect).await;
        if close {
            self.conn.request_close(switchboard_protocol::session::CloseReason::ForcedClose);
        }
    }

    /// Queues a broadcast's frames; `offset` is its offset argument, by which
    /// a resumed socket tells replayed packets from live ones.
    pub(crate) fn push_delivery(&self, frames: &[Frame], offset: Option<&Arc<str>>) {
        if self.holding.load(Ordering::Acquire) {
            let mut held = lock(&self.held);
            if self.holding.load(Ordering::Acquire) {
                held.push((offset.cloned(), frames.to_vec()));
                return;
            }
        }
        if self.filtering.load(Ordering::Acquire) && self.replayed_already(offset.map(|o| &**o)) {
            return;
        }
        self.push_frames(frames);
    }

    /// Whether a delivery with this offset was sent by the replay; a later
    /// one ends the filtering of its room.
    fn replayed_already(&self, offset: Option<&str>) -> bool {
        let mut floor = lock(&self.floor);
        if floor.until.is_none_or(|until| Instant::now() >= until) {
            floor.lanes.clear();
        }
        let mut replayed = false;
        if let Some((id, tag)) = offset.and_then(|offset| offset.rsplit_once('@'))
            && let Some(index) = floor.lanes.iter().position(|(t, _)| t == tag)
            && let Some(id) = crate::cluster::stream_id_key(id)
        {
            if id <= floor.lanes[index].1 {
                replayed = true;
            } else {
                floor.lanes.swap_remove(index);
            }
        }
        if floor.lanes.is_empty() {
            self.filtering.store(false, Ordering::Release);
        }
        replayed
    }

    /// Holds live deliveries until [`release`](Self::release).
    pub(crate) fn hold(&self) {
        self.holding.store(true, Ordering::Release);
    }

    /// Sends the held deliveries, except those a replay already sent: per
    /// room tag, offsets at or before `last` (`<stream id>@<tag>`); later
    /// deliveries are filtered the same way until each room moves on.
    pub(crate) fn release(&self, last: &[(String, String)]) {
        {
            let mut floor = lock(&self.floor);
            floor.lanes =
                last.iter().filter_map(|(tag, id)| Some((tag.clone(), crate::cluster::stream_id_key(id)?))).collect();
            floor.until = Some(Instant::now() + FLOOR_FOR);
            self.filtering.store(!floor.lanes.is_empty(), Ordering::Release);
        }
        let mut held = lock(&self.held);
        for (offset, frames) in held.drain(..) {
            if !self.filtering.load(Ordering::Acquire) || !self.replayed_already(offset.as_deref()) {
                self.push_frames(&frames);
            }
        }
        self.holding.store(false, Ordering::Release);
    }

    pub(crate) fn push_frames(&self, frames: &[Frame]) {
        match self.conn.outbox().push_all(frames) {
            Ok(()) | Err(PushError::Closed) | Err(PushError::Dropped) => {}
            Err(PushError::Full) => {
                Limit::PendingBytes.count();
                metrics::counter!("switchboard_gateway_slow_reader_disconnects_total").increment(1);
                self.conn.request_close(switchboard_protocol::session::CloseReason::SlowReader);
            }
        }
    }

    /// Resolves a pending server-to-client acknowledgement.
    pub(crate) fn resolve_ack(&self, id: u64, reply: AckReply) {
        if let Some(tx) = lock(&self.acks).remove(&id) {
            let _ = tx.send(reply);
        }
    }

    pub(crate) fn fail_pending_acks(&self) {
        lock(&self.acks).clear();
    }

    /// Takes one token from the event rate limit. On refusal, the second
    /// value says whether the client should be told (at most once a second).
    pub(crate) fn take_event_token(&self) -> Result<(), bool> {
        let limits = &self.nsp.config.limits;
        let now = Instant::now();
        let mut limiter = lock(&self.limiter);
        if limiter.bucket.try_take(limits.event_rate, limits.event_burst, now) {
            return Ok(());
        }
        Limit::EventRate.count();
        let notify = limiter.last_notice.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if notify {
            limiter.last_notice = Some(now);
        }
        Err(notify)
    }
}
