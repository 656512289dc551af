//! The Engine.IO session state machine: heartbeat, upgrade and close.
//!
//! The gateway feeds it every packet a transport receives and asks it, at the
//! deadline it names, what time requires. It answers with [`Action`]s. The
//! heartbeat is the v4 one: the server pings every `pingInterval` after the
//! last pong and closes the session when no pong comes within `pingTimeout`.

use std::time::Instant;

use crate::engine::{Packet, Payload};
use crate::handshake::Settings;

/// A transport of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

impl Transport {
    /// The name used in the `transport` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// Why a session closed, with the reason strings of the reference server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `1` or its transport closed.
    TransportClose,
    /// The transport failed (read error, oversized message).
    TransportError,
    /// No pong within `pingTimeout`.
    PingTimeout,
    /// Bytes that do not decode.
    ParseError,
    /// The server closed it (the server API, a limit).
    ForcedClose,
    /// The client read too slowly and its outgoing queue filled up.
    SlowReader,
    /// The server is draining.
    ServerShuttingDown,
}

impl CloseReason {
    /// The reason string of the reference server (and our metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::SlowReader => "slow reader",
            CloseReason::ServerShuttingDown => "server shutting down",
        }
    }
}

/// What the gateway must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue this packet on the session's current transport.
    Send(Packet),
    /// Send this packet on the WebSocket being probed (`3probe`), and a `6`
    /// noop on the polling transport so that its pending GET returns.
    AnswerProbe,
    /// The upgrade is complete: from now on the session writes to WebSocket.
    Upgraded,
    /// A message for the Socket.IO layer.
    Deliver(Payload),
    /// Close the session.
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    None,
    Probed,
}

/// One Engine.IO session.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    transport: Transport,
    upgrade: Upgrade,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    closed: bool,
}

impl Session {
    /// A session opened on `transport` at `now`. The first ping is due one
    /// interval later.
    pub fn new(settings: Settings, transport: Transport, now: Instant) -> Self {
        Self {
            settings,
            transport,
            upgrade: Upgrade::None,
            next_ping: Some(now + settings.ping_interval),
            pong_deadline: None,
            closed: false,
        }
    }

    /// The transport the session currently writes to.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether a WebSocket probe is under way.
    pub fn is_upgrading(&self) -> bool {
        self.upgrade == Upgrade::Probed
    }

    /// Whether the session has closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A packet received on transport `from`.
    pub fn on_packet(&mut self, from: Transport, packet: Packet, now: Instant) -> Option<Action> {
        if self.closed {
            return None;
        }
        let upgrading_ws = from == Transport::WebSocket && self.transport == Transport::Polling;
        match packet {
            Packet::Ping { probe: true } if upgrading_ws && self.upgrade == Upgrade::None => {
                self.upgrade = Upgrade::Probed;
                Some(Action::AnswerProbe)
            }
            Packet::Upgrade if upgrading_ws && self.upgrade == Upgrade::Probed => {
                self.upgrade = Upgrade::None;
                self.transport = Transport::WebSocket;
                Some(Action::Upgraded)
            }
            // Anything else on a WebSocket that is not (yet) the session's
            // transport breaks the upgrade protocol.
            _ if upgrading_ws => self.close(CloseReason::ParseError),
            Packet::Pong { probe: false } => {
                self.pong_deadline = None;
                self.next_ping = Some(now + self.settings.ping_interval);
                None
            }
            Packet::Message(payload) => Some(Action::Deliver(payload)),
            Packet::Close => self.close(CloseReason::TransportClose),
            Packet::Noop => None,
            // In v4 only the server pings: the reference server closes a
            // session whose client pings ("invalid heartbeat direction").
            Packet::Ping { probe: false } => self.close(CloseReason::TransportError),
            Packet::Open(_) | Packet::Upgrade | Packet::Ping { probe: true } | Packet::Pong { probe: true } => {
                self.close(CloseReason::ParseError)
            }
        }
    }

    /// A transport of the session failed or closed.
    pub fn on_transport_closed(&mut self, which: Transport, reason: CloseReason) -> Option<Action> {
        if which == self.transport {
            self.close(reason)
        } else {
            // A failed probe leaves the session on polling.
            self.upgrade = Upgrade::None;
            None
        }
    }

    /// When [`Session::on_timeout`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        self.pong_deadline.or(self.next_ping)
    }

    /// Time passed: maybe a ping is due, or the pong is late.
    pub fn on_timeout(&mut self, now: Instant) -> Option<Action> {
        if self.closed {
            return None;
        }
        if let Some(deadline) = self.pong_deadline {
            return (now >= deadline).then(|| self.close(CloseReason::PingTimeout)).flatten();
        }
        match self.next_ping {
            Some(at) if now >= at => {
                self.next_ping = None;
                // Counted from when the ping was due, not from when the timer
                // fired: a slightly late timer must not stretch the client's
                // allowance. A very late one (a stalled process) still leaves
                // the client half of it, rather than a deadline in the past.
                let timeout = self.settings.ping_timeout;
                self.pong_deadline = Some((at + timeout).max(now + timeout / 2));
                Some(Action::Send(Packet::Ping { probe: false }))
            }
            _ => None,
        }
    }

    /// The server closes the session.
    pub fn close(&mut self, reason: CloseReason) -> Option<Action> {
        if self.closed {
            return None;
        }
        self.closed = true;
        Some(Action::Close(reason))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn settings() -> Settings {
        Settings { ping_interval: Duration::from_secs(25), ping_timeout: Duration::from_secs(20), max_payload: 100 }
    }

    #[test]
    fn pings_then_times_out_without_pong() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(), Transport::WebSocket, t0);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(25)));
        assert_eq!(s.on_timeout(t0 + Duration::from_secs(1)), None);
        let t1 = t0 + Duration::from_secs(25);
        assert_eq!(s.on_timeout(t1), Some(Action::Send(Packet::Ping { probe: false })));
        assert_eq!(s.next_deadline(), Some(t1 + Duration::from_secs(20)));
        assert_eq!(s.on_timeout(t1 + Duration::from_secs(20)), Some(Action::Close(CloseReason::PingTimeout)));
        assert!(s.is_closed());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_very_late_timer_still_leaves_time_for_the_pong() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(), Transport::WebSocket, t0);
        let late = t0 + Duration::from_secs(25 + 30);
        assert_eq!(s.on_timeout(late), Some(Action::Send(Packet::Ping { probe: false })));
        assert_eq!(s.next_deadline(), Some(late + Duration::from_secs(10)));
        let slightly_late = Instant::now();
        let mut s = Session::new(settings(), Transport::WebSocket, slightly_late);
        let due = slightly_late + Duration::from_secs(25);
        s.on_timeout(due + Duration::from_millis(2));
        assert_eq!(s.next_deadline(), Some(due + Duration::from_secs(20)), "counted from when the ping was due");
    }

    #[test]
    fn pong_schedules_the_next_ping() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(), Transport::Polling, t0);
        let t1 = t0 + Duration::from_secs(25);
        s.on_timeout(t1);
        let t2 = t1 + Duration::from_secs(3);
        assert_eq!(s.on_packet(Transport::Polling, Packet::Pong { probe: false }, t2), None);
        assert_eq!(s.next_deadline(), Some(t2 + Duration::from_secs(25)));
    }

    #[test]
    fn upgrade_probe_then_switch() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(), Transport::Polling, t0);
        assert_eq!(s.on_packet(Transport::WebSocket, Packet::Ping { probe: true }, t0), Some(Action::AnswerProbe));
        assert!(s.is_upgrading());
        assert_eq!(s.transport(), Transport::Polling);
        assert_eq!(s.on_packet(Transport::WebSocket, Packet::Upgrade, t0), Some(Action::Upgraded));
        assert_eq!(s.transport(), Transport::WebSocket);
        let msg = Packet::Message(Payload::Text(Bytes::from_static(b"2[\"a\"]")));
        assert!(matches!(s.on_packet(Transport::WebSocket, msg, t0), Some(Action::Deliver(_))));
    }

    #[test]
    fn upgrade_without_probe_is_an_error() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(), Transport::Polling, t0);
        assert_eq!(
            s.on_packet(Transport::WebSocket, Packet::Upgrade, t0),
            Some(Action::Close(CloseReason::ParseError))
        );
    }

    #[test]
    fn failed_probe_keeps_polling() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(), Transport::Polling, t0);
        s.on_packet(Transport::WebSocket, Packet::Ping { probe: true }, t0);
        assert_eq!(s.on_transport_closed(Transport::WebSocket, CloseReason::TransportClose), None);
        assert!(!s.is_upgrading());
        assert!(!s.is_closed());
    }

    #[test]
    fn close_packet_closes_once() {
        let t0 = Instant::now();
        let mut s = Session::new(settings(), Transport::WebSocket, t0);
        assert_eq!(
            s.on_packet(Transport::WebSocket, Packet::Close, t0),
            Some(Action::Close(CloseReason::TransportClose))
        );
        assert_eq!(s.close(CloseReason::ForcedClose), None);
    }
}
