//! Engine.IO over a WebSocket (tokio-tungstenite), with small buffers: an
//! idle client holds one read buffer (2 KiB by default) and nothing else of size.

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::engineio::Open;
use crate::target::Target;

/// Frames fed before a flush are coalesced up to this size.
const WRITE_BUFFER: usize = 16 * 1024;

pub(crate) struct WsConn {
    ws: WebSocketStream<TcpStream>,
}

impl WsConn {
    /// `read_buffer`: bytes read per syscall at most; frames larger than it
    /// still arrive whole.
    pub(crate) async fn open(target: &Target, index: usize, read_buffer: usize) -> anyhow::Result<(Self, Open)> {
        let tcp = target.connect(index).await?;
        let config = WebSocketConfig::default().read_buffer_size(read_buffer).write_buffer_size(WRITE_BUFFER);
        let (ws, _response) =
            client_async_with_config(target.ws_url(index), tcp, Some(config)).await.context("websocket handshake")?;
        let mut conn = Self { ws };
        let Some(first) = conn.recv().await? else {
            bail!("closed before the open packet");
        };
        let open = Open::parse(&first)?;
        Ok((conn, open))
    }

    pub(crate) async fn recv(&mut self) -> anyhow::Result<Option<Utf8Bytes>> {
        // Bounded: a server sending nothing but control frames is not one
        // this tool measures.
        for _ in 0..1024 {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(Some(text)),
                Some(Ok(Message::Close(_))) | None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            }
        }
        bail!("too many non-text frames in a row")
    }

    pub(crate) async fn send(&mut self, packet: String) -> anyhow::Result<()> {
        self.ws.send(Message::text(packet)).await?;
        Ok(())
    }

    pub(crate) async fn send_all(&mut self, packets: Vec<String>) -> anyhow::Result<()> {
        for p in packets {
            self.ws.feed(Message::text(p)).await?;
        }
        self.ws.flush().await?;
        Ok(())
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }
}
