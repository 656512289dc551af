//! The Engine.IO session state machine: `session::Session` driven by an
//! arbitrary script of packets, clock advances and timeouts.
//!
//! Input: a script, one command per line (`\n`):
//!
//! - `o<p|w> <interval_ms> <timeout_ms>` (first line only, optional): open on
//!   polling or WebSocket with these settings; default `op 25000 20000`;
//! - `p<text>` / `w<text>`: an engine.io text packet received on polling / on
//!   WebSocket (decoded with `decode_text`; an error closes the session as a
//!   parse error, as the gateway does);
//! - `q<body>`: a polling POST body, decoded with `decode_payload`;
//! - `B<bytes>`: a WebSocket binary frame;
//! - `+<ms>`: time passes; `t<ms>`: time passes, then `on_timeout`;
//! - `d`: time jumps to `next_deadline`, then `on_timeout`;
//! - `x<p|w>`: that transport closed; `c`: the server closes the session.
//!
//! The clock only moves forward, as `Instant` does. Checks: no panic; an open
//! session always names a deadline and a closed one none; a deadline, when it
//! changes, is never in the past; with `ping_timeout <= ping_interval` (the
//! reference defaults) deadlines are monotone; `on_timeout` before the
//! deadline does nothing and at the deadline always acts; a session closes
//! once, with exactly one `Close`, and stays silent afterwards; the transport
//! only changes polling -> WebSocket, with `Upgraded`; messages are delivered
//! unchanged; only `on_timeout` pings.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchboard_protocol::engine::Packet;
use switchboard_protocol::handshake::Settings;
use switchboard_protocol::polling::decode_payload;
use switchboard_protocol::session::{Action, CloseReason, Session, Transport};

/// Bounds every duration of the script (about 11 days) so that `Instant`
/// arithmetic stays far from overflow: settings come from configuration.
const MAX_MS: u64 = 1_000_000_000;

fn millis(digits: &[u8]) -> Duration {
    let ms = digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |acc, &d| acc.saturating_mul(10).saturating_add(u64::from(d - b'0')));
    Duration::from_millis(ms.min(MAX_MS))
}

fn transport(byte: Option<&u8>) -> Transport {
    if byte == Some(&b'w') { Transport::WebSocket } else { Transport::Polling }
}

struct Harness {
    session: Session,
    settings: Settings,
    now: Instant,
    closes: usize,
}

enum Cause {
    Packet(Packet),
    Timeout,
    Other,
}

impl Harness {
    /// Checks the invariants around one step.
    fn step(&mut self, cause: Cause, run: impl FnOnce(&mut Session, Instant) -> Option<Action>) {
        let was_closed = self.session.is_closed();
        let before = self.session.next_deadline();
        let transport_before = self.session.transport();
        let probe = matches!(cause, Cause::Packet(Packet::Ping { probe: true }));
        let message = match &cause {
            Cause::Packet(Packet::Message(payload)) => Some(payload.clone()),
            _ => None,
        };

        let action = run(&mut self.session, self.now);

        let closed = self.session.is_closed();
        let after = self.session.next_deadline();
        assert!(!was_closed || closed, "a closed session reopened");
        if was_closed {
            assert_eq!(action, None, "a closed session acted");
        }
        assert_eq!(matches!(action, Some(Action::Close(_))), closed && !was_closed, "Close without closing");
        if matches!(action, Some(Action::Close(_))) {
            self.closes += 1;
        }
        assert!(self.closes <= 1, "closed twice");
        assert_eq!(after.is_none(), closed, "open without a deadline, or closed with one");

        if let (Some(after), true) = (after, after != before) {
            assert!(after >= self.now, "deadline scheduled in the past");
        }
        if let (Some(before), Some(after)) = (before, after)
            && self.settings.ping_timeout <= self.settings.ping_interval
        {
            assert!(after >= before, "deadline moved back: {before:?} -> {after:?}");
        }
        if let (Cause::Timeout, Some(deadline)) = (&cause, before) {
            if self.now < deadline {
                assert_eq!(action, None, "acted before the deadline");
                assert_eq!(after, before, "early timeout moved the deadline");
            } else {
                assert!(action.is_some(), "did nothing at the deadline");
            }
        }

        let transport_after = self.session.transport();
        let upgraded = matches!(action, Some(Action::Upgraded));
        assert_eq!(transport_after != transport_before, upgraded, "transport changed without Upgraded");
        if upgraded {
            assert_eq!((transport_before, transport_after), (Transport::Polling, Transport::WebSocket));
        }
        assert!(!self.session.is_upgrading() || transport_after == Transport::Polling, "probing from WebSocket");
        match action {
            Some(Action::AnswerProbe) => assert!(probe, "answered a probe nobody sent"),
            Some(Action::Deliver(payload)) => assert_eq!(Some(payload), message, "delivered something else"),
            Some(Action::Send(packet)) => {
                assert!(matches!(cause, Cause::Timeout), "sent a packet outside a timeout");
                assert_eq!(packet, Packet::Ping { probe: false });
            }
            _ => {}
        }
    }

    fn packet(&mut self, from: Transport, packet: Packet) {
        self.step(Cause::Packet(packet.clone()), |s, now| s.on_packet(from, packet, now));
    }

    fn text(&mut self, from: Transport, text: &[u8]) {
        match Packet::decode_text(Bytes::copy_from_slice(text)) {
            Ok(packet) => self.packet(from, packet),
            Err(_) => self.step(Cause::Other, |s, _| s.close(CloseReason::ParseError)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n').peekable();
    let mut settings = Settings::default();
    let mut start = Transport::Polling;
    if let Some(open) = lines.next_if(|line| line.first() == Some(&b'o')) {
        start = transport(open.get(1));
        let mut fields = open.get(2..).unwrap_or_default().split(|&b| b == b' ').filter(|f| !f.is_empty());
        if let Some(interval) = fields.next() {
            settings.ping_interval = millis(interval);
        }
        if let Some(timeout) = fields.next() {
            settings.ping_timeout = millis(timeout);
        }
    }
    let now = Instant::now();
    let mut h = Harness { session: Session::new(settings, start, now), settings, now, closes: 0 };
    assert_eq!(h.session.next_deadline(), Some(now + settings.ping_interval));

    for line in lines {
        let Some((&op, arg)) = line.split_first() else { continue };
        match op {
            b'p' => h.text(Transport::Polling, arg),
            b'w' => h.text(Transport::WebSocket, arg),
            b'q' => match decode_payload(Bytes::copy_from_slice(arg)) {
                Ok(packets) => packets.into_iter().for_each(|p| h.packet(Transport::Polling, p)),
                Err(_) => h.step(Cause::Other, |s, _| s.close(CloseReason::ParseError)),
            },
            b'B' => h.packet(Transport::WebSocket, Packet::decode_binary(Bytes::copy_from_slice(arg))),
            b'+' => h.now += millis(arg),
            b't' => {
                h.now += millis(arg);
                h.step(Cause::Timeout, |s, now| s.on_timeout(now));
            }
            b'd' => {
                if let Some(deadline) = h.session.next_deadline() {
                    h.now = h.now.max(deadline);
                }
                h.step(Cause::Timeout, |s, now| s.on_timeout(now));
            }
            b'x' => {
                let which = transport(arg.first());
                h.step(Cause::Other, |s, _| s.on_transport_closed(which, CloseReason::TransportClose));
            }
            b'c' => h.step(Cause::Other, |s, _| s.close(CloseReason::ForcedClose)),
            _ => {}
        }
    }
});
