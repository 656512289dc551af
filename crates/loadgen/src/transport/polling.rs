//! Engine.IO over HTTP long-polling: one keep-alive connection carries the
//! GET loop (in its own task, feeding a channel so that `recv` stays
//! cancel-safe), another the POSTs.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::http::HttpConn;
use crate::engineio::{Open, split_payload};
use crate::target::Target;

pub(crate) struct PollingConn {
    post: HttpConn,
    query: String,
    rx: mpsc::UnboundedReceiver<String>,
    reader: JoinHandle<()>,
}

impl PollingConn {
    pub(crate) async fn open(target: &Target, index: usize) -> anyhow::Result<(Self, Open)> {
        let mut get = HttpConn::connect(target, index).await?;
        let handshake = format!("{}?EIO=4&transport=polling", target.path);
        let body = get.request("GET", &handshake, "").await?;
        let first = split_payload(&body).next().context("empty handshake")?;
        let open = Open::parse(first)?;
        let query = format!("{handshake}&sid={}", open.sid);
        let post = HttpConn::connect(target, index).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        // A GET is answered within one ping interval (a ping at the latest).
        let poll_timeout = Duration::from_millis(open.ping_interval + open.ping_timeout + 5_000);
        let reader = tokio::spawn(poll_loop(get, query.clone(), tx, poll_timeout));
        let conn = Self { post, query, rx, reader };
        Ok((conn, open))
    }

    pub(crate) async fn recv(&mut self) -> Option<Utf8Bytes> {
        self.rx.recv().await.map(Utf8Bytes::from)
    }

    pub(crate) async fn send(&mut self, payload: &str) -> anyhow::Result<()> {
        let body = self.post.request("POST", &self.query, payload).await?;
        if body != "ok" {
            bail!("POST answered {body:.60}");
        }
        Ok(())
    }

    pub(crate) async fn close(&mut self) {
        let _ = self.send("1").await;
    }
}

impl Drop for PollingConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Long-polls until the session ends, an error, or the connection is dropped
/// (which aborts this task).
async fn poll_loop(mut get: HttpConn, query: String, tx: mpsc::UnboundedSender<String>, poll_timeout: Duration) {
    loop {
        let body = match tokio::time::timeout(poll_timeout, get.request("GET", &query, "")).await {
            Ok(Ok(body)) => body,
            _ => return,
        };
        for packet in split_payload(&body) {
            if tx.send(packet.to_owned()).is_err() {
                return;
            }
        }
    }
}
