//! The gateway's settings, as plain data. The binary reads them from the
//! environment; tests build them directly.

use std::time::Duration;

use switchboard_protocol::handshake::Settings;

/// Per-socket and per-message limits (SPEC.md section 6).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Binary attachments one packet may announce.
    pub max_attachments: usize,
    /// Rooms one socket may be in (its own id not counted).
    pub max_rooms_per_socket: usize,
    /// Characters in a room name.
    pub max_room_name_len: usize,
    /// Token bucket refill, events per second per socket.
    pub event_rate: f64,
    /// Token bucket size.
    pub event_burst: f64,
    /// Sockets one user may hold in one namespace.
    pub max_sockets_per_user: usize,
    /// Bytes queued for one session before it is cut off as a slow reader.
    pub max_pending_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_attachments: 10,
            max_rooms_per_socket: 100,
            max_room_name_len: 128,
            event_rate: 50.0,
            event_burst: 100.0,
            max_sockets_per_user: 20,
            max_pending_bytes: 4 << 20,
        }
    }
}

/// Cross-origin settings.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    /// Allowed origins; `*` allows any. Empty: no CORS headers at all.
    pub origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
}

/// Everything the gateway needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Socket.IO path, with leading and trailing slash.
    pub path: String,
    /// Heartbeat and payload size, as told in the handshake.
    pub engine: Settings,
    pub cors: Cors,
    /// How long a disconnected socket can be recovered; zero turns recovery off.
    pub recovery_window: Duration,
    /// Packets kept per namespace for recovery.
    pub recovery_max_packets: usize,
    /// How long the server waits for a client's acknowledgement.
    pub ack_timeout: Duration,
    /// A session must connect to a namespace within this time.
    pub connect_timeout: Duration,
    pub limits: Limits,
    /// Echo every message back at the Engine.IO level instead of running
    /// Socket.IO: only for the Engine.IO conformance suite.
    pub engine_echo: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: "/socket.io/".into(),
            engine: Settings::default(),
            cors: Cors::default(),
            recovery_window: Duration::from_secs(120),
            recovery_max_packets: 100_000,
            ack_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(45),
            limits: Limits::default(),
            engine_echo: false,
        }
    }
}
