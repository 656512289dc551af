//! The Engine.IO handshake answer: `0{"sid":…,"upgrades":…,"pingInterval":…,"pingTimeout":…,"maxPayload":…}`.

use std::time::Duration;

/// The settings a client learns in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// `maxHttpBufferSize`: the largest message accepted.
    pub max_payload: usize,
}

impl Default for Settings {
    /// The Node `engine.io` defaults.
    fn default() -> Self {
        Self { ping_interval: Duration::from_secs(25), ping_timeout: Duration::from_secs(20), max_payload: 1_000_000 }
    }
}

/// The open packet's JSON, without the `0`. A client that starts on polling is
/// offered the WebSocket upgrade; one that starts on WebSocket is offered none.
pub fn open_json(sid: &str, settings: &Settings, offer_websocket: bool) -> String {
    let upgrades = if offer_websocket { r#"["websocket"]"# } else { "[]" };
    format!(
        r#"{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
        settings.ping_interval.as_millis(),
        settings.ping_timeout.as_millis(),
        settings.max_payload,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_keys() {
        let json = open_json("abc", &Settings::default(), true);
        assert_eq!(
            json,
            r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
        );
        assert!(open_json("abc", &Settings::default(), false).contains(r#""upgrades":[]"#));
    }
}
