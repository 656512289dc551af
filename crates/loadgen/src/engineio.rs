//! Engine.IO v4 as a client sees it: the open packet, the one-character
//! packet types, and the record-separated payloads of long-polling. No I/O.

use anyhow::Context;
use serde::Deserialize;

/// Separates packets in a polling payload.
pub(crate) const RECORD_SEPARATOR: char = '\x1e';

/// The answer to a server ping (`2`).
pub(crate) const PONG: &str = "3";

/// The `0{...}` packet that opens a session.
#[derive(Debug, Deserialize)]
pub(crate) struct Open {
    pub(crate) sid: String,
    #[serde(rename = "pingInterval")]
    pub(crate) ping_interval: u64,
    #[serde(rename = "pingTimeout")]
    pub(crate) ping_timeout: u64,
}

impl Open {
    pub(crate) fn parse(packet: &str) -> anyhow::Result<Self> {
        let json = packet.strip_prefix('0').with_context(|| format!("expected an open packet, got {:.60}", packet))?;
        serde_json::from_str(json).context("open packet")
    }
}

/// The packets of a polling payload.
pub(crate) fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split(RECORD_SEPARATOR).filter(|p| !p.is_empty())
}

/// Several packets as one polling payload.
pub(crate) fn join_payload<S: AsRef<str>>(packets: &[S]) -> String {
    let len = packets.iter().map(|p| p.as_ref().len() + 1).sum();
    let mut out = String::with_capacity(len);
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(RECORD_SEPARATOR);
        }
        out.push_str(p.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_open() {
        let o = Open::parse(
            r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#,
        )
        .unwrap();
        assert_eq!(o.sid, "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(o.ping_interval, 25000);
        assert_eq!(o.ping_timeout, 20000);
        assert!(Open::parse("40").is_err());
    }

    #[test]
    fn splits_and_joins_payloads() {
        let body = "2\u{1e}42[\"a\"]\u{1e}";
        assert_eq!(split_payload(body).collect::<Vec<_>>(), ["2", "42[\"a\"]"]);
        assert_eq!(join_payload(&["3", "40"]), "3\u{1e}40");
        assert_eq!(join_payload::<&str>(&[]), "");
    }
}
