//! A gateway on 127.0.0.1:0 and the test application it runs.
//!
//! [`TestHandler`] answers a few events that let a test drive the gateway's
//! public API from the client side, and records every call in a [`Log`]:
//!
//! | event | arguments | what the handler does |
//! |---|---|---|
//! | `echo` | any | acks with the same arguments, or emits `echo` back (attachments too) |
//! | `join` / `leave` | room | joins or leaves the room; ack `[]` or `[{"error":…}]` |
//! | `to` | room, value, except? | `namespace().emit(Target::room(room).except(except), "msg", [value])`; ack `[count]` |
//! | `ask` | value, timeout_ms? | `emit_with_ack("question", [value])` in a task; records the outcome and emits `answer` |
//! | `kick` / `kick-close` | | `socket.disconnect(false)` / `socket.disconnect(true)` |

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_auth::Authenticator;
use switchboard_gateway::handler::ConnectRequest;
use switchboard_gateway::{
    AckError, BoxFuture, Config, ConnectRefusal, DisconnectReason, Event, Gateway, GatewayBuilder, Handler, Namespace,
    Socket, Target,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::WAIT;

/// What a handler saw.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    Connect {
        nsp: String,
        id: String,
        user: String,
        recovered: bool,
        auth: Value,
    },
    Event {
        nsp: String,
        id: String,
        name: String,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
        ack: Option<u64>,
    },
    Disconnect {
        nsp: String,
        id: String,
        reason: DisconnectReason,
    },
    /// The outcome of an `emit_with_ack` started by `ask`.
    AckOutcome {
        id: String,
        result: Result<(Vec<Value>, Vec<Vec<u8>>), AckError>,
    },
}

/// The calls every handler of a server made, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Log(Arc<Mutex<Vec<Record>>>);

impl Log {
    pub(crate) fn push(&self, record: Record) {
        self.0.lock().expect("log lock").push(record);
    }

    pub(crate) fn records(&self) -> Vec<Record> {
        self.0.lock().expect("log lock").clone()
    }

    /// Waits (at most [`WAIT`]) until `check` finds something in the records.
    pub(crate) async fn wait_until<T>(&self, what: &str, check: impl Fn(&[Record]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(found) = check(&self.records()) {
                return found;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; log: {:#?}", self.records());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for a record that `pick` accepts.
    pub(crate) async fn wait_for<T>(&self, what: &str, pick: impl Fn(&Record) -> Option<T>) -> T {
        self.wait_until(what, |records| records.iter().find_map(&pick)).await
    }

    /// Waits for the `nth` connect (from 0) of socket `id` and returns whether
    /// it was recovered.
    pub(crate) async fn nth_connect_of(&self, id: &str, nth: usize) -> bool {
        self.wait_until(&format!("connect {nth} of {id}"), |records| {
            let mut flags = records.iter().filter_map(|r| match r {
                Record::Connect { id: new, recovered, .. } if new == id => Some(*recovered),
                _ => None,
            });
            flags.nth(nth)
        })
        .await
    }

    /// Waits for the disconnect of socket `id` and returns its reason.
    pub(crate) async fn disconnect_of(&self, id: &str) -> DisconnectReason {
        self.wait_for(&format!("the disconnect of {id}"), |r| match r {
            Record::Disconnect { id: gone, reason, .. } if gone == id => Some(*reason),
            _ => None,
        })
        .await
    }

    /// Waits for the connect of socket `id` and returns whether it was recovered.
    pub(crate) async fn connect_of(&self, id: &str) -> bool {
        self.wait_for(&format!("the connect of {id}"), |r| match r {
            Record::Connect { id: new, recovered, .. } if new == id => Some(*recovered),
            _ => None,
        })
        .await
    }

    /// Waits for the outcome of the `ask` of socket `id`.
    pub(crate) async fn ack_outcome_of(&self, id: &str) -> Result<(Vec<Value>, Vec<Vec<u8>>), AckError> {
        self.wait_for(&format!("the ack outcome of {id}"), |r| match r {
            Record::AckOutcome { id: asker, result } if asker == id => Some(result.clone()),
            _ => None,
        })
        .await
    }

    /// Every disconnect recorded so far.
    pub(crate) fn disconnects(&self) -> Vec<(String, DisconnectReason)> {
        self.records()
            .into_iter()
            .filter_map(|r| match r {
                Record::Disconnect { id, reason, .. } => Some((id, reason)),
                _ => None,
            })
            .collect()
    }
}

/// The test application (see the module documentation).
pub(crate) struct TestHandler {
    log: Log,
    /// A room every socket joins when it connects.
    room_on_connect: Option<String>,
    /// A refusal every CONNECT gets from `authorize`.
    refusal: Option<ConnectRefusal>,
}

impl TestHandler {
    pub(crate) fn new(log: &Log) -> Arc<Self> {
        Arc::new(Self { log: log.clone(), room_on_connect: None, refusal: None })
    }

    /// A handler whose sockets join `room` on connect.
    pub(crate) fn joining(log: &Log, room: &str) -> Arc<Self> {
        Arc::new(Self { log: log.clone(), room_on_connect: Some(room.to_owned()), refusal: None })
    }

    /// A handler that refuses every CONNECT in `authorize`.
    pub(crate) fn refusing(log: &Log, refusal: ConnectRefusal) -> Arc<Self> {
        Arc::new(Self { log: log.clone(), room_on_connect: None, refusal: Some(refusal) })
    }

    fn ask(&self, socket: &Arc<Socket>, args: &[Value]) {
        let socket = socket.clone();
        let log = self.log.clone();
        let question = args.first().cloned().unwrap_or(Value::Null);
        let timeout = args.get(1).and_then(Value::as_u64).map(Duration::from_millis);
        tokio::spawn(async move {
            let result = socket.emit_with_ack("question", &[question], timeout).await;
            let outcome = result
                .as_ref()
                .map(|reply| (reply.args.clone(), reply.attachments.iter().map(|a| a.to_vec()).collect::<Vec<_>>()));
            log.push(Record::AckOutcome { id: socket.id().to_owned(), result: outcome.map_err(|e| *e) });
            match result {
                Ok(reply) => socket.emit("answer", &reply.args),
                Err(error) => socket.emit("answer", &[json!(error.to_string())]),
            }
        });
    }
}

fn reply(socket: &Socket, ack: Option<u64>, args: &[Value]) {
    if let Some(id) = ack {
        socket.ack(id, args);
    }
}

fn str_arg(args: &[Value], i: usize) -> &str {
    args.get(i).and_then(Value::as_str).unwrap_or_default()
}

impl Handler for TestHandler {
    fn authorize<'a>(&'a self, _request: &'a ConnectRequest<'a>) -> BoxFuture<'a, Result<(), ConnectRefusal>> {
        let refusal = self.refusal.clone();
        Box::pin(async move { refusal.map_or(Ok(()), Err) })
    }

    fn on_connect<'a>(&'a self, socket: &'a Arc<Socket>, auth: &'a Value) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(room) = &self.room_on_connect {
                socket.join(room).expect("join the room of on_connect");
            }
            self.log.push(Record::Connect {
                nsp: socket.namespace().name().to_owned(),
                id: socket.id().to_owned(),
                user: socket.user_id().to_owned(),
                recovered: socket.recovered(),
                auth: auth.clone(),
            });
        })
    }

    fn on_event<'a>(&'a self, socket: &'a Arc<Socket>, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.log.push(Record::Event {
                nsp: socket.namespace().name().to_owned(),
                id: socket.id().to_owned(),
                name: event.name.clone(),
                args: event.args.clone(),
                attachments: event.attachments.iter().map(|a| a.to_vec()).collect(),
                ack: event.ack,
            });
            let args = &event.args;
            match event.name.as_str() {
                "echo" => match event.ack {
                    Some(id) => socket.ack_binary(id, args, &event.attachments),
                    None => socket.emit_binary("echo", args, &event.attachments),
                },
                "join" => match socket.join(str_arg(args, 0)) {
                    Ok(()) => reply(socket, event.ack, &[]),
                    Err(error) => reply(socket, event.ack, &[json!({ "error": error.to_string() })]),
                },
                "leave" => {
                    socket.leave(str_arg(args, 0));
                    reply(socket, event.ack, &[]);
                }
                "to" => {
                    let mut target = Target::room(str_arg(args, 0));
                    if let Some(except) = args.get(2).and_then(Value::as_str) {
                        target = target.except(except);
                    }
                    let value = args.get(1).cloned().unwrap_or(Value::Null);
                    let count = socket.namespace().emit(&target, "msg", &[value]);
                    reply(socket, event.ack, &[json!(count)]);
                }
                "ask" => self.ask(socket, args),
                "kick" => socket.disconnect(false).await,
                "kick-close" => socket.disconnect(true).await,
                _ => {}
            }
        })
    }

    fn on_disconnect<'a>(&'a self, socket: &'a Arc<Socket>, reason: DisconnectReason) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.log.push(Record::Disconnect {
                nsp: socket.namespace().name().to_owned(),
                id: socket.id().to_owned(),
                reason,
            });
        })
    }
}

/// A running gateway. Dropping it stops accepting and closes every session.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) gateway: Gateway,
    pub(crate) log: Log,
    stop: CancellationToken,
}

impl Server {
    /// Serves the gateway that `builder` builds; `log` is the one its handlers write to.
    pub(crate) async fn start(builder: GatewayBuilder, log: Log) -> Server {
        let gateway = builder.build();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let stop = CancellationToken::new();
        tokio::spawn(switchboard_gateway::serve(listener, gateway.router(), stop.clone()));
        Server { addr, gateway, log, stop }
    }

    /// Anyone may connect; [`TestHandler`] on `/` and `/admin`.
    pub(crate) async fn echo(config: Config) -> Server {
        Server::with_auth(config, Authenticator::anonymous()).await
    }

    /// [`TestHandler`] on `/` and `/admin`, behind `auth`.
    pub(crate) async fn with_auth(config: Config, auth: Authenticator) -> Server {
        let log = Log::default();
        let builder = Gateway::builder(config, auth)
            .namespace("/", TestHandler::new(&log))
            .namespace("/admin", TestHandler::new(&log));
        Server::start(builder, log).await
    }

    pub(crate) fn nsp(&self, name: &str) -> Arc<Namespace> {
        self.gateway.namespace(name).unwrap_or_else(|| panic!("namespace {name} exists"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        self.gateway.shutdown();
    }
}
