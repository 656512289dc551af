//! Shared helpers of the gateway's black-box tests.
//!
//! - `server`: a real gateway on 127.0.0.1:0 with recording test handlers.
//! - `http`: a small HTTP/1.1 client and an Engine.IO long-polling client.
//! - `ws`: an Engine.IO WebSocket client over tokio-tungstenite.
//!
//! Every wait here is bounded by [`WAIT`], so a broken gateway fails a test
//! instead of hanging it. Each test binary uses a different subset of these
//! helpers, hence the `dead_code` allowance.

#![allow(dead_code)]

pub(crate) mod http;
pub(crate) mod server;
pub(crate) mod ws;

use std::time::Duration;

use serde_json::Value;
use switchboard_auth::{AuthConfig, Authenticator};
use switchboard_gateway::Config;
use switchboard_protocol::handshake::Settings;

#[allow(unused_imports)]
pub(crate) use self::http::{HttpResponse, Polling, http};
#[allow(unused_imports)]
pub(crate) use self::server::{Log, Record, Server, TestHandler};
#[allow(unused_imports)]
pub(crate) use self::ws::{Ws, WsFrame};

/// The longest any single step of a test may take.
pub(crate) const WAIT: Duration = Duration::from_secs(2);

/// The HS256 secret of [`secret_auth`].
pub(crate) const SECRET: &str = "gateway-black-box-tests";

/// The record separator of polling payloads.
pub(crate) const RS: char = '\x1e';

/// The reference server's defaults, without connection state recovery (as a
/// Node server without `connectionStateRecovery`): events carry no offset
/// and CONNECT replies no `pid`.
pub(crate) fn config() -> Config {
    Config { recovery_window: Duration::ZERO, ..Config::default() }
}

/// [`config`] with connection state recovery on (the gateway's default).
pub(crate) fn recovery_config() -> Config {
    Config::default()
}

/// Engine.IO settings with these heartbeat times (milliseconds) and payload size.
pub(crate) fn engine(ping_interval_ms: u64, ping_timeout_ms: u64, max_payload: usize) -> Settings {
    Settings {
        ping_interval: Duration::from_millis(ping_interval_ms),
        ping_timeout: Duration::from_millis(ping_timeout_ms),
        max_payload,
    }
}

/// An authenticator that requires HS256 tokens signed with [`SECRET`].
pub(crate) fn secret_auth() -> Authenticator {
    Authenticator::from_config(&AuthConfig { secret: Some(SECRET.into()), ..AuthConfig::default() })
        .expect("an HS256 authenticator")
}

/// A valid token for user `sub`.
pub(crate) fn token(sub: &str) -> String {
    switchboard_auth::mint_hs256(SECRET, sub, sub, "user", 600)
}

/// The JSON after `prefix` in a packet, asserting the prefix.
pub(crate) fn json_after(packet: &str, prefix: &str) -> Value {
    let rest = packet.strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix:?}…, got {packet:?}"));
    serde_json::from_str(rest).unwrap_or_else(|e| panic!("no JSON after {prefix:?} in {packet:?}: {e}"))
}

/// The `sid` of a CONNECT reply such as `40{"sid":"…"}` or `40/admin,{"sid":"…"}`.
pub(crate) fn connect_sid(packet: &str, prefix: &str) -> String {
    let data = json_after(packet, prefix);
    data["sid"].as_str().unwrap_or_else(|| panic!("no sid in {packet:?}")).to_owned()
}

/// Whether an id has the shape of the reference server's ids: 20 characters
/// of URL-safe base64.
pub(crate) fn is_base64id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The last argument of an event packet `42[…]`: the recovery offset.
pub(crate) fn last_arg(packet: &str) -> String {
    let start = packet.find('[').unwrap_or_else(|| panic!("no arguments in {packet:?}"));
    let args: Vec<Value> = serde_json::from_str(&packet[start..]).expect("event arguments");
    args.last().and_then(Value::as_str).unwrap_or_else(|| panic!("no string offset in {packet:?}")).to_owned()
}

/// An event packet without its last argument (the recovery offset), so that
/// it can be compared with an exact string.
pub(crate) fn without_offset(packet: &str) -> String {
    let start = packet.find('[').unwrap_or_else(|| panic!("no arguments in {packet:?}"));
    let mut args: Vec<Value> = serde_json::from_str(&packet[start..]).expect("event arguments");
    args.pop();
    format!("{}{}", &packet[..start], Value::Array(args))
}

/// Polls `check` every few milliseconds until it holds, for at most [`WAIT`].
pub(crate) async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
