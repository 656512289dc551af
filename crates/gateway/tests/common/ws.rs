//! An Engine.IO WebSocket client: text packets as strings, attachments as
//! bytes, every wait bounded by [`WAIT`].

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server sent next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WsFrame {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame (with its code) or the end of the stream (`None`).
    Closed(Option<u16>),
}

/// Opens a WebSocket to `/socket.io/?EIO=4&transport=websocket{extra_query}`.
pub(crate) async fn connect(
    addr: SocketAddr,
    extra_query: &str,
    headers: &[(&str, &str)],
) -> Result<WsStream, tungstenite::Error> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket{extra_query}");
    let mut request = url.into_client_request()?;
    for (name, value) in headers {
        let name: tungstenite::http::HeaderName = name.parse().expect("header name");
        request.headers_mut().insert(name, HeaderValue::from_str(value).expect("header value"));
    }
    let connecting = tokio_tungstenite::connect_async(request);
    let (stream, _) = tokio::time::timeout(WAIT, connecting).await.expect("WebSocket handshake timed out")?;
    Ok(stream)
}

/// An Engine.IO session over WebSocket.
#[derive(Debug)]
pub(crate) struct Ws {
    pub(crate) stream: WsStream,
}

impl Ws {
    /// A new session: returns the client and the open packet (`0{…}`).
    pub(crate) async fn open(addr: SocketAddr) -> (Ws, String) {
        Ws::open_with(addr, &[]).await
    }

    pub(crate) async fn open_with(addr: SocketAddr, headers: &[(&str, &str)]) -> (Ws, String) {
        let stream = connect(addr, "", headers).await.expect("WebSocket handshake");
        let mut ws = Ws { stream };
        let open = ws.recv_text().await;
        assert!(open.starts_with("0{"), "first packet is the open packet, got {open:?}");
        (ws, open)
    }

    /// A new session connected to `/` with `connect` (`40`, `40{"token":…}`):
    /// returns the client and the Socket.IO id from the CONNECT reply.
    pub(crate) async fn connected(addr: SocketAddr, connect: &str) -> (Ws, String) {
        let (mut ws, _) = Ws::open(addr).await;
        let reply = ws.request(connect).await;
        (ws, super::connect_sid(&reply, "40"))
    }

    /// A WebSocket that joins the polling session `sid` (an upgrade).
    pub(crate) async fn upgrade(addr: SocketAddr, sid: &str) -> Ws {
        let stream = connect(addr, &format!("&sid={sid}"), &[]).await.expect("WebSocket upgrade handshake");
        Ws { stream }
    }

    pub(crate) async fn send(&mut self, text: &str) {
        let sending = self.stream.send(Message::text(text));
        tokio::time::timeout(WAIT, sending).await.expect("send timed out").expect("send a text frame");
    }

    pub(crate) async fn send_binary(&mut self, data: &[u8]) {
        let sending = self.stream.send(Message::binary(data.to_vec()));
        tokio::time::timeout(WAIT, sending).await.expect("send timed out").expect("send a binary frame");
    }

    /// Queues several text frames and writes them together (one TCP write
    /// when they fit), as a fast client does.
    pub(crate) async fn send_batch(&mut self, texts: &[&str]) {
        let sending = async {
            for text in texts {
                self.stream.feed(Message::text(*text)).await?;
            }
            self.stream.flush().await
        };
        tokio::time::timeout(WAIT, sending).await.expect("send timed out").expect("send frames");
    }

    /// The next data frame (WebSocket pings and pongs are skipped).
    pub(crate) async fn recv(&mut self) -> WsFrame {
        let receiving = async {
            loop {
                match self.stream.next().await {
                    Some(Ok(Message::Text(text))) => return WsFrame::Text(text.as_str().to_owned()),
                    Some(Ok(Message::Binary(data))) => return WsFrame::Binary(data.to_vec()),
                    Some(Ok(Message::Close(frame))) => {
                        return WsFrame::Closed(frame.map(|f: CloseFrame| u16::from(f.code)));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return WsFrame::Closed(None),
                }
            }
        };
        tokio::time::timeout(WAIT, receiving).await.expect("no WebSocket frame within the wait")
    }

    /// The next frame, which must be text.
    pub(crate) async fn recv_text(&mut self) -> String {
        match self.recv().await {
            WsFrame::Text(text) => text,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame, which must be binary.
    pub(crate) async fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv().await {
            WsFrame::Binary(data) => data,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Sends a packet and returns the next text packet.
    pub(crate) async fn request(&mut self, packet: &str) -> String {
        self.send(packet).await;
        self.recv_text().await
    }

    /// Reads until the server closes; returns the text packets before the
    /// close and the close code.
    pub(crate) async fn closed(&mut self) -> (Vec<String>, Option<u16>) {
        let mut texts = Vec::new();
        loop {
            match self.recv().await {
                WsFrame::Text(text) => texts.push(text),
                WsFrame::Binary(_) => {}
                WsFrame::Closed(code) => return (texts, code),
            }
        }
    }

    /// Drops the TCP connection without a close frame or DISCONNECT (as a
    /// network cut looks to the server).
    pub(crate) fn cut(self) {
        drop(self.stream);
    }
}
