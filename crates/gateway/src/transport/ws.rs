//! The WebSocket transport: one task per connection that reads, writes and
//! keeps time.
//!
//! The task waits on three things at once: bytes from the client, frames in
//! the session's outbox, and the heartbeat deadline. When frames pile up it
//! takes all of them and writes them with one vectored write, so a busy
//! socket costs one system call per wake-up rather than one per message.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_protocol::engine::Packet as EnginePacket;
use switchboard_protocol::session::{CloseReason, Transport};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::ws_codec::{Decoder, FrameError, Message, control_frame};
use crate::engine::{EngineConn, Flow};
use crate::frame::{Frame, NOOP};

/// Frames per vectored write (well under IOV_MAX).
const MAX_IOV: usize = 64;
/// How long the probe of an upgrade may take.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// An accepted WebSocket.
#[derive(Debug)]
pub(crate) struct WsConn {
    tcp: TcpStream,
    decoder: Decoder,
    /// Messages decoded during the upgrade, after its `5`.
    early: Vec<Message>,
}

impl WsConn {
    /// `leftover`: bytes the HTTP layer read past the upgrade request.
    pub(crate) fn new(tcp: TcpStream, leftover: Bytes) -> Self {
        let mut decoder = Decoder::default();
        if !leftover.is_empty() {
            decoder.buf.extend_from_slice(&leftover);
        }
        Self { tcp, decoder, early: Vec::new() }
    }

    /// Reads what is available and decodes whole messages into `out`.
    /// `Ok(false)` means the peer closed the connection.
    fn read_available(&mut self, max: usize, out: &mut Vec<Message>) -> Result<bool, ReadError> {
        loop {
            if self.decoder.buf.capacity() - self.decoder.buf.len() < 1024 {
                self.decoder.buf.reserve(4096);
            }
            match self.tcp.try_read_buf(&mut self.decoder.buf) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(ReadError::Io),
            }
        }
        self.decoder.decode(max, out).map_err(ReadError::Frame)?;
        Ok(true)
    }

    /// Writes a small frame directly, waiting for the socket if needed.
    async fn write_now(&self, frame: &[u8]) -> io::Result<()> {
        let mut written = 0;
        while written < frame.len() {
            self.tcp.writable().await?;
            match self.tcp.try_write(&frame[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
enum ReadError {
    Io,
    Frame(FrameError),
}

/// Frames taken from the outbox and not yet fully written.
#[derive(Debug, Default)]
struct Pending {
    frames: Vec<Frame>,
    /// Index of the first frame not fully written, and bytes of it written.
    next: usize,
    offset: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.next >= self.frames.len()
    }

    /// Writes as much as the socket takes without blocking. Returns the bytes
    /// written.
    fn flush(&mut self, tcp: &TcpStream) -> io::Result<usize> {
        let mut total = 0;
        while !self.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (i, frame) in self.frames[self.next..].iter().take(MAX_IOV).enumerate() {
                let bytes = frame.ws_bytes();
                slices[i] = IoSlice::new(if i == 0 { &bytes[self.offset..] } else { &bytes[..] });
                count += 1;
            }
            match tcp.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    total += n;
                    while n > 0 {
                        let left = self.frames[self.next].ws_bytes().len() - self.offset;
                        if n >= left {
                            n -= left;
                            self.next += 1;
                            self.offset = 0;
                        } else {
                            self.offset += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.is_empty() {
            self.frames.clear();
            self.next = 0;
            if self.frames.capacity() > 256 {
                self.frames = Vec::new();
            }
        }
        Ok(total)
    }
}

/// Drives a session whose transport is (now) this WebSocket, until it closes.
/// `connect_check`: when to close the session if no namespace is connected
/// by then (once, like the reference server's `connectTimeout`).
pub(crate) async fn drive(conn: Arc<EngineConn>, mut ws: WsConn, mut connect_check: Option<Instant>) {
    let max = conn.shared.config.engine.max_payload;
    let mut pending = Pending::default();
    let mut messages = Vec::new();
    let far = || Instant::now() + Duration::from_secs(86_400);
    let next_deadline = |check: Option<Instant>| {
        let heartbeat = conn.next_deadline().map_or_else(far, Instant::from_std);
        check.map_or(heartbeat, |c| c.min(heartbeat))
    };
    let sleep = tokio::time::sleep_until(next_deadline(connect_check));
    tokio::pin!(sleep);
    let mut close_code = 1000;
    let mut early = std::mem::take(&mut ws.early);
    if let Some(reason) = Box::pin(handle_messages(&conn, &ws, &mut early)).await {
        conn.request_close(reason);
    }

    let reason = loop {
        if let Some(reason) = conn.close_requested() {
            break reason;
        }
        tokio::select! {
            ready = ws.tcp.readable() => {
                if ready.is_err() {
                    break CloseReason::TransportError;
                }
                match ws.read_available(max, &mut messages) {
                    Ok(true) => {}
                    Ok(false) => break CloseReason::TransportClose,
                    Err(ReadError::Io) => break CloseReason::TransportError,
                    Err(ReadError::Frame(error)) => {
                        if error == FrameError::TooBig {
                            crate::limits::Limit::PayloadSize.count();
                        }
                        close_code = error.close_code();
                        break CloseReason::TransportError;
                    }
                }
                // Boxed: the packet handling future is most of this task's
                // size, and an idle connection should not carry it.
                if let Some(reason) = Box::pin(handle_messages(&conn, &ws, &mut messages)).await {
                    break reason;
                }
            }
            _ = conn.outbox().notified(), if pending.is_empty() => {
                conn.outbox().take(&mut pending.frames);
                match pending.flush(&ws.tcp) {
                    Ok(n) => conn.outbox().written(n),
                    Err(_) => break CloseReason::TransportError,
                }
            }
            ready = ws.tcp.writable(), if !pending.is_empty() => {
                if ready.is_err() {
                    break CloseReason::TransportError;
                }
                match pending.flush(&ws.tcp) {
                    Ok(n) => conn.outbox().written(n),
                    Err(_) => break CloseReason::TransportError,
                }
            }
            // A close requested by another task (a slow reader detected by a
            // broadcaster, the server API) while this one waits on the socket.
            () = conn.driver_woken() => {}
            () = &mut sleep => {
                if let Some(reason) = conn.on_timeout() {
                    break reason;
                }
                if connect_check.is_some_and(|c| Instant::now() >= c) {
                    connect_check = None;
                    if !conn.has_sockets() {
                        break CloseReason::ForcedClose;
                    }
                }
            }
        }
        let next = next_deadline(connect_check);
        if next != sleep.deadline() {
            sleep.as_mut().reset(next);
        }
    };

    // Boxed: the close sequence is needed once, not carried by every idle
    // connection's task.
    Box::pin(close(conn, ws, pending, reason, close_code)).await;
}

/// The close sequence of a WebSocket session.
async fn close(conn: Arc<EngineConn>, ws: WsConn, mut pending: Pending, reason: CloseReason, close_code: u16) {
    if conn.outbox().overflowed() {
        // Nothing more is written to a client that does not read.
        conn.finish(CloseReason::SlowReader).await;
        return;
    }
    conn.finish(reason).await;
    if matches!(reason, CloseReason::ForcedClose | CloseReason::ServerShuttingDown | CloseReason::ParseError) {
        // Flush what the server said last (a DISCONNECT, say), briefly.
        conn.outbox().take(&mut pending.frames);
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while !pending.is_empty() {
                if ws.tcp.writable().await.is_err() || pending.flush(&ws.tcp).is_err() {
                    break;
                }
            }
        })
        .await;
    }
    if !matches!(reason, CloseReason::TransportClose | CloseReason::TransportError) || close_code != 1000 {
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            ws.write_now(&control_frame(0x8, &close_code.to_be_bytes())),
        )
        .await;
    }
}

/// Hands each decoded message to the session. Returns a close reason when
/// one of them ends it.
async fn handle_messages(conn: &Arc<EngineConn>, ws: &WsConn, messages: &mut Vec<Message>) -> Option<CloseReason> {
    for message in messages.drain(..) {
        let packet = match message {
            Message::Text(text) => match EnginePacket::decode_text(text) {
                Ok(packet) => packet,
                Err(_) => return Some(CloseReason::ParseError),
            },
            Message::Binary(data) => EnginePacket::decode_binary(data),
            Message::Ping(data) => {
                if ws.write_now(&control_frame(0xA, &data)).await.is_err() {
                    return Some(CloseReason::TransportError);
                }
                continue;
            }
            Message::Close => return Some(CloseReason::TransportClose),
        };
        match conn.on_packet(Transport::WebSocket, packet).await {
            Flow::Continue => {}
            Flow::Close(reason) => return Some(reason),
            // Probes only happen on the upgrade path.
            Flow::Probe | Flow::Upgraded => return Some(CloseReason::ParseError),
        }
    }
    None
}

/// The upgrade of a polling session: answer `2probe` with `3probe`, wait for
/// `5`, then hand the socket to the session's driver.
pub(crate) async fn upgrade(conn: Arc<EngineConn>, mut ws: WsConn) {
    let max = conn.shared.config.engine.max_payload;
    let mut messages = Vec::new();
    let mut noop_timer: Option<tokio::time::Interval> = None;
    let probe = async {
        loop {
            tokio::select! {
                ready = ws.tcp.readable() => ready.ok()?,
                _ = async { noop_timer.as_mut().expect("guarded").tick().await }, if noop_timer.is_some() => {
                    // As the reference server does: every 100 ms after the
                    // probe, a pending GET is released with a noop so the
                    // client can pause polling and send the upgrade.
                    if conn.polling_get.load(std::sync::atomic::Ordering::Acquire) {
                        let _ = conn.outbox().push(NOOP.clone());
                    }
                    continue;
                }
            }
            if !ws.read_available(max, &mut messages).ok()? {
                return None;
            }
            let mut batch = std::mem::take(&mut messages).into_iter();
            while let Some(message) = batch.next() {
                let Message::Text(text) = message else { return None };
                let packet = EnginePacket::decode_text(text).ok()?;
                match conn.on_packet(Transport::WebSocket, packet).await {
                    Flow::Probe => {
                        ws.write_now(b"\x81\x063probe").await.ok()?;
                        let period = Duration::from_millis(100);
                        noop_timer = Some(tokio::time::interval_at(Instant::now() + period, period));
                    }
                    Flow::Upgraded => {
                        // What came in the same read after `5` belongs to the
                        // upgraded session.
                        ws.early.extend(batch);
                        return Some(());
                    }
                    Flow::Close(reason) => {
                        conn.request_close(reason);
                        return None;
                    }
                    Flow::Continue => return None,
                }
            }
        }
    };
    match tokio::time::timeout(UPGRADE_TIMEOUT, probe).await {
        Ok(Some(())) => {
            if !conn.hand_over(ws) {
                conn.request_close(CloseReason::TransportError);
            }
        }
        _ => {
            // A failed probe leaves the session on polling, as in the
            // reference server.
            conn.upgrade_failed();
            conn.probing.store(false, std::sync::atomic::Ordering::Release);
        }
    }
}
