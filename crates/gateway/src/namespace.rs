//! A namespace: its sockets, its room index, its users, its recovery log, and
//! broadcasting to any part of it.
//!
//! The room index is a sharded map from room name to members, so a broadcast
//! only locks the shard of its room while it queues one shared frame per
//! member; joins and broadcasts in other rooms go on in parallel. A socket's
//! own id is a room too, answered from the socket map instead of stored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use serde_json::Value;

use crate::cluster::{
    Accepted, ClusterLink, Command, CommandReply, Outgoing, Phase, SessionState, Unavailable, args_json,
};
use crate::config::Config;
use crate::encode;
use crate::frame::Frame;
use crate::handler::{DisconnectReason, Handler};
use crate::recovery::{Audience, Recovery};
use crate::socket::Socket;

/// Who a broadcast is for.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// Rooms or socket ids; empty means the whole namespace.
    pub rooms: Vec<Arc<str>>,
    /// Rooms or socket ids left out.
    pub except: Vec<Arc<str>>,
    /// Droppable under load and not kept for recovery.
    pub volatile: bool,
}

impl Target {
    /// Every socket of the namespace.
    pub fn all() -> Self {
        Self::default()
    }

    /// The members of one room.
    pub fn room(room: impl Into<Arc<str>>) -> Self {
        Self { rooms: vec![room.into()], ..Self::default() }
    }

    /// Leaves out a room or a socket.
    pub fn except(mut self, room: impl Into<Arc<str>>) -> Self {
        self.except.push(room.into());
        self
    }

    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }
}

/// One namespace.
pub struct Namespace {
    name: Arc<str>,
    handler: Arc<dyn Handler>,
    pub(crate) config: Arc<Config>,
    sockets: DashMap<Arc<str>, Arc<Socket>>,
    rooms: DashMap<Arc<str>, HashMap<u64, Arc<Socket>>>,
    users: DashMap<Arc<str>, Vec<Arc<Socket>>>,
    next_ack: AtomicU64,
    pub(crate) recovery: Option<Recovery>,
    /// In a cluster: where broadcasts go, and who hears of room and user
    /// changes.
    pub(crate) link: Option<Arc<dyn ClusterLink>>,
    /// In a cluster: sockets per (room, user) on this gateway, to announce a
    /// user's first and last socket in a room.
    room_users: DashMap<(Arc<str>, Arc<str>), usize>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("name", &self.name).field("sockets", &self.sockets.len()).finish()
    }
}

impl Namespace {
    pub(crate) fn new(
        name: &str,
        handler: Arc<dyn Handler>,
        config: Arc<Config>,
        link: Option<Arc<dyn ClusterLink>>,
    ) -> Self {
        // In a cluster the link keeps sessions and the streams are the log.
        let recovery = (!config.recovery_window.is_zero() && link.is_none())
            .then(|| Recovery::new(config.recovery_window, config.recovery_max_packets));
        Self {
            name: name.into(),
            handler,
            config,
            sockets: DashMap::new(),
            rooms: DashMap::new(),
            users: DashMap::new(),
            next_ack: AtomicU64::new(0),
            recovery,
            link,
            room_users: DashMap::new(),
        }
    }

    /// Whether sockets get a private id (`pid`) to recover their session.
    pub(crate) fn recovery_enabled(&self) -> bool {
        !self.config.recovery_window.is_zero()
    }

    /// Whether this namespace is part of a cluster.
    pub fn is_clustered(&self) -> bool {
        self.link.is_some()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn handler(&self) -> &Arc<dyn Handler> {
        &self.handler
    }

    /// The next server-to-client acknowledgement id (per namespace, from 0,
    /// as the reference server counts them).
    pub(crate) fn next_ack_id(&self) -> u64 {
        self.next_ack.fetch_add(1, Ordering::Relaxed)
    }

    /// A connected socket by id.
    pub fn socket(&self, id: &str) -> Option<Arc<Socket>> {
        self.sockets.get(id).map(|s| s.clone())
    }

    /// How many sockets are connected here.
    pub fn socket_count(&self) -> usize {
        self.sockets.len()
    }

    /// Every connected socket.
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.sockets.iter().map(|s| s.value().clone()).collect()
    }

    /// The connected sockets of one user.
    pub fn sockets_of_user(&self, user_id: &str) -> Vec<Arc<Socket>> {
        self.users.get(user_id).map(|s| s.clone()).unwrap_or_default()
    }

    /// How many sockets a user holds here.
    pub fn user_socket_count(&self, user_id: &str) -> usize {
        self.users.get(user_id).map_or(0, |s| s.len())
    }

    /// Users with at least one socket, each once.
    pub fn online_users(&self) -> Vec<String> {
        self.users.iter().map(|e| e.key().to_string()).collect()
    }

    /// The sockets in a room (a socket id names a room of one).
    pub fn room_members(&self, room: &str) -> Vec<Arc<Socket>> {
        if let Some(members) = self.rooms.get(room) {
            return members.values().cloned().collect();
        }
        self.socket(room).into_iter().collect()
    }

    /// Adds a connected socket, unless its user already holds `max_per_user`
    /// sockets here (checked and added under the user's entry lock, so
    /// concurrent connects cannot pass the limit together).
    pub(crate) fn add_socket(&self, socket: &Arc<Socket>, max_per_user: usize) -> bool {
        let mut sockets = self.users.entry(socket.user_id_arc()).or_default();
        if sockets.len() >= max_per_user {
            return false;
        }
        sockets.push(socket.clone());
        if sockets.len() == 1
            && let Some(link) = &self.link
        {
            link.user_changed(&self.name, socket.user_id(), true);
        }
        drop(sockets);
        self.sockets.insert(socket.id_arc(), socket.clone());
        true
    }

    /// Takes a socket out of the namespace: the handler hears of it while the
    /// socket is still in its rooms, then it leaves them, then its state is
    /// kept for recovery when the reason allows.
    pub(crate) async fn remove_socket(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        if !socket.mark_disconnected() {
            return;
        }
        self.handler.on_disconnect(socket, reason).await;
        let rooms = socket.take_rooms();
        for room in &rooms {
            self.leave_index(room, socket);
        }
        self.sockets.remove(socket.id());
        if let dashmap::Entry::Occupied(mut entry) = self.users.entry(socket.user_id_arc()) {
            entry.get_mut().retain(|s| !Arc::ptr_eq(s, socket));
            if entry.get().is_empty() {
                entry.remove();
                if let Some(link) = &self.link {
                    link.user_changed(&self.name, socket.user_id(), false);
                }
            }
        }
        socket.fail_pending_acks();
        if let Some(link) = &self.link {
            link.release_user_slot(&self.name, socket.user_id(), socket.id());
        }
        if let Some(pid) = socket.pid() {
            if let Some(recovery) = &self.recovery
                && reason.is_recoverable()
            {
                recovery.persist(pid.clone(), socket.id_arc(), socket.user_id_arc(), rooms);
            } else if let Some(link) = &self.link {
                let phase = if reason.is_recoverable() { Phase::Left } else { Phase::Closed };
                let state =
                    SessionState { pid: pid.clone(), sid: socket.id_arc(), user_id: socket.user_id_arc(), rooms };
                link.session(&self.name, state, phase).await;
            }
        }
        metrics::counter!("switchboard_gateway_disconnects_total", "reason" => reason.as_str()).increment(1);
    }

    pub(crate) fn join_index(&self, room: &Arc<str>, socket: &Arc<Socket>) {
        let mut members = self.rooms.entry(room.clone()).or_default();
        let first = members.is_empty();
        members.insert(socket.key(), socket.clone());
        let Some(link) = &self.link else { return };
        if first {
            link.room_changed(&self.name, room, true);
        }
        drop(members);
        let mut count = self.room_users.entry((room.clone(), socket.user_id_arc())).or_default();
        *count += 1;
        if *count == 1 {
            link.room_user_changed(&self.name, room, socket.user_id(), true);
        }
    }

    pub(crate) fn leave_index(&self, room: &str, socket: &Socket) {
        let room: Arc<str> = Arc::from(room);
        let mut was_in = false;
        if let dashmap::Entry::Occupied(mut entry) = self.rooms.entry(room.clone()) {
            was_in = entry.get_mut().remove(&socket.key()).is_some();
            if entry.get().is_empty() {
                entry.remove();
                if let Some(link) = &self.link {
                    link.room_changed(&self.name, &room, false);
                }
            }
        }
        let Some(link) = &self.link else { return };
        if !was_in {
            return;
        }
        if let dashmap::Entry::Occupied(mut entry) = self.room_users.entry((room.clone(), socket.user_id_arc())) {
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
                link.room_user_changed(&self.name, &room, socket.user_id(), false);
            }
        }
    }

    /// Rooms with members on this gateway (socket ids not included).
    pub fn local_rooms(&self) -> Vec<Arc<str>> {
        self.rooms.iter().map(|e| e.key().clone()).collect()
    }

    /// Users with sockets in a room on this gateway, each once.
    pub fn local_room_users(&self) -> Vec<(Arc<str>, Arc<str>)> {
        self.room_users.iter().map(|e| e.key().clone()).collect()
    }

    /// The users online in this namespace on every gateway of the cluster,
    /// sorted; `None` when standalone (the application counts its own).
    pub async fn cluster_online_users(&self) -> Option<Result<Vec<String>, Unavailable>> {
        let link = self.link.as_ref()?;
        Some(link.online_users(&self.name).await)
    }

    /// Whether this gateway leads `key` in the cluster (see
    /// [`ClusterLink::leads`]); always true when standalone.
    pub fn cluster_leads(&self, key: &str) -> bool {
        self.link.as_ref().is_none_or(|link| link.leads(key))
    }

    /// In a cluster, the kept messages of a room (see
    /// [`ClusterLink::history`]); `None` when standalone.
    pub async fn cluster_history(
        &self,
        room: &str,
        since: Option<&str>,
        limit: usize,
    ) -> Option<Result<Vec<Value>, Unavailable>> {
        let link = self.link.as_ref()?;
        Some(link.history(&self.name, room, since, limit).await)
    }

    /// Runs a command on the sockets it concerns: on this gateway only
    /// when standalone, on every gateway that holds some in a cluster.
    pub async fn command(&self, command: Command) -> Result<CommandReply, Unavailable> {
        match &self.link {
            Some(link) => link.command(&self.name, command).await,
            None => Ok(self.run_command(&command).await),
        }
    }

    /// Runs a command on this gateway's sockets.
    pub async fn run_command(&self, command: &Command) -> CommandReply {
        let mut reply = CommandReply::default();
        match command {
            Command::JoinUser { user, room } => {
                let mut refusal = None;
                for socket in self.sockets_of_user(user) {
                    match socket.join(room) {
                        Ok(()) => reply.sockets += 1,
                        Err(error) => refusal = Some(error.to_string()),
                    }
                }
                if reply.sockets == 0 {
                    reply.error = refusal;
                }
            }
            Command::LeaveUser { user, room } => {
                reply.sockets = self.sockets_of_user(user).iter().filter(|socket| socket.leave(room)).count();
            }
            Command::DisconnectUser { user } => {
                let sockets = self.sockets_of_user(user);
                for socket in &sockets {
                    socket.disconnect(false).await;
                }
                reply.sockets = sockets.len();
            }
            Command::DisconnectSocket { sid } => {
                if let Some(socket) = self.socket(sid) {
                    socket.disconnect(false).await;
                    reply.sockets = 1;
                }
            }
            Command::RoomSockets { room } => {
                let sockets = self.room_members(room);
                let mut users: Vec<String> = sockets.iter().map(|s| s.user_id().to_owned()).collect();
                users.sort_unstable();
                users.dedup();
                reply.socket_ids = sockets.iter().map(|s| s.id().to_owned()).collect();
                reply.sockets = sockets.len();
                reply.users = users;
            }
            Command::Emit { users, sockets, except, event, args_json } => {
                let mut rooms: Vec<Arc<str>> = Vec::new();
                for user in users {
                    rooms.extend(self.sockets_of_user(user).iter().map(|s| s.id_arc()));
                }
                rooms.extend(
                    sockets
                        .iter()
                        .filter(|sid| self.sockets.contains_key(sid.as_str()))
                        .map(|sid| Arc::from(sid.as_str())),
                );
                if !rooms.is_empty() {
                    let except = except.iter().map(|r| Arc::from(r.as_str())).collect();
                    reply.sockets = self.deliver_remote(rooms, except, false, event, args_json, &[], None);
                }
            }
        }
        reply
    }

    /// Broadcasts an event: in a cluster through the owning router (to every
    /// gateway with members), else to the local sockets. The error means the
    /// cluster could not take it; nobody got it through this call.
    pub async fn broadcast(
        &self,
        target: &Target,
        event: &str,
        args: &[Value],
        attachments: &[Bytes],
    ) -> Result<Accepted, Unavailable> {
        let Some(link) = &self.link else {
            self.emit_binary(target, event, args, attachments);
            return Ok(Accepted::default());
        };
        // A socket id names a room of one on the gateway that holds it.
        let (local, rooms): (Vec<Arc<str>>, Vec<Arc<str>>) =
            target.rooms.iter().cloned().partition(|room| self.sockets.contains_key(room));
        if !local.is_empty() {
            let here = Target { rooms: local, except: target.except.clone(), volatile: target.volatile };
            self.emit_binary(&here, event, args, attachments);
            if rooms.is_empty() {
                return Ok(Accepted::default());
            }
        }
        let remote = Target { rooms, except: target.except.clone(), volatile: target.volatile };
        let outgoing = Outgoing {
            nsp: &self.name,
            target: &remote,
            event,
            args_json: args_json(args),
            attachments,
            store_with_id: None,
        };
        link.publish(outgoing).await
    }

    /// Broadcasts a message to a room and keeps it in the room's history, the
    /// stream id written into the first argument under `id_field`; returns
    /// the id. Only in a cluster: a standalone chat keeps its own history.
    pub async fn broadcast_stored(
        &self,
        room: &str,
        event: &str,
        message: &Value,
        id_field: &str,
    ) -> Result<String, Unavailable> {
        let Some(link) = &self.link else {
            return Err(Unavailable("not in a cluster".to_owned()));
        };
        let target = Target::room(room);
        let outgoing = Outgoing {
            nsp: &self.name,
            target: &target,
            event,
            args_json: args_json(std::slice::from_ref(message)),
            attachments: &[],
            store_with_id: Some(id_field),
        };
        let accepted = link.publish(outgoing).await?;
        accepted.offset.ok_or_else(|| Unavailable("no id assigned".to_owned()))
    }

    /// Delivers a broadcast that came from the cluster to the local members:
    /// encoded once (with its offset), then queued for each member of
    /// `rooms` (all sockets when empty) that is in none of `except`.
    #[allow(clippy::too_many_arguments)]
    pub fn deliver_remote(
        &self,
        rooms: Vec<Arc<str>>,
        except: Vec<Arc<str>>,
        volatile: bool,
        event: &str,
        args_json: &[u8],
        attachments: &[Bytes],
        offset: Option<&str>,
    ) -> usize {
        let target = Target { rooms, except, volatile };
        // Offsets are appended only where clients can use them.
        let offset = offset.filter(|_| self.recovery_enabled());
        let mut frames = encode::event_raw(&self.name, event, args_json, attachments, offset);
        if volatile {
            frames = frames.into_iter().map(Frame::volatile).collect();
        }
        let offset: Option<Arc<str>> = offset.map(Arc::from);
        self.deliver_with(&target, &frames, offset.as_ref())
    }

    /// Emits an event to a target; returns how many sockets it was queued for.
    pub fn emit(&self, target: &Target, event: &str, args: &[Value]) -> usize {
        self.emit_binary(target, event, args, &[])
    }

    /// Emits an event with binary attachments (placeholders in `args`).
    pub fn emit_binary(&self, target: &Target, event: &str, args: &[Value], attachments: &[Bytes]) -> usize {
        let frames = self.encode_logged(target, event, args, attachments);
        self.deliver(target, &frames)
    }

    /// Encodes once, logging the packet for recovery unless volatile.
    pub(crate) fn encode_logged(
        &self,
        target: &Target,
        event: &str,
        args: &[Value],
        attachments: &[Bytes],
    ) -> Vec<Frame> {
        let frames = match &self.recovery {
            Some(recovery) if !target.volatile => {
                let audience = Audience { rooms: target.rooms.clone(), except: target.except.clone() };
                recovery.append(audience, Instant::now(), |offset| {
                    encode::event(&self.name, None, event, args, attachments, Some(offset))
                })
            }
            _ => encode::event(&self.name, None, event, args, attachments, None),
        };
        if target.volatile { frames.into_iter().map(Frame::volatile).collect() } else { frames }
    }

    /// Queues already encoded frames for every socket of the target.
    pub(crate) fn deliver(&self, target: &Target, frames: &[Frame]) -> usize {
        self.deliver_with(target, frames, None)
    }

    fn deliver_with(&self, target: &Target, frames: &[Frame], offset: Option<&Arc<str>>) -> usize {
        let excluded = self.resolve_except(&target.except);
        let mut count = 0;
        let mut send = |socket: &Arc<Socket>| {
            if excluded.as_ref().is_some_and(|ex| ex.contains(&socket.key())) {
                return;
            }
            socket.push_delivery(frames, offset);
            count += 1;
        };
        match target.rooms.as_slice() {
            [] => self.sockets.iter().for_each(|s| send(s.value())),
            [room] => match self.rooms.get(room) {
                Some(members) => members.values().for_each(&mut send),
                None => {
                    if let Some(socket) = self.socket(room) {
                        send(&socket);
                    }
                }
            },
            rooms => {
                let mut seen = HashSet::new();
                for room in rooms {
                    for socket in self.room_members(room) {
                        if seen.insert(socket.key()) {
                            send(&socket);
                        }
                    }
                }
            }
        }
        metrics::histogram!("switchboard_gateway_broadcast_fanout_sockets").record(count as f64);
        count
    }

    fn resolve_except(&self, except: &[Arc<str>]) -> Option<HashSet<u64>> {
        if except.is_empty() {
            return None;
        }
        let mut keys = HashSet::new();
        for room in except {
            keys.extend(self.room_members(room).iter().map(|s| s.key()));
        }
        Some(keys)
    }
}
