//! The gateway's view of a cluster: what it tells the rest of the cluster
//! and what it asks of it, as one trait, [`ClusterLink`].
//!
//! A standalone gateway has no link: a broadcast goes straight to the local
//! room index and recovery uses the in-process log (`recovery`). A cluster
//! gateway is given a link (crate `switchboard-cluster` implements it over
//! gRPC and Redis): broadcasts go to the owning router, which delivers them
//! back to every gateway with members (this one included) through
//! [`Namespace::deliver_remote`](crate::Namespace::deliver_remote); room and
//! user changes are announced; disconnected sessions are kept in Redis and
//! restored on any gateway.
//!
//! The link never blocks a caller that holds a lock: announcements are
//! queued ([`ClusterLink::room_changed`] and friends are synchronous and
//! cheap), and what needs an answer returns a future.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::handler::BoxFuture;
use crate::namespace::Target;

/// Why the cluster could not take a broadcast: the client's acknowledgement
/// carries `{error: "unavailable"}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unavailable: {0}")]
pub struct Unavailable(pub String);

/// A broadcast handed to the cluster.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub nsp: &'a str,
    pub target: &'a Target,
    pub event: &'a str,
    /// The arguments as one JSON array.
    pub args_json: Bytes,
    pub attachments: &'a [Bytes],
    /// Keep it in the room's history, with the stream id written into the
    /// first argument under this key (a chat message's `id`).
    pub store_with_id: Option<&'a str>,
}

/// A broadcast the cluster took: numbered, stored and handed to every
/// gateway with members.
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    /// The stream id of its first room (of a stored message: its id).
    pub offset: Option<String>,
}

/// A disconnected socket's state, kept for the recovery window.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub pid: Arc<str>,
    pub sid: Arc<str>,
    pub user_id: Arc<str>,
    pub rooms: Vec<Arc<str>>,
}

/// Where a socket with a private id stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connected here (kept in case this gateway dies).
    Live,
    /// Disconnected in a way it may come back from: kept for the window.
    Left,
    /// Gone for good (it disconnected on purpose): forget it.
    Closed,
}

/// A kept session, found by its pid.
#[derive(Debug, Clone)]
pub struct Resumable {
    pub sid: Arc<str>,
    pub user_id: Arc<str>,
    pub rooms: Vec<Arc<str>>,
    /// What the link needs to replay (positions per stream), opaque here.
    pub token: Arc<dyn std::any::Any + Send + Sync>,
}

/// One packet a resumed socket missed, read back from a room's stream.
#[derive(Debug, Clone)]
pub struct Missed {
    pub event: String,
    pub args_json: Bytes,
    pub attachments: Vec<Bytes>,
    /// The offset argument, `<stream id>@<room tag>`.
    pub offset: String,
}

/// The result of a replay: the packets in order, and per room tag the last
/// stream id replayed (live deliveries at or before it are duplicates).
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub missed: Vec<Missed>,
    pub last: Vec<(String, String)>,
}

/// An operation on sockets chosen by user, id or room, wherever they are
/// (the server API's operations beyond broadcasting).
#[derive(Debug, Clone)]
pub enum Command {
    /// The user's sockets join a room, silently.
    JoinUser { user: String, room: String },
    /// The user's sockets leave a room, silently.
    LeaveUser { user: String, room: String },
    /// The user's sockets get a DISCONNECT.
    DisconnectUser { user: String },
    /// The socket gets a DISCONNECT.
    DisconnectSocket { sid: String },
    /// The ids (and users) of a room's sockets.
    RoomSockets { room: String },
    /// An event to the sockets of some users and some socket ids, except
    /// those in `except` (rooms or socket ids); not recovered.
    Emit { users: Vec<String>, sockets: Vec<String>, except: Vec<String>, event: String, args_json: Bytes },
}

/// What a command did, summed over the gateways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandReply {
    /// The sockets it affected (joined, left, disconnected, reached, found).
    pub sockets: usize,
    /// For `RoomSockets`: the socket ids.
    pub socket_ids: Vec<String>,
    /// For `RoomSockets`: the users, each once, sorted.
    pub users: Vec<String>,
    /// A refusal (`too many rooms`, ...) when no socket could do it.
    pub error: Option<String>,
}

/// What a cluster gateway tells and asks the rest of the cluster.
pub trait ClusterLink: Send + Sync + 'static {
    /// This gateway got its first socket in `room` (`present`), or lost its
    /// last one there.
    fn room_changed(&self, nsp: &str, room: &str, present: bool);

    /// A user's first socket on this gateway joined `room`, or its last one
    /// here left it.
    fn room_user_changed(&self, nsp: &str, room: &str, user: &str, present: bool);

    /// A user's first socket on this gateway connected to `nsp`, or its last
    /// one left it.
    fn user_changed(&self, nsp: &str, user: &str, online: bool);

    /// Broadcasts through the owning router; resolves once the router
    /// numbered, stored and handed it to every gateway with members.
    fn publish<'a>(&'a self, outgoing: Outgoing<'a>) -> BoxFuture<'a, Result<Accepted, Unavailable>>;

    /// Resolves once every announcement made so far about these rooms was
    /// applied by their owners: a broadcast published after that reaches
    /// this gateway.
    fn barrier<'a>(&'a self, nsp: &'a str, rooms: &'a [Arc<str>]) -> BoxFuture<'a, ()>;

    /// The users online in `nsp` on every gateway, sorted, as the owner of
    /// the namespace counts them (after this gateway's own announcements).
    fn online_users<'a>(&'a self, nsp: &'a str) -> BoxFuture<'a, Result<Vec<String>, Unavailable>>;

    /// Resolves once this gateway delivered every broadcast handed to it
    /// before now (bounded in time): a socket that connects after that
    /// gets none of the broadcasts acknowledged before it connected.
    fn catch_up(&self) -> BoxFuture<'_, ()>;

    /// Takes one of a user's `max` socket slots in `nsp` for socket `sid`,
    /// cluster-wide; false when the user holds `max` already.
    fn acquire_user_slot<'a>(
        &'a self,
        nsp: &'a str,
        user: &'a str,
        sid: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<bool, Unavailable>>;

    /// Gives a socket's slot back (in the background).
    fn release_user_slot(&self, nsp: &str, user: &str, sid: &str);

    /// Whether this gateway leads `key` among the live gateways (one does
    /// at a time): for work one gateway does for the cluster.
    fn leads(&self, key: &str) -> bool;

    /// The kept messages of a room (broadcasts stored with an id), oldest
    /// first: the first `limit` after the id `since`, or the newest `limit`.
    /// Each is the first argument of its packet, as JSON.
    fn history<'a>(
        &'a self,
        nsp: &'a str,
        room: &'a str,
        since: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Value>, Unavailable>>;

    /// Runs a command on every gateway that holds the sockets concerned
    /// (each runs it with [`Namespace::run_command`](crate::Namespace::run_command))
    /// and sums the replies.
    fn command<'a>(&'a self, nsp: &'a str, command: Command) -> BoxFuture<'a, Result<CommandReply, Unavailable>>;

    /// A socket's state changed (it connected, joined or left a room, or
    /// disconnected): keep it so that the socket can resume on any gateway,
    /// also after this one dies. For [`Phase::Left`] the future resolves
    /// once the session is stored (bounded in time), so that it is there
    /// before the client, told of the close, comes back; the others resolve
    /// at once.
    fn session<'a>(&'a self, nsp: &'a str, session: SessionState, phase: Phase) -> BoxFuture<'a, ()>;

    /// Takes the kept session `pid` of `nsp` (it can be resumed once), with
    /// the client's last offset.
    fn resume<'a>(&'a self, nsp: &'a str, pid: &'a str, offset: &'a str) -> BoxFuture<'a, Option<Resumable>>;

    /// Everything a resumed session missed since its positions, in order;
    /// `None` when some of it is gone (the socket is not recovered).
    fn replay<'a>(&'a self, nsp: &'a str, session: &'a Resumable) -> BoxFuture<'a, Option<Replay>>;
}

/// Stream ids (`<ms>-<seq>`) compared as numbers; `None` when malformed.
pub fn stream_id_key(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Serializes arguments as one JSON array.
pub(crate) fn args_json(args: &[Value]) -> Bytes {
    // Serializing `Value`s cannot fail: their map keys are strings.
    Bytes::from(serde_json::to_vec(args).unwrap_or_else(|_| b"[]".to_vec()))
}
