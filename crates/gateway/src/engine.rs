//! One Engine.IO session and the Socket.IO layer on top of it.
//!
//! An [`EngineConn`] is shared by its transports (a WebSocket, or the polling
//! requests of the moment) and by every task that emits to it. Exactly one
//! task drives it (see [`crate::transport`]): that task runs the heartbeat,
//! notices close requests and runs the close sequence. Incoming messages are
//! decoded here and dispatched to the namespaces' handlers in order.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_protocol::binary::{Assembler, Progress};
use switchboard_protocol::engine::{Packet as EnginePacket, Payload};
use switchboard_protocol::packet::{Packet, PacketKind};
use switchboard_protocol::session::{Action, CloseReason, Session, Transport};
use switchboard_protocol::{DecodeError, handshake};
use tokio::sync::{Notify, oneshot};

use crate::encode;
use crate::frame::{Frame, PING};
use crate::handler::{ConnectRequest, DisconnectReason, Event};
use crate::limits::Limit;
use crate::namespace::Namespace;
use crate::outbox::Outbox;
use crate::recovery::Restored;
use crate::server::Shared;
use crate::socket::{AckReply, NewSocket, Socket};
use crate::sync::lock;
use crate::transport::ws::WsConn;

/// What the transport should do after a packet.
#[derive(Debug)]
pub(crate) enum Flow {
    Continue,
    /// Answer the WebSocket probe with `3probe`.
    Probe,
    /// The session moved to this WebSocket.
    Upgraded,
    Close(CloseReason),
}

/// One Engine.IO session.
pub(crate) struct EngineConn {
    sid: Arc<str>,
    outbox: Outbox,
    session: Mutex<Session>,
    sockets: Mutex<Vec<Arc<Socket>>>,
    assembler: Mutex<Option<Assembler>>,
    /// The token of the handshake's `Authorization: Bearer` header.
    bearer: Option<Box<str>>,
    /// The query string of the handshake request.
    query: Box<str>,
    close_reason: Mutex<Option<CloseReason>>,
    driver_wake: Notify,
    upgrade: Mutex<Option<oneshot::Sender<WsConn>>>,
    pub(crate) polling_get: AtomicBool,
    pub(crate) polling_post: AtomicBool,
    /// A WebSocket is probing this session (only one at a time).
    pub(crate) probing: AtomicBool,
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for EngineConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConn").field("sid", &self.sid).finish()
    }
}

impl EngineConn {
    pub(crate) fn new(
        shared: Arc<Shared>,
        sid: Arc<str>,
        transport: Transport,
        bearer: Option<Box<str>>,
        query: Box<str>,
    ) -> (Arc<Self>, Option<oneshot::Receiver<WsConn>>) {
        let (upgrade_tx, upgrade_rx) = match transport {
            Transport::Polling => {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            }
            Transport::WebSocket => (None, None),
        };
        let settings = shared.config.engine;
        let conn = Arc::new(Self {
            sid,
            outbox: Outbox::new(shared.config.limits.max_pending_bytes),
            session: Mutex::new(Session::new(settings, transport, Instant::now())),
            sockets: Mutex::new(Vec::new()),
            assembler: Mutex::new(None),
            bearer,
            query,
            close_reason: Mutex::new(None),
            driver_wake: Notify::new(),
            upgrade: Mutex::new(upgrade_tx),
            polling_get: AtomicBool::new(false),
            polling_post: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            shared,
        });
        (conn, upgrade_rx)
    }

    pub(crate) fn sid(&self) -> &str {
        &self.sid
    }

    pub(crate) fn sid_arc(&self) -> Arc<str> {
        self.sid.clone()
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The open packet for this session.
    pub(crate) fn open_frame(&self, offer_websocket: bool) -> Frame {
        let json = handshake::open_json(&self.sid, &self.shared.config.engine, offer_websocket);
        Frame::build(false, |buf| {
            buf.push(b'0');
            buf.extend_from_slice(json.as_bytes());
        })
    }

    pub(crate) fn transport(&self) -> Transport {
        lock(&self.session).transport()
    }

    /// The probing WebSocket went away before the upgrade completed: the
    /// session carries on over polling.
    pub(crate) fn upgrade_failed(&self) {
        lock(&self.session).on_transport_closed(Transport::WebSocket, CloseReason::TransportClose);
    }

    /// When the driver must next call [`EngineConn::on_timeout`].
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        lock(&self.session).next_deadline()
    }

    /// Heartbeat: maybe queue a ping, maybe close for a missing pong.
    pub(crate) fn on_timeout(&self) -> Option<CloseReason> {
        let action = lock(&self.session).on_timeout(Instant::now());
        match action {
            Some(Action::Send(_)) => {
                let _ = self.outbox.push(PING.clone());
                None
            }
            Some(Action::Close(reason)) => Some(reason),
            _ => None,
        }
    }

    /// Asks the driver to close the session (from any task).
    pub(crate) fn request_close(&self, reason: CloseReason) {
        lock(&self.close_reason).get_or_insert(reason);
        self.outbox.close();
        self.driver_wake.notify_one();
    }

    pub(crate) fn close_requested(&self) -> Option<CloseReason> {
        *lock(&self.close_reason)
    }

    pub(crate) async fn driver_woken(&self) {
        self.driver_wake.notified().await;
    }

    /// Hands a probed WebSocket to the session's driver; false when the
    /// driver is gone (the WebSocket is then dropped).
    pub(crate) fn hand_over(&self, ws: WsConn) -> bool {
        match lock(&self.upgrade).take() {
            Some(tx) => tx.send(ws).is_ok(),
            None => false,
        }
    }

    /// A packet from a transport.
    pub(crate) async fn on_packet(self: &Arc<Self>, from: Transport, packet: EnginePacket) -> Flow {
        metrics::counter!("switchboard_gateway_packets_in_total", "transport" => from.as_str()).increment(1);
        let action = lock(&self.session).on_packet(from, packet, Instant::now());
        match action {
            None => Flow::Continue,
            Some(Action::Send(_)) => Flow::Continue,
            Some(Action::AnswerProbe) => Flow::Probe,
            Some(Action::Upgraded) => Flow::Upgraded,
            Some(Action::Close(reason)) => Flow::Close(reason),
            Some(Action::Deliver(payload)) if self.shared.config.engine_echo => {
                let frame = match payload {
                    Payload::Text(text) => Frame::build(false, |buf| {
                        buf.push(b'4');
                        buf.extend_from_slice(&text);
                    }),
                    Payload::Binary(data) => Frame::binary(&data),
                };
                self.push(frame);
                Flow::Continue
            }
            Some(Action::Deliver(payload)) => match self.on_message(payload).await {
                Ok(()) => Flow::Continue,
                Err(reason) => {
                    lock(&self.session).close(reason);
                    Flow::Close(reason)
                }
            },
        }
    }

    /// A Socket.IO packet (or one of its attachments).
    async fn on_message(self: &Arc<Self>, payload: Payload) -> Result<(), CloseReason> {
        match payload {
            Payload::Text(text) => {
                if lock(&self.assembler).is_some() {
                    return Err(parse_error(DecodeError::UnexpectedAttachment));
                }
                let max = self.shared.config.limits.max_attachments;
                let packet = Packet::decode(&text, max).map_err(|e| {
                    if matches!(e, DecodeError::TooManyAttachments(_)) {
                        Limit::Attachments.count();
                    }
                    parse_error(e)
                })?;
                if packet.kind.is_binary() {
                    return match Assembler::start(packet).map_err(parse_error)? {
                        Progress::Complete(packet, attachments) => self.dispatch(packet, attachments).await,
                        Progress::Pending(assembler) => {
                            *lock(&self.assembler) = Some(assembler);
                            Ok(())
                        }
                    };
                }
                self.dispatch(packet, Vec::new()).await
            }
            Payload::Binary(data) => {
                let assembler = lock(&self.assembler).take().ok_or(parse_error(DecodeError::UnexpectedAttachment))?;
                match assembler.push(data) {
                    Progress::Complete(packet, attachments) => self.dispatch(packet, attachments).await,
                    Progress::Pending(assembler) => {
                        *lock(&self.assembler) = Some(assembler);
                        Ok(())
                    }
                }
            }
        }
    }

    async fn dispatch(self: &Arc<Self>, packet: Packet, attachments: Vec<Bytes>) -> Result<(), CloseReason> {
        if packet.kind == PacketKind::Connect {
            return self.connect(packet).await;
        }
        let Some(socket) = self.socket(&packet.nsp) else {
            // The reference server closes a session that talks to a namespace
            // it did not join.
            return Err(CloseReason::ParseError);
        };
        match packet.kind {
            PacketKind::Disconnect => {
                self.forget_socket(&packet.nsp);
                socket.namespace().clone().remove_socket(&socket, DisconnectReason::ClientNamespaceDisconnect).await;
            }
            PacketKind::Event | PacketKind::BinaryEvent => {
                let Some(Value::Array(mut items)) = packet.data else {
                    return Err(CloseReason::ParseError);
                };
                let name = match items.remove(0) {
                    Value::String(name) => name,
                    other => other.to_string(),
                };
                if let Err(notify) = socket.take_event_token() {
                    const ERROR: &str = "rate limit exceeded";
                    if let Some(id) = packet.id {
                        socket.ack(id, &[json!({ "error": ERROR })]);
                    } else if notify {
                        socket.emit_volatile("error", &[json!({ "event": name, "error": ERROR })]);
                    }
                    return Ok(());
                }
                let event = Event { name, args: items, attachments, ack: packet.id };
                let nsp = socket.namespace().clone();
                nsp.handler().on_event(&socket, event).await;
            }
            PacketKind::Ack | PacketKind::BinaryAck => {
                let (Some(id), Some(Value::Array(args))) = (packet.id, packet.data) else {
                    return Err(CloseReason::ParseError);
                };
                socket.resolve_ack(id, AckReply { args, attachments });
            }
            PacketKind::Connect | PacketKind::ConnectError => return Err(CloseReason::ParseError),
        }
        Ok(())
    }

    async fn connect(self: &Arc<Self>, packet: Packet) -> Result<(), CloseReason> {
        if self.socket(&packet.nsp).is_some() {
            // A second CONNECT to a connected namespace is an invalid state;
            // the reference server closes the connection.
            return Err(CloseReason::ForcedClose);
        }
        let Some(nsp) = self.shared.namespace_for_connect(&packet.nsp) else {
            return self.refuse(&packet.nsp, "Invalid namespace", "invalid_namespace");
        };
        let auth = packet.data.unwrap_or_else(|| json!({}));
        let token = auth.get("token").and_then(Value::as_str).or(self.bearer.as_deref());
        let identity = match self.shared.auth.authenticate(token) {
            Ok(identity) => identity,
            Err(error) => {
                tracing::debug!(sid = %self.sid, %error, "connect refused");
                return self.refuse(&packet.nsp, error.client_message(), "unauthorized");
            }
        };
        if nsp.user_socket_count(&identity.user_id) >= self.shared.config.limits.max_sockets_per_user {
            Limit::SocketsPerUser.count();
            return self.refuse(&packet.nsp, "Too many connections", "too_many_connections");
        }
        let mut stages = Stages::start();
        let request = ConnectRequest { identity: &identity, auth: &auth, query: &self.query };
        let authorized = nsp.handler().authorize(&request).await;
        stages.mark("authorize");
        if let Err(refusal) = authorized {
            let mut body = json!({ "message": refusal.message });
            if let Some(data) = refusal.data {
                body["data"] = data;
            }
            self.push(encode::control(PacketKind::ConnectError, &packet.nsp, Some(&body)));
            metrics::counter!("switchboard_gateway_connects_total", "result" => "refused").increment(1);
            return Ok(());
        }

        let pid = auth.get("pid").and_then(Value::as_str);
        let offset = auth.get("offset").and_then(Value::as_str);
        // Anonymous identities are fresh on every connection: the session's
        // own user is kept instead.
        let user = (!self.shared.auth.is_anonymous()).then_some(identity.user_id.as_str());
        let mut resumable = None;
        let restored = match (&nsp.recovery, &nsp.link, pid, offset) {
            (Some(recovery), _, Some(pid), Some(offset)) => {
                let restored = recovery.restore(pid, offset, user).map(|r| (Arc::<str>::from(pid), r));
                let outcome = if restored.is_some() { "recovered" } else { "not_recovered" };
                metrics::counter!("switchboard_gateway_recovery_attempts_total", "outcome" => outcome).increment(1);
                restored
            }
            (None, Some(link), Some(pid), Some(offset)) if nsp.recovery_enabled() => {
                let resumed = link.resume(nsp.name(), pid, offset).await;
                stages.mark("resume");
                match resumed {
                    Some(session) if user.is_none_or(|user| user == &*session.user_id) => {
                        let restored = Restored {
                            sid: session.sid.clone(),
                            user_id: session.user_id.clone(),
                            rooms: session.rooms.clone(),
                            missed: Vec::new(),
                        };
                        resumable = Some(session);
                        Some((Arc::<str>::from(pid), restored))
                    }
                    _ => {
                        metrics::counter!("switchboard_gateway_recovery_attempts_total", "outcome" => "not_recovered")
                            .increment(1);
                        None
                    }
                }
            }
            _ => None,
        };
        let recovered = restored.is_some();
        let mut identity = identity;
        let (id, pid, rooms, missed) = match restored {
            Some((pid, r)) => {
                identity.user_id = r.user_id.to_string();
                (r.sid, Some(pid), r.rooms, r.missed)
            }
            None => {
                let pid = nsp.recovery_enabled().then(|| Arc::from(random_id()));
                (Arc::from(random_id()), pid, Vec::new(), Vec::new())
            }
        };
        let socket = Socket::new(NewSocket {
            id,
            key: self.shared.next_socket_key(),
            pid: pid.clone(),
            nsp: nsp.clone(),
            conn: self.clone(),
            identity,
            recovered,
        });
        if resumable.is_some() {
            socket.hold();
        }
        if let Some(link) = &nsp.link {
            if resumable.is_none() {
                // Broadcasts acknowledged before this CONNECT, and still on
                // their way to this gateway, are not for this socket.
                link.catch_up().await;
                stages.mark("catch_up");
            }
            // The limit holds cluster-wide: a slot per socket in Redis.
            let max = self.shared.config.limits.max_sockets_per_user;
            let slot = link.acquire_user_slot(nsp.name(), socket.user_id(), socket.id(), max).await;
            stages.mark("user_slot");
            match slot {
                Ok(true) => {}
                Ok(false) => {
                    socket.mark_disconnected();
                    Limit::SocketsPerUser.count();
                    return self.refuse(&packet.nsp, "Too many connections", "too_many_connections");
                }
                // Without Redis the socket cannot do much anyway; it is not
                // refused for a limit that cannot be counted.
                Err(error) => tracing::debug!(%error, "sockets per user not counted"),
            }
        }
        if !nsp.add_socket(&socket, self.shared.config.limits.max_sockets_per_user) {
            if let Some(link) = &nsp.link {
                link.release_user_slot(nsp.name(), socket.user_id(), socket.id());
            }
            socket.mark_disconnected();
            Limit::SocketsPerUser.count();
            return self.refuse(&packet.nsp, "Too many connections", "too_many_connections");
        }
        for room in &rooms {
            // Limits were checked when the rooms were first joined.
            let _ = socket.join(room);
        }
        // Missed packets go before the CONNECT reply: the client buffers them
        // until it is connected, then hands them over in order.
        if !missed.is_empty() {
            self.push_all(&missed);
        }
        if let (Some(session), Some(link)) = (&resumable, &nsp.link) {
            // Joined (and announced) first, then read: what is broadcast
            // meanwhile is held, and sent after the replay unless replayed.
            link.barrier(nsp.name(), &rooms).await;
            stages.mark("barrier");
            let replay = link.replay(nsp.name(), session).await;
            stages.mark("replay");
            let Some(replay) = replay else {
                metrics::counter!("switchboard_gateway_recovery_attempts_total", "outcome" => "failed").increment(1);
                tracing::warn!(sid = %self.sid, "replay failed: closing the session so that the client tries again");
                socket.release(&[]);
                lock(&self.sockets).push(socket.clone());
                return Err(CloseReason::TransportError);
            };
            metrics::counter!("switchboard_gateway_recovery_attempts_total", "outcome" => "recovered").increment(1);
            for missed in &replay.missed {
                let frames = encode::event_raw(
                    nsp.name(),
                    &missed.event,
                    &missed.args_json,
                    &missed.attachments,
                    Some(&missed.offset),
                );
                self.push_all(&frames);
            }
            socket.release(&replay.last);
        }
        socket.track_session();
        lock(&self.sockets).push(socket.clone());
        let mut reply = json!({ "sid": socket.id() });
        if let Some(pid) = &pid {
            reply["pid"] = Value::String(pid.to_string());
        }
        self.push(encode::control(PacketKind::Connect, nsp.name(), Some(&reply)));
        metrics::counter!("switchboard_gateway_connects_total", "result" => "ok").increment(1);
        nsp.handler().on_connect(&socket, &auth).await;
        stages.mark("on_connect");
        stages.report(&self.sid);
        Ok(())
    }

    fn refuse(&self, nsp: &str, message: &str, result: &'static str) -> Result<(), CloseReason> {
        self.push(encode::control(PacketKind::ConnectError, nsp, Some(&json!({ "message": message }))));
        metrics::counter!("switchboard_gateway_connects_total", "result" => result).increment(1);
        Ok(())
    }

    fn push(&self, frame: Frame) {
        let _ = self.outbox.push(frame);
    }

    fn push_all(&self, frames: &[Frame]) {
        for frame in frames {
            let _ = self.outbox.push(frame.clone());
        }
    }

    /// The socket of this session in a namespace.
    pub(crate) fn socket(&self, nsp: &str) -> Option<Arc<Socket>> {
        lock(&self.sockets).iter().find(|s| s.namespace().name() == nsp).cloned()
    }

    /// The query string of the handshake request.
    pub(crate) fn handshake_query(&self) -> &str {
        &self.query
    }

    pub(crate) fn has_sockets(&self) -> bool {
        !lock(&self.sockets).is_empty()
    }

    pub(crate) fn forget_socket(&self, nsp: &str) {
        lock(&self.sockets).retain(|s| s.namespace().name() != nsp);
    }

    /// The close sequence, run once by the driver: every socket leaves its
    /// namespace (and is kept for recovery when the reason allows).
    pub(crate) async fn finish(self: &Arc<Self>, reason: CloseReason) {
        lock(&self.session).close(reason);
        self.outbox.close();
        self.shared.engines.remove(&self.sid);
        let sockets = std::mem::take(&mut *lock(&self.sockets));
        for socket in sockets {
            let nsp: Arc<Namespace> = socket.namespace().clone();
            nsp.remove_socket(&socket, reason.into()).await;
        }
        metrics::gauge!("switchboard_gateway_sessions").decrement(1);
        tracing::debug!(sid = %self.sid, reason = reason.as_str(), "session closed");
    }
}

fn parse_error(error: DecodeError) -> CloseReason {
    tracing::debug!(%error, "parse error");
    metrics::counter!("switchboard_gateway_parse_errors_total").increment(1);
    CloseReason::ParseError
}

/// A 20-character random id (the shape of the reference server's ids).
pub(crate) fn random_id() -> String {
    use base64::Engine as _;
    let bytes: [u8; 15] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// How long the awaited steps of a CONNECT took, for a warning when one is
/// slow (a cluster under a reconnection storm, a slow Redis or router).
struct Stages {
    started: std::time::Instant,
    last: std::time::Instant,
    took: Vec<(&'static str, std::time::Duration)>,
}

impl Stages {
    /// A CONNECT slower than this is logged, with its steps.
    const SLOW: std::time::Duration = std::time::Duration::from_secs(1);

    fn start() -> Stages {
        let now = std::time::Instant::now();
        Stages { started: now, last: now, took: Vec::new() }
    }

    fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        self.took.push((step, now - self.last));
        self.last = now;
    }

    fn report(&self, sid: &str) {
        let total = self.started.elapsed();
        if total >= Self::SLOW {
            let steps: Vec<String> = self.took.iter().map(|(step, took)| format!("{step}={took:?}")).collect();
            tracing::warn!(sid, ?total, steps = steps.join(" "), "slow connect");
        }
    }
}
