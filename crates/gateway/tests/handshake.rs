//! The Engine.IO handshake and the HTTP errors of the reference server
//! (`engine.io` `Server.errorMessages`, answered by `abortRequest`).

mod common;

use common::{Polling, Server, Ws, config, engine, http, is_base64id};
use switchboard_gateway::{Config, Cors};

const UNSUPPORTED: &str = r#"{"code":5,"message":"Unsupported protocol version"}"#;
const UNKNOWN_TRANSPORT: &str = r#"{"code":0,"message":"Transport unknown"}"#;
const UNKNOWN_SID: &str = r#"{"code":1,"message":"Session ID unknown"}"#;
const BAD_HANDSHAKE_METHOD: &str = r#"{"code":2,"message":"Bad handshake method"}"#;
const BAD_REQUEST: &str = r#"{"code":3,"message":"Bad request"}"#;

/// Asserts a JSON error answer: 400, `application/json`, the exact body.
async fn assert_error(server: &Server, method: &str, target: &str, expected: &str) {
    let body = (method == "POST").then_some(&b"40"[..]);
    let response = http(server.addr, method, target, &[], body).await;
    assert_eq!((response.status, response.text().as_str()), (400, expected), "{method} {target}");
    assert_eq!(response.header("content-type"), Some("application/json"), "{method} {target}");
}

#[tokio::test]
async fn polling_handshake_announces_the_configured_settings() {
    let server = Server::echo(Config { engine: engine(300, 200, 1_000_000), ..config() }).await;
    let response = http(server.addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], None).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain; charset=UTF-8"));
    let body = response.text();
    let sid = common::json_after(&body, "0")["sid"].as_str().expect("sid").to_owned();
    assert!(is_base64id(&sid), "sid {sid:?} has the shape of a base64id");
    assert_eq!(
        body,
        format!(
            r#"0{{"sid":"{sid}","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}}"#
        )
    );
}

#[tokio::test]
async fn polling_handshake_uses_the_reference_defaults() {
    let server = Server::echo(config()).await;
    let session = Polling::open(server.addr).await;
    assert_eq!(
        session.open,
        format!(
            r#"0{{"sid":"{}","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#,
            session.sid
        )
    );
}

#[tokio::test]
async fn websocket_handshake_offers_no_upgrade() {
    let server = Server::echo(Config { engine: engine(300, 200, 5000), ..config() }).await;
    let (_ws, open) = Ws::open(server.addr).await;
    let sid = common::json_after(&open, "0")["sid"].as_str().expect("sid").to_owned();
    assert!(is_base64id(&sid));
    assert_eq!(
        open,
        format!(r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":5000}}"#)
    );
}

#[tokio::test]
async fn every_handshake_gets_its_own_session() {
    let server = Server::echo(config()).await;
    let a = Polling::open(server.addr).await;
    let b = Polling::open(server.addr).await;
    let (_ws, open) = Ws::open(server.addr).await;
    let c = common::json_after(&open, "0")["sid"].as_str().expect("sid").to_owned();
    assert!(a.sid != b.sid && a.sid != c && b.sid != c);
    assert_eq!(server.gateway.session_count(), 3);
}

#[tokio::test]
async fn unsupported_protocol_version_is_refused() {
    let server = Server::echo(config()).await;
    for target in [
        "/socket.io/?EIO=3&transport=polling",
        "/socket.io/?transport=polling",
        "/socket.io/?EIO=abc&transport=polling",
    ] {
        assert_error(&server, "GET", target, UNSUPPORTED).await;
    }
}

#[tokio::test]
async fn unknown_transport_is_refused() {
    let server = Server::echo(config()).await;
    for target in ["/socket.io/?EIO=4", "/socket.io/?EIO=4&transport=abc", "/socket.io/?EIO=4&transport=webtransport"] {
        assert_error(&server, "GET", target, UNKNOWN_TRANSPORT).await;
    }
}

/// The reference server checks the transport (and, for `websocket`, that the
/// request is an upgrade) in `verify()`, and the protocol version only later,
/// in `handshake()`.
#[tokio::test]
async fn transport_is_checked_before_the_protocol_version() {
    let server = Server::echo(config()).await;
    assert_error(&server, "GET", "/socket.io/?EIO=3&transport=abc", UNKNOWN_TRANSPORT).await;
    assert_error(&server, "GET", "/socket.io/?EIO=3&transport=websocket", BAD_REQUEST).await;
}

#[tokio::test]
async fn unknown_session_id_is_refused() {
    let server = Server::echo(config()).await;
    let target = "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA";
    assert_error(&server, "GET", target, UNKNOWN_SID).await;
    assert_error(&server, "POST", target, UNKNOWN_SID).await;
}

#[tokio::test]
async fn handshake_must_be_a_get() {
    let server = Server::echo(config()).await;
    assert_error(&server, "POST", "/socket.io/?EIO=4&transport=polling", BAD_HANDSHAKE_METHOD).await;
    assert_error(&server, "PUT", "/socket.io/?EIO=4&transport=polling", BAD_HANDSHAKE_METHOD).await;
    assert_eq!(server.gateway.session_count(), 0);
}

#[tokio::test]
async fn websocket_transport_without_an_upgrade_is_a_bad_request() {
    let server = Server::echo(config()).await;
    assert_error(&server, "GET", "/socket.io/?EIO=4&transport=websocket", BAD_REQUEST).await;
}

#[tokio::test]
async fn websocket_upgrade_for_an_unknown_session_is_refused() {
    let server = Server::echo(config()).await;
    let result = common::ws::connect(server.addr, "&sid=AAAAAAAAAAAAAAAAAAAA", &[]).await;
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("expected an HTTP 400 refusal, got {other:?}"),
    }
    assert_eq!(server.gateway.session_count(), 0);
}

#[tokio::test]
async fn configured_path_is_served() {
    let server = Server::echo(Config { path: "/realtime/".into(), ..config() }).await;
    let response = http(server.addr, "GET", "/realtime/?EIO=4&transport=polling", &[], None).await;
    assert_eq!(response.status, 200);
    assert!(response.text().starts_with(r#"0{"sid":""#));
    let response = http(server.addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], None).await;
    assert_eq!(response.status, 404);
}

#[tokio::test]
async fn cors_allows_listed_origins_only() {
    let cors = Cors { origins: vec!["http://allowed.example".into()], credentials: true };
    let server = Server::echo(Config { cors, ..config() }).await;
    let target = "/socket.io/?EIO=4&transport=polling";

    let allowed = http(server.addr, "GET", target, &[("Origin", "http://allowed.example")], None).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("http://allowed.example"));
    assert_eq!(allowed.header("access-control-allow-credentials"), Some("true"));

    let other = http(server.addr, "GET", target, &[("Origin", "http://evil.example")], None).await;
    assert_eq!(other.header("access-control-allow-origin"), None);

    let preflight = http(
        server.addr,
        "OPTIONS",
        target,
        &[("Origin", "http://allowed.example"), ("Access-Control-Request-Method", "POST")],
        None,
    )
    .await;
    assert!(preflight.status == 200 || preflight.status == 204, "preflight answered {}", preflight.status);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("http://allowed.example"));
    let methods = preflight.header("access-control-allow-methods").unwrap_or_default().to_owned();
    assert!(methods.contains("GET") && methods.contains("POST"), "allowed methods {methods:?}");
}
