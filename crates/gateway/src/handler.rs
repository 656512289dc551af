//! The interface between the gateway and an application (the chat, the
//! notifications namespace, a test fixture).
//!
//! The gateway calls a namespace's [`Handler`] when a socket connects, for
//! every event it sends, and when it disconnects. Calls for one socket come
//! in order, one at a time: the next event of a socket is not read until the
//! handler's future for the previous one is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use switchboard_auth::Identity;

use crate::socket::Socket;

/// A boxed future, as handlers return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One event from a client.
#[derive(Debug)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The arguments after the name. Binary attachments are placeholders
    /// (`{"_placeholder":true,"num":i}`) that refer to `attachments`.
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
    /// The client's acknowledgement id, when it asked for one.
    pub ack: Option<u64>,
}

/// Why a socket left its namespace, with the reference server's strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
    ParseError,
    ForcedClose,
    SlowReader,
    ServerShuttingDown,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::ForcedClose => "forced close",
            Self::SlowReader => "slow reader",
            Self::ServerShuttingDown => "server shutting down",
        }
    }

    /// Whether the session is kept for connection state recovery: only when
    /// the client did not mean to leave and the server did not send it away.
    pub fn is_recoverable(self) -> bool {
        matches!(
            self,
            Self::TransportClose
                | Self::TransportError
                | Self::PingTimeout
                | Self::ForcedClose
                | Self::ServerShuttingDown
        )
    }
}

impl From<switchboard_protocol::session::CloseReason> for DisconnectReason {
    fn from(reason: switchboard_protocol::session::CloseReason) -> Self {
        use switchboard_protocol::session::CloseReason as C;
        match reason {
            C::TransportClose => Self::TransportClose,
            C::TransportError => Self::TransportError,
            C::PingTimeout => Self::PingTimeout,
            C::ParseError => Self::ParseError,
            C::ForcedClose => Self::ForcedClose,
            C::SlowReader => Self::SlowReader,
            C::ServerShuttingDown => Self::ServerShuttingDown,
        }
    }
}

/// What a client asks when it connects to a namespace.
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    /// Who the token says it is.
    pub identity: &'a Identity,
    /// The CONNECT payload (`{}` when there was none).
    pub auth: &'a Value,
    /// The query string of the Engine.IO handshake request.
    pub query: &'a str,
}

impl ConnectRequest<'_> {
    /// One parameter of the handshake's query string, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::server::url_pairs(self.query).find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// A refusal of a CONNECT: the client gets CONNECT_ERROR `{message, data}`.
#[derive(Debug, Clone)]
pub struct ConnectRefusal {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectRefusal {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), data: None }
    }
}

/// An application mounted on a namespace.
pub trait Handler: Send + Sync + 'static {
    /// A client passed authentication and asks to connect. A refusal
    /// becomes CONNECT_ERROR (like a Node middleware's `next(err)`).
    fn authorize<'a>(&'a self, request: &'a ConnectRequest<'a>) -> BoxFuture<'a, Result<(), ConnectRefusal>> {
        let _ = request;
        Box::pin(async { Ok(()) })
    }

    /// The socket is connected: its CONNECT was answered (like Node's
    /// `connection` event). A recovered socket ([`Socket::recovered`]) is
    /// back in its rooms already.
    fn on_connect<'a>(&'a self, socket: &'a Arc<Socket>, auth: &'a Value) -> BoxFuture<'a, ()> {
        let _ = (socket, auth);
        Box::pin(async {})
    }

    /// An event from the socket.
    fn on_event<'a>(&'a self, socket: &'a Arc<Socket>, event: Event) -> BoxFuture<'a, ()>;

    /// The socket is leaving the namespace. Like Node's `disconnecting`, it
    /// is still in its rooms (so the application can tell them) but no longer
    /// receives anything.
    fn on_disconnect<'a>(&'a self, socket: &'a Arc<Socket>, reason: DisconnectReason) -> BoxFuture<'a, ()> {
        let _ = (socket, reason);
        Box::pin(async {})
    }
}
