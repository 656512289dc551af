//! HTTP long-polling: a GET waits for what the session has queued, a POST
//! carries packets from the client. Between requests a small task keeps the
//! heartbeat and runs the close sequence; when the session upgrades, that
//! task becomes the WebSocket driver.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http::{StatusCode, header};
use switchboard_protocol::polling::decode_payload;
use switchboard_protocol::session::{CloseReason, Transport};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::ws::{self, WsConn};
use crate::engine::{EngineConn, Flow};
use crate::frame::Frame;
use crate::server::engine_error;

/// The driver of a session that started on polling.
pub(crate) async fn drive(conn: Arc<EngineConn>, upgrade: oneshot::Receiver<WsConn>) {
    let mut upgrade = Some(upgrade);
    let far = || Instant::now() + Duration::from_secs(86_400);
    let mut connect_check = Some(Instant::now() + conn.shared.config.connect_timeout);
    loop {
        if let Some(reason) = conn.close_requested() {
            conn.finish(reason).await;
            return;
        }
        let heartbeat = conn.next_deadline().map_or_else(far, Instant::from_std);
        let deadline = connect_check.map_or(heartbeat, |c| c.min(heartbeat));
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                if let Some(reason) = conn.on_timeout() {
                    conn.request_close(reason);
                } else if connect_check.is_some_and(|c| Instant::now() >= c) {
                    connect_check = None;
                    if !conn.has_sockets() {
                        conn.request_close(CloseReason::ForcedClose);
                    }
                }
            }
            () = conn.driver_woken() => {}
            ws = async { upgrade.as_mut().expect("guarded").await }, if upgrade.is_some() => {
                upgrade = None;
                if let Ok(ws) = ws {
                    // Boxed so that a session still on polling does not carry
                    // the WebSocket driver's size.
                    Box::pin(ws::drive(conn, ws, connect_check)).await;
                    return;
                }
            }
        }
    }
}

/// Clears a flag when a request ends, however it ends.
struct Busy<'a>(&'a AtomicBool);

impl<'a> Busy<'a> {
    fn take(flag: &'a AtomicBool) -> Option<Self> {
        (!flag.swap(true, Ordering::AcqRel)).then_some(Busy(flag))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// GET: answers with everything queued, waiting until something is.
pub(crate) async fn get(conn: Arc<EngineConn>) -> Response {
    let Some(_busy) = Busy::take(&conn.polling_get) else {
        // Two concurrent GETs: the reference server treats it as an error.
        conn.request_close(CloseReason::TransportError);
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    };
    let mut frames = Vec::new();
    loop {
        if conn.transport() == Transport::WebSocket {
            // A client pauses polling before it sends the upgrade, so a GET
            // still here after it is not from a well-behaved client.
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        }
        conn.outbox().take(&mut frames);
        if !frames.is_empty() {
            let mut body = BytesMut::new();
            let mut written = 0;
            for frame in &frames {
                frame.push_polling(&mut body);
                written += frame.len();
            }
            conn.outbox().written(written);
            return payload_response(body.freeze());
        }
        if conn.outbox().is_closed() {
            // Answered here: the session's next GET is unknown.
            conn.shared.take_closed_poll(conn.sid());
            return payload_response(Bytes::from_static(last_packet(conn.close_requested())));
        }
        tokio::select! {
            () = conn.outbox().notified() => {}
            () = conn.shared.shutdown.cancelled() => return payload_response(Bytes::from_static(b"1")),
        }
    }
}

/// POST: decodes the payload and feeds each packet to the session in order.
pub(crate) async fn post(conn: Arc<EngineConn>, body: Bytes) -> Response {
    let Some(_busy) = Busy::take(&conn.polling_post) else {
        conn.request_close(CloseReason::TransportError);
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    };
    let packets = match decode_payload(body) {
        Ok(packets) => packets,
        Err(_) => {
            conn.request_close(CloseReason::ParseError);
            return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
        }
    };
    for packet in packets {
        match conn.on_packet(Transport::Polling, packet).await {
            Flow::Continue => {}
            Flow::Close(reason) => {
                if reason == CloseReason::TransportClose && !conn.polling_get.load(Ordering::Acquire) {
                    // The client's GET may be on its way: it gets the noop.
                    conn.shared.remember_closed_poll(conn.sid_arc(), last_packet(Some(reason)));
                }
                conn.request_close(reason);
                break;
            }
            Flow::Probe | Flow::Upgraded => {
                conn.request_close(CloseReason::ParseError);
                break;
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}

/// What a GET gets once the session closed: the client's own close is
/// answered with a noop, any other with the close packet, as the reference
/// server does.
pub(crate) fn last_packet(reason: Option<CloseReason>) -> &'static [u8] {
    if reason == Some(CloseReason::TransportClose) { b"6" } else { b"1" }
}

/// The body of a GET: a polling payload.
pub(crate) fn payload_response(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=UTF-8")], body).into_response()
}

/// The handshake answer of a polling session.
pub(crate) fn open_response(open: &Frame) -> Response {
    payload_response(Bytes::copy_from_slice(open.payload()))
}
