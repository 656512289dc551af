//! One client connection, whatever carries it: a WebSocket (`transport/ws.rs`)
//! or HTTP long-polling (`transport/polling.rs`, over the minimal client of
//! `transport/http.rs`). Both hand out whole Engine.IO packets as text and
//! take packets to send; Socket.IO lives above, in `client.rs`.

mod http;
mod polling;
mod ws;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::engineio::Open;
use crate::target::Target;

#[allow(clippy::large_enum_variant, reason = "WebSocket is the common case; the rare polling client is boxed instead")]
pub(crate) enum Conn {
    Ws(ws::WsConn),
    Polling(Box<polling::PollingConn>),
}

impl Conn {
    /// Opens an Engine.IO session for client `index` and reads its open
    /// packet.
    pub(crate) async fn open(
        target: &Target,
        index: usize,
        polling: bool,
        read_buffer: usize,
    ) -> anyhow::Result<(Self, Open)> {
        if polling {
            let (conn, open) = polling::PollingConn::open(target, index).await?;
            Ok((Self::Polling(Box::new(conn)), open))
        } else {
            let (conn, open) = ws::WsConn::open(target, index, read_buffer).await?;
            Ok((Self::Ws(conn), open))
        }
    }

    /// The next packet; `None` once the server closed the session.
    /// Cancel-safe: no packet is lost when the future is dropped.
    pub(crate) async fn recv(&mut self) -> anyhow::Result<Option<Utf8Bytes>> {
        match self {
            Self::Ws(c) => c.recv().await,
            Self::Polling(c) => Ok(c.recv().await),
        }
    }

    pub(crate) async fn send(&mut self, packet: String) -> anyhow::Result<()> {
        match self {
            Self::Ws(c) => c.send(packet).await,
            // Boxed here and below: an HTTP exchange's state is large, and
            // unboxed it would size every client's task, WebSocket or not.
            Self::Polling(c) => Box::pin(c.send(&packet)).await,
        }
    }

    /// Sends several packets with as few writes as the transport allows.
    pub(crate) async fn send_all(&mut self, packets: Vec<String>) -> anyhow::Result<()> {
        match self {
            Self::Ws(c) => c.send_all(packets).await,
            Self::Polling(c) => Box::pin(c.send(&crate::engineio::join_payload(&packets))).await,
        }
    }

    /// Best-effort orderly close.
    pub(crate) async fn close(&mut self) {
        match self {
            Self::Ws(c) => c.close().await,
            Self::Polling(c) => Box::pin(c.close()).await,
        }
    }
}
