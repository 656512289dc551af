//! The server side the official conformance suites expect
//! (`switchboard fixture <suite>`), so they can run against Switchboard:
//!
//! - `engine.io-protocol`: path `/engine.io/`, Engine.IO-level echo.
//! - `socket.io-protocol`: namespaces `/` and `/custom` that emit `auth` on
//!   connect, `message` echoed as `message-back`, `message-with-ack` acked;
//!   connection state recovery off.
//! - `client`: the fixture of the `socket.io-client` test suite (namespaces
//!   `/`, `/foo`, `/abc`, `/no`, …), recovery on, handshakes delayed 10 ms.
//!
//! Anyone may connect (anonymous identities). docs/compatibility.md says how
//! to run each suite against it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::extract::Request;
use axum::middleware::Next;
use bytes::Bytes;
use serde_json::{Value, json};
use switchboard_auth::Authenticator;
use switchboard_gateway::handler::ConnectRequest;
use switchboard_gateway::{BoxFuture, Config, ConnectRefusal, Cors, Event, Gateway, Handler, Socket, url_pairs};
use switchboard_protocol::binary::placeholder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::standalone::wait_for_signal;

pub(crate) async fn run(settings: Settings, suite: &str) -> anyhow::Result<()> {
    let mut config = Config { cors: Cors { origins: vec!["*".into()], credentials: false }, ..Config::default() };
    let builder = match suite {
        "engine.io-protocol" => {
            config.path = "/engine.io/".into();
            config.engine.ping_interval = Duration::from_millis(300);
            config.engine.ping_timeout = Duration::from_millis(200);
            config.engine_echo = true;
            Gateway::builder(config, Authenticator::anonymous())
        }
        "socket.io-protocol" => {
            config.engine.ping_interval = Duration::from_millis(300);
            config.engine.ping_timeout = Duration::from_millis(200);
            config.connect_timeout = Duration::from_secs(1);
            config.recovery_window = Duration::ZERO;
            let protocol: Arc<dyn Handler> = Arc::new(ProtocolSuite);
            Gateway::builder(config, Authenticator::anonymous())
                .namespace("/", protocol.clone())
                .namespace("/custom", Arc::new(AuthOnly))
        }
        "client" => {
            config.cors = Cors::default();
            config.engine.ping_interval = Duration::from_secs(2);
            let accept: Arc<dyn Handler> = Arc::new(Accept);
            Gateway::builder(config, Authenticator::anonymous())
                .namespace("/", Arc::new(ClientSuite::default()))
                .namespace("/foo", Arc::new(Foo))
                .namespace("/timeout_socket", accept.clone())
                .namespace("/valid", accept.clone())
                .namespace("/asd", accept)
                .namespace("/abc", Arc::new(Abc))
                .namespace("/no", Arc::new(Refuse))
        }
        other => anyhow::bail!("unknown suite {other:?}: engine.io-protocol, socket.io-protocol or client"),
    };
    let gateway = builder.build();
    let mut app = gateway.router();
    if suite == "client" {
        // The suite's fixture accepts each handshake after 10 ms; tests with
        // a 0 ms timeout rely on it.
        app = app.layer(axum::middleware::from_fn(delay_handshakes));
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("SWITCHBOARD_LISTEN: cannot listen on {}", settings.listen))?;
    tracing::info!(listen = %settings.listen, suite, "conformance fixture is listening");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(switchboard_gateway::serve(listener, app, shutdown.clone()));
    wait_for_signal().await;
    gateway.shutdown();
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

async fn delay_handshakes(request: Request, next: Next) -> axum::response::Response {
    let has_sid = request.uri().query().is_some_and(|q| q.split('&').any(|p| p.starts_with("sid=")));
    if !has_sid {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    next.run(request).await
}

/// Emits `auth` with the CONNECT payload.
struct AuthOnly;

impl Handler for AuthOnly {
    fn on_connect<'a>(&'a self, socket: &'a Arc<Socket>, auth: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move { socket.emit("auth", std::slice::from_ref(auth)) })
    }

    fn on_event<'a>(&'a self, _socket: &'a Arc<Socket>, _event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// `/` of the socket.io-protocol suite.
struct ProtocolSuite;

impl Handler for ProtocolSuite {
    fn on_connect<'a>(&'a self, socket: &'a Arc<Socket>, auth: &'a Value) -> BoxFuture<'a, ()> {
        AuthOnly.on_connect(socket, auth)
    }

    fn on_event<'a>(&'a self, socket: &'a Arc<Socket>, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match (event.name.as_str(), event.ack) {
                ("message", _) => socket.emit_binary("message-back", &event.args, &event.attachments),
                ("message-with-ack", Some(id)) => socket.ack_binary(id, &event.args, &event.attachments),
                _ => {}
            }
        })
    }
}

/// Accepts connections, answers nothing.
struct Accept;

impl Handler for Accept {
    fn on_event<'a>(&'a self, _socket: &'a Arc<Socket>, _event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Refuses every connection, as a failing middleware.
struct Refuse;

impl Handler for Refuse {
    fn authorize<'a>(&'a self, _request: &'a ConnectRequest<'a>) -> BoxFuture<'a, Result<(), ConnectRefusal>> {
        Box::pin(async { Err(ConnectRefusal::new("Auth failed (custom namespace)")) })
    }

    fn on_event<'a>(&'a self, _socket: &'a Arc<Socket>, _event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// `/foo`: `getId` answers the socket id.
struct Foo;

impl Handler for Foo {
    fn on_event<'a>(&'a self, socket: &'a Arc<Socket>, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let ("getId", Some(id)) = (event.name.as_str(), event.ack) {
                socket.ack(id, &[json!(socket.id())]);
            }
        })
    }
}

/// `/abc`: emits `handshake` on connect.
struct Abc;

impl Handler for Abc {
    fn on_connect<'a>(&'a self, socket: &'a Arc<Socket>, auth: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move { socket.emit("handshake", &[handshake(socket, auth)]) })
    }

    fn on_event<'a>(&'a self, _socket: &'a Arc<Socket>, _event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// `/` of the socket.io-client suite.
#[derive(Default)]
struct ClientSuite {
    /// Sockets that sent `abuff1` with binary (the next `abuff2` is acked).
    abuff: Mutex<HashSet<String>>,
    /// CONNECT payloads, for `getHandshake`.
    auth: Mutex<std::collections::HashMap<String, Value>>,
}

impl Handler for ClientSuite {
    fn authorize<'a>(&'a self, request: &'a ConnectRequest<'a>) -> BoxFuture<'a, Result<(), ConnectRefusal>> {
        Box::pin(async move {
            match request.query_param("fail") {
                Some(value) if !value.is_empty() => Err(ConnectRefusal::new("Auth failed (main namespace)")),
                _ => Ok(()),
            }
        })
    }

    fn on_connect<'a>(&'a self, socket: &'a Arc<Socket>, auth: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            lock(&self.auth).insert(socket.id().to_owned(), auth.clone());
        })
    }

    fn on_event<'a>(&'a self, socket: &'a Arc<Socket>, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.event(socket, event) })
    }

    fn on_disconnect<'a>(
        &'a self,
        socket: &'a Arc<Socket>,
        _reason: switchboard_gateway::DisconnectReason,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            lock(&self.auth).remove(socket.id());
            lock(&self.abuff).remove(socket.id());
        })
    }
}

impl ClientSuite {
    fn event(&self, socket: &Arc<Socket>, event: Event) {
        let first = event.args.first();
        let is_binary = |v: Option<&Value>| v.and_then(|v| v.get("_placeholder")).is_some();
        match (event.name.as_str(), event.ack) {
            ("hi", _) => socket.emit("hi", &[]),
            ("echo", Some(id)) => socket.ack_binary(id, &event.args, &event.attachments),
            ("ack", _) => {
                // Awaiting the client's answer here would stop this socket's
                // events (its answer among them): wait in a task of its own.
                let socket = socket.clone();
                tokio::spawn(async move {
                    if let Ok(reply) = socket.emit_with_ack("ack", &[], None).await
                        && reply.args.first() == Some(&json!(5))
                        && reply.args.get(1) == Some(&json!({"test": true}))
                    {
                        socket.emit("got it", &[]);
                    }
                });
            }
            ("getAckDate", Some(id)) => socket.ack(id, &[json!(iso_now())]),
            ("getDate", _) => socket.emit("takeDate", &[json!(iso_now())]),
            ("getDateObj", _) => socket.emit("takeDateObj", &[json!({"date": iso_now()})]),
            ("getUtf8", _) => {
                for text in ["てすと", "Я Б Г Д Ж Й", "Ä ä Ü ü ß", "utf8 — string", "utf8 — string"] {
                    socket.emit("takeUtf8", &[json!(text)]);
                }
            }
            ("false", _) => socket.emit("false", &[json!(false)]),
            ("doge", _) => socket.emit_binary("doge", &[placeholder(0)], &[Bytes::from_static(b"asdfasdf")]),
            ("buffa", _) if is_binary(first) => socket.emit("buffack", &[]),
            ("jsonbuff", _) => {
                let ok = first.is_some_and(|v| {
                    v.get("hello") == Some(&json!("lol"))
                        && is_binary(v.get("message"))
                        && v.get("goodbye") == Some(&json!("gotcha"))
                });
                if ok {
                    socket.emit("jsonbuff-ack", &[]);
                }
            }
            ("abuff1", _) if is_binary(first) => {
                lock(&self.abuff).insert(socket.id().to_owned());
            }
            ("abuff2", _) if lock(&self.abuff).remove(socket.id()) => socket.emit("abuff2-ack", &[]),
            ("getHandshake", Some(id)) => {
                let auth = lock(&self.auth).get(socket.id()).cloned().unwrap_or_else(|| json!({}));
                socket.ack(id, &[handshake(socket, &auth)]);
            }
            ("getId", Some(id)) => socket.ack(id, &[json!(socket.id())]),
            _ => {}
        }
    }
}

/// The reference server's `socket.handshake`, as far as the suites read it.
fn handshake(socket: &Socket, auth: &Value) -> Value {
    let query: serde_json::Map<String, Value> =
        url_pairs(socket.handshake_query()).map(|(k, v)| (k, Value::String(v))).collect();
    let issued = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    json!({
        "headers": {},
        "time": iso_now(),
        "address": "127.0.0.1",
        "xdomain": false,
        "secure": false,
        "issued": issued,
        "url": format!("/socket.io/?{}", socket.handshake_query()),
        "query": query,
        "auth": auth,
    })
}

/// The current time as JavaScript's `Date.toJSON()` writes it.
fn iso_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, millis) = (now.as_secs() as i64, now.subsec_millis());
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
