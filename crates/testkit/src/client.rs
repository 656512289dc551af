//! [`TestClient`]: one Socket.IO socket in one namespace, over its own
//! WebSocket (like `io(url, {forceNew: true, transports: ["websocket"]})`).
//!
//! A reader task answers pings, reassembles binary packets, resolves acks
//! and queues everything else; the test pulls from that queue. Events that
//! a wait passes over are kept (in arrival order) for later waits.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchboard_protocol::packet::{Packet, PacketKind};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use self::reader::{Incoming, Reader, Shared};
use crate::WAIT;

mod reader;

/// One event from the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    /// The arguments as sent, binary ones as placeholders; with recovery on,
    /// the server's offset is the last one.
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
}

impl Event {
    /// The first argument (`Null` if none).
    pub fn data(&self) -> &Value {
        self.args.first().unwrap_or(&Value::Null)
    }
}

/// Why a connection failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectError {
    /// CONNECT_ERROR `{message, data}`.
    Refused { message: String, data: Value },
    /// The WebSocket could not be opened.
    Transport(String),
    /// The connection closed before an answer.
    Closed,
    /// No answer within [`WAIT`].
    Timeout,
}

/// Why [`TestClient::try_emit_with_ack`] got no acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckError {
    /// The connection closed first.
    Closed,
    /// No ack within the timeout.
    Timeout,
}

/// A connected socket.
pub struct TestClient {
    id: String,
    nsp: String,
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Incoming>,
    stash: VecDeque<Event>,
    shared: Arc<Shared>,
    next_ack: AtomicU64,
    /// `io server disconnect` or `transport close`, once seen.
    gone: Option<&'static str>,
    tasks: [JoinHandle<()>; 2],
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient").field("id", &self.id).field("nsp", &self.nsp).finish_non_exhaustive()
    }
}

impl TestClient {
    /// Opens a WebSocket session and connects to `nsp` with `auth` as the
    /// CONNECT payload (`{"token": ...}`, plus `pid`/`offset` to recover).
    pub async fn connect(addr: SocketAddr, nsp: &str, auth: Value) -> Result<TestClient, ConnectError> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(|e| ConnectError::Transport(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                let close = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || close {
                    break;
                }
            }
        });
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let reader = {
            let (out, shared, nsp) = (out.clone(), shared.clone(), nsp.to_owned());
            tokio::spawn(async move {
                let mut reader = Reader { nsp, out, inbox: inbox_tx, shared, pending: None };
                while let Some(Ok(message)) = stream.next().await {
                    if !reader.on_message(message) {
                        break;
                    }
                }
                // No ack can come any more: waiters learn it now.
                lock(&reader.shared.acks).clear();
            })
        };
        let mut client = TestClient {
            id: String::new(),
            nsp: nsp.to_owned(),
            out,
            inbox,
            stash: VecDeque::new(),
            shared,
            next_ack: AtomicU64::new(0),
            gone: None,
            tasks: [reader, writer],
        };
        client.send_packet(Packet { data: Some(auth), ..Packet::new(PacketKind::Connect, nsp) }, &[]);
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, client.inbox.recv()).await {
                Err(_) => return Err(ConnectError::Timeout),
                Ok(None) => return Err(ConnectError::Closed),
                Ok(Some(Incoming::Connect(data))) => {
                    client.id = data.get("sid").and_then(Value::as_str).unwrap_or_default().to_owned();
                    *lock(&client.shared.pid) = data.get("pid").and_then(Value::as_str).map(str::to_owned);
                    return Ok(client);
                }
                Ok(Some(Incoming::ConnectError(data))) => {
                    let message = data.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
                    let data = data.get("data").cloned().unwrap_or(Value::Null);
                    return Err(ConnectError::Refused { message, data });
                }
                // Missed packets of a recovery come before the CONNECT reply.
                Ok(Some(Incoming::Event(event))) => client.stash.push_back(event),
                Ok(Some(Incoming::Disconnect)) => return Err(ConnectError::Closed),
            }
        }
    }

    /// The Socket.IO id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The private id for recovery (when the server offers recovery).
    pub fn pid(&self) -> Option<String> {
        lock(&self.shared.pid).clone()
    }

    /// The offset of the last event received, for recovery.
    pub fn last_offset(&self) -> Option<String> {
        lock(&self.shared.last_offset).clone()
    }

    /// Emits an event.
    pub fn emit(&self, event: &str, args: &[Value]) {
        self.send_packet(self.event_packet(event, args, None, 0), &[]);
    }

    /// Emits an event with binary attachments (placeholders in `args`).
    pub fn emit_binary(&self, event: &str, args: &[Value], attachments: &[Bytes]) {
        self.send_packet(self.event_packet(event, args, None, attachments.len()), attachments);
    }

    /// Emits an event and waits for the acknowledgement's arguments.
    pub async fn emit_with_ack(&self, event: &str, args: &[Value]) -> Vec<Value> {
        self.emit_binary_with_ack(event, args, &[]).await
    }

    pub async fn emit_binary_with_ack(&self, event: &str, args: &[Value], attachments: &[Bytes]) -> Vec<Value> {
        match self.send_with_ack(event, args, attachments, WAIT).await {
            Ok(args) => args,
            Err(AckError::Closed) => panic!("{}: connection closed before the ack of {event}", self.id),
            Err(AckError::Timeout) => panic!("{}: no ack of {event} within {WAIT:?}", self.id),
        }
    }

    /// Emits an event and waits up to `timeout` for its acknowledgement; a
    /// missing ack is a value, not a panic, for tests that count them
    /// (outages, where an emit may be answered with an error or not at all).
    pub async fn try_emit_with_ack(
        &self,
        event: &str,
        args: &[Value],
        timeout: Duration,
    ) -> Result<Vec<Value>, AckError> {
        self.send_with_ack(event, args, &[], timeout).await
    }

    async fn send_with_ack(
        &self,
        event: &str,
        args: &[Value],
        attachments: &[Bytes],
        timeout: Duration,
    ) -> Result<Vec<Value>, AckError> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.shared.acks).insert(id, tx);
        self.send_packet(self.event_packet(event, args, Some(id), attachments.len()), attachments);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(args)) => Ok(args),
            Ok(Err(_)) => Err(AckError::Closed),
            Err(_) => {
                lock(&self.shared.acks).remove(&id);
                Err(AckError::Timeout)
            }
        }
    }

    /// Emits `event` with one argument; the first argument of the ack.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        self.emit_with_ack(event, &[data]).await.into_iter().next().unwrap_or(Value::Null)
    }

    /// Waits for `event` (up to [`WAIT`]).
    pub async fn wait_for(&mut self, event: &str) -> Event {
        self.wait_for_where(event, |_| true, WAIT).await
    }

    /// Waits for an `event` that `matches`, up to `timeout`; earlier events
    /// are kept for later waits.
    pub async fn wait_for_where(&mut self, event: &str, matches: impl Fn(&Event) -> bool, timeout: Duration) -> Event {
        if let Some(i) = self.stash.iter().position(|e| e.name == event && matches(e)) {
            return self.stash.remove(i).unwrap_or_else(|| unreachable!());
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.next_event(deadline).await {
                Some(e) if e.name == event && matches(&e) => return e,
                Some(e) => self.stash.push_back(e),
                None => panic!(
                    "{} ({}): no matching {event} within {timeout:?} (connection: {}); received: {:?}",
                    self.id,
                    self.nsp,
                    self.gone.unwrap_or("open"),
                    self.stash.iter().map(|e| (&e.name, &e.args)).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Fails if `event` arrives within `duration` (or was received and not
    /// yet consumed).
    pub async fn expect_none(&mut self, event: &str, duration: Duration) {
        self.expect_none_where(event, |_| true, duration).await;
    }

    pub async fn expect_none_where(&mut self, event: &str, matches: impl Fn(&Event) -> bool, duration: Duration) {
        let id = self.id.clone();
        let check = |e: &Event| assert!(!(e.name == event && matches(e)), "{id}: unexpected {event}: {:?}", e.args);
        self.stash.iter().for_each(check);
        let deadline = Instant::now() + duration;
        while let Some(e) = self.next_event(deadline).await {
            check(&e);
            self.stash.push_back(e);
        }
    }

    /// Every `event` received within `duration` (and not yet consumed),
    /// consumed now, in order.
    pub async fn collect(&mut self, event: &str, duration: Duration) -> Vec<Event> {
        let deadline = Instant::now() + duration;
        while let Some(e) = self.next_event(deadline).await {
            self.stash.push_back(e);
        }
        let (hits, rest): (VecDeque<Event>, VecDeque<Event>) = self.stash.drain(..).partition(|e| e.name == event);
        self.stash = rest;
        hits.into()
    }

    /// Forgets every event received so far.
    pub fn clear(&mut self) {
        while let Ok(incoming) = self.inbox.try_recv() {
            if let Incoming::Disconnect = incoming {
                self.gone = Some("io server disconnect");
            }
        }
        self.stash.clear();
    }

    /// Waits until the server ends the socket: `io server disconnect` (a
    /// DISCONNECT packet) or `transport close`.
    pub async fn wait_disconnect(&mut self) -> &'static str {
        self.wait_disconnect_within(WAIT).await
    }

    /// [`wait_disconnect`](Self::wait_disconnect) for at most `within`.
    pub async fn wait_disconnect_within(&mut self, within: Duration) -> &'static str {
        let deadline = Instant::now() + within;
        while self.gone.is_none() {
            match self.next_event(deadline).await {
                Some(e) => self.stash.push_back(e),
                None if self.gone.is_none() => panic!("{}: still connected after {within:?}", self.id),
                None => {}
            }
        }
        self.gone.unwrap_or("transport close")
    }

    /// Leaves the namespace (DISCONNECT) and closes the WebSocket.
    pub fn disconnect(&self) {
        self.send_packet(Packet::new(PacketKind::Disconnect, self.nsp.as_str()), &[]);
        let _ = self.out.send(Message::Close(None));
    }

    /// Sends a raw WebSocket text frame (an Engine.IO packet), e.g. `42["x"`.
    pub fn send_raw(&self, text: &str) {
        let _ = self.out.send(Message::text(text));
    }

    /// Sends a raw WebSocket binary frame.
    pub fn send_raw_binary(&self, data: Bytes) {
        let _ = self.out.send(Message::Binary(data));
    }

    /// The next event before `deadline`; `None` at the deadline or when the
    /// socket is gone (DISCONNECT or transport closed).
    async fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(Incoming::Event(event))) => return Some(event),
                Ok(Some(Incoming::Disconnect)) => {
                    // Nothing more comes for this namespace.
                    self.gone = Some("io server disconnect");
                    return None;
                }
                Ok(Some(Incoming::Connect(_) | Incoming::ConnectError(_))) => {}
                Ok(None) => {
                    self.gone.get_or_insert("transport close");
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    fn event_packet(&self, event: &str, args: &[Value], id: Option<u64>, attachments: usize) -> Packet {
        let mut data = Vec::with_capacity(args.len() + 1);
        data.push(Value::String(event.to_owned()));
        data.extend_from_slice(args);
        let kind = if attachments > 0 { PacketKind::BinaryEvent } else { PacketKind::Event };
        Packet { id, attachments, data: Some(Value::Array(data)), ..Packet::new(kind, self.nsp.as_str()) }
    }

    fn send_packet(&self, packet: Packet, attachments: &[Bytes]) {
        let text = String::from_utf8(packet.encode()).unwrap_or_default();
        let _ = self.out.send(Message::text(text));
        for attachment in attachments {
            let _ = self.out.send(Message::Binary(attachment.clone()));
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        // The WebSocket goes with the tasks: the server sees a transport close.
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
