//! The gateway: its shared state, the `/socket.io/` route (handshake,
//! polling, WebSocket upgrade), CORS, and the accept loop.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use dashmap::DashMap;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use switchboard_auth::Authenticator;
use switchboard_protocol::session::{CloseReason, Transport};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tracing::Instrument as _;

use crate::cluster::ClusterLink;
use crate::config::Config;
use crate::engine::{EngineConn, random_id};
use crate::forward::Cluster;
use crate::handler::Handler;
use crate::namespace::Namespace;
use crate::sid::{Peers, SidSigner};
use crate::transport::polling;
use crate::transport::ws::{self, WsConn};
use crate::transport::ws_codec::accept_key;

/// Chooses the handler of a namespace created on first CONNECT.
pub type DynamicNamespaces = Box<dyn Fn(&str) -> Option<Arc<dyn Handler>> + Send + Sync>;

/// State shared by every session of a gateway.
pub(crate) struct Shared {
    pub(crate) config: Arc<Config>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) engines: DashMap<Arc<str>, Arc<EngineConn>>,
    /// Polling sessions the client closed with no GET pending, and the last
    /// packet their next GET gets (a request racing the close gets the
    /// reference server's answer, not an unknown-session error). Kept for a
    /// second, answered once.
    closed_polls: DashMap<Arc<str>, (std::time::Instant, &'static [u8])>,
    namespaces: DashMap<Arc<str>, Arc<Namespace>>,
    dynamic: Option<DynamicNamespaces>,
    next_key: AtomicU64,
    pub(crate) shutdown: CancellationToken,
    /// In a cluster: the link every namespace broadcasts through.
    link: Option<Arc<dyn ClusterLink>>,
    /// Draining: new sessions are refused, open ones are being closed.
    draining: std::sync::atomic::AtomicBool,
    pub(crate) tasks: TaskTracker,
    /// Signed sids and forwarding to the other gateways, in a cluster.
    cluster: Option<Cluster>,
}

impl Shared {
    const CLOSED_POLL_MEMORY: std::time::Duration = std::time::Duration::from_secs(1);

    pub(crate) fn remember_closed_poll(&self, sid: Arc<str>, last: &'static [u8]) {
        let now = std::time::Instant::now();
        if self.closed_polls.len() > 64 {
            self.closed_polls.retain(|_, (at, _)| now.duration_since(*at) < Self::CLOSED_POLL_MEMORY);
        }
        self.closed_polls.insert(sid, (now, last));
    }

    pub(crate) fn take_closed_poll(&self, sid: &str) -> Option<&'static [u8]> {
        let (_, (at, last)) = self.closed_polls.remove(sid)?;
        (at.elapsed() < Self::CLOSED_POLL_MEMORY).then_some(last)
    }

    /// A new Engine.IO session id: signed with the gateway's id in a
    /// cluster, 20 random characters otherwise.
    fn new_sid(&self) -> Arc<str> {
        match &self.cluster {
            Some(cluster) => Arc::from(cluster.signer.mint()),
            None => Arc::from(random_id()),
        }
    }

    pub(crate) fn next_socket_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// A configured namespace, or a dynamic one created now.
    pub(crate) fn namespace_for_connect(&self, name: &str) -> Option<Arc<Namespace>> {
        if let Some(nsp) = self.namespaces.get(name) {
            return Some(nsp.clone());
        }
        let handler = (self.dynamic.as_ref()?)(name)?;
        let nsp = self
            .namespaces
            .entry(Arc::from(name))
            .or_insert_with(|| Arc::new(Namespace::new(name, handler, self.config.clone(), self.link.clone())))
            .clone();
        Some(nsp)
    }
}

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    config: Config,
    auth: Authenticator,
    namespaces: Vec<(String, Arc<dyn Handler>)>,
    dynamic: Option<DynamicNamespaces>,
    link: Option<Arc<dyn ClusterLink>>,
    cluster: Option<(SidSigner, Arc<dyn Peers>)>,
}

impl GatewayBuilder {
    /// Mounts an application on a namespace.
    pub fn namespace(mut self, name: &str, handler: Arc<dyn Handler>) -> Self {
        self.namespaces.push((name.to_owned(), handler));
        self
    }

    /// Makes this gateway part of a cluster: broadcasts go through `link`,
    /// which hears of room and user changes and keeps sessions.
    pub fn link(mut self, link: Arc<dyn ClusterLink>) -> Self {
        self.link = Some(link);
        self
    }

    /// Namespaces created on first CONNECT when `choose` gives a handler.
    pub fn dynamic_namespaces(mut self, choose: DynamicNamespaces) -> Self {
        self.dynamic = Some(choose);
        self
    }

    /// Runs the gateway as one of a cluster: new sessions get sids signed by
    /// `signer` (naming this gateway), and a polling request or WebSocket
    /// upgrade for a session of another gateway is passed on to that
    /// gateway's address in `peers` (docs/cluster.md, "No sticky sessions").
    /// Without it the gateway mints plain random sids and forwards nothing.
    pub fn cluster(mut self, signer: SidSigner, peers: Arc<dyn Peers>) -> Self {
        self.cluster = Some((signer, peers));
        self
    }

    pub fn build(self) -> Gateway {
        let config = Arc::new(self.config);
        let cluster = self.cluster.map(|(signer, peers)| Cluster::new(signer, peers, &config));
        let namespaces = DashMap::new();
        for (name, handler) in self.namespaces {
            let nsp = Arc::new(Namespace::new(&name, handler, config.clone(), self.link.clone()));
            namespaces.insert(Arc::from(name.as_str()), nsp);
        }
        Gateway {
            shared: Arc::new(Shared {
                config,
                auth: Arc::new(self.auth),
                engines: DashMap::new(),
                closed_polls: DashMap::new(),
                namespaces,
                dynamic: self.dynamic,
                next_key: AtomicU64::new(0),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                link: self.link,
                draining: std::sync::atomic::AtomicBool::new(false),
                cluster,
            }),
        }
    }
}

/// A Socket.IO server: sessions, namespaces and their rooms.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("sessions", &self.shared.engines.len()).finish()
    }
}

impl Gateway {
    pub fn builder(config: Config, auth: Authenticator) -> GatewayBuilder {
        GatewayBuilder { config, auth, namespaces: Vec::new(), dynamic: None, link: None, cluster: None }
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A namespace by name (configured, or dynamic and already created).
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.shared.namespaces.get(name).map(|n| n.clone())
    }

    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.shared.namespaces.iter().map(|n| n.value().clone()).collect()
    }

    /// Open Engine.IO sessions.
    pub fn session_count(&self) -> usize {
        self.shared.engines.len()
    }

    /// The `/socket.io/` routes, with CORS when configured.
    pub fn router(&self) -> Router {
        let path = self.shared.config.path.clone();
        let bare = path.trim_end_matches('/').to_owned();
        let mut router = Router::new().route(&path, any(engine_io));
        if !bare.is_empty() && bare != path {
            router = router.route(&bare, any(engine_io));
        }
        let router = router.with_state(self.shared.clone());
        match cors_layer(&self.shared.config) {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }

    /// Drains the gateway before it stops: new sessions are refused, and the
    /// open ones are closed as `server shutting down` (which clients take as
    /// a cut transport: they reconnect, elsewhere, and recover) in small
    /// batches spread over `period` with jitter, so that they do not all
    /// come back at once. Returns once every session was asked to close.
    pub async fn drain(&self, period: Duration) {
        use rand::seq::SliceRandom as _;
        self.shared.draining.store(true, Ordering::Release);
        let mut sessions: Vec<Arc<EngineConn>> = self.shared.engines.iter().map(|e| e.value().clone()).collect();
        if sessions.is_empty() {
            return;
        }
        sessions.shuffle(&mut rand::rng());
        const TICK: Duration = Duration::from_millis(100);
        let ticks = (period.as_millis() / TICK.as_millis()).max(1) as usize;
        let per_tick = sessions.len().div_ceil(ticks);
        tracing::info!(sessions = sessions.len(), ?period, per_tick, "draining");
        let mut chunks = sessions.chunks(per_tick).peekable();
        while let Some(chunk) = chunks.next() {
            for conn in chunk {
                conn.request_close(CloseReason::ServerShuttingDown);
            }
            metrics::counter!("switchboard_gateway_drained_sessions_total").increment(chunk.len() as u64);
            if chunks.peek().is_some() {
                // 50 % to 150 % of a tick: batches do not line up across gateways.
                let jitter = rand::random_range(0.5..1.5);
                tokio::time::sleep(TICK.mul_f64(jitter)).await;
            }
        }
    }

    /// Whether [`drain`](Self::drain) started.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Closes every session as `server shutting down` and stops long polls.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
        for engine in self.shared.engines.iter() {
            engine.request_close(CloseReason::ServerShuttingDown);
        }
    }

    /// Waits until every session task has finished (after [`Gateway::shutdown`]).
    pub async fn drained(&self) {
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

fn cors_layer(config: &Config) -> Option<CorsLayer> {
    let cors = &config.cors;
    if cors.origins.is_empty() {
        return None;
    }
    let origin = if cors.origins.iter().any(|o| o == "*") {
        // `*` with credentials is not allowed by browsers: mirror the origin.
        if cors.credentials { AllowOrigin::mirror_request() } else { AllowOrigin::any() }
    } else {
        AllowOrigin::list(cors.origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(AllowHeaders::mirror_request())
            .allow_credentials(cors.credentials),
    )
}

/// The span of one session's task: every log line about it carries its id.
fn session_span(conn: &EngineConn) -> tracing::Span {
    tracing::info_span!("session", sid = %conn.sid())
}

/// An Engine.IO error answer: `{"code":N,"message":"..."}` as the reference
/// server writes it.
pub(crate) fn engine_error(status: StatusCode, code: u8, message: &str) -> Response {
    let body = format!(r#"{{"code":{code},"message":"{message}"}}"#);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn engine_io(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let query: HashMap<String, String> = request.uri().query().map(|q| url_pairs(q).collect()).unwrap_or_default();
    // The order of the reference server's checks: transport, then (for a
    // handshake) the protocol version.
    let transport = match query.get("transport").map(String::as_str) {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return engine_error(StatusCode::BAD_REQUEST, 0, "Transport unknown"),
    };
    if transport == Transport::WebSocket && !request.headers().contains_key(header::UPGRADE) {
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    }
    if !query.contains_key("sid") && query.get("EIO").map(String::as_str) != Some("4") {
        return engine_error(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version");
    }
    let method = request.method().clone();
    match query.get("sid") {
        None => Box::pin(handshake(shared, transport, request)).await,
        Some(sid) => {
            let Some(conn) = shared.engines.get(sid.as_str()).map(|c| c.clone()) else {
                if transport == Transport::Polling
                    && method == Method::GET
                    && let Some(last) = shared.take_closed_poll(sid)
                {
                    return polling::payload_response(Bytes::from_static(last));
                }
                if let Some(cluster) = &shared.cluster {
                    // Perhaps another gateway's session: passed on to it.
                    let websocket = transport == Transport::WebSocket && method == Method::GET;
                    return Box::pin(cluster.route(&shared, sid, websocket, request)).await;
                }
                return engine_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
            };
            if let Some(reason) = conn.on_timeout() {
                // The heartbeat ran out and the session's task has not noticed
                // yet: the session is over for this request too.
                conn.request_close(reason);
                return engine_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown");
            }
            match (transport, method) {
                (Transport::Polling, _) if conn.transport() != Transport::Polling => {
                    engine_error(StatusCode::BAD_REQUEST, 3, "Bad request")
                }
                (Transport::Polling, Method::GET) => polling::get(conn).await,
                (Transport::Polling, Method::POST) => {
                    let max = shared.config.engine.max_payload;
                    match read_body(request, max).await {
                        Ok(body) => Box::pin(polling::post(conn, body)).await,
                        Err(status) => {
                            if status == StatusCode::PAYLOAD_TOO_LARGE {
                                crate::limits::Limit::PayloadSize.count();
                            }
                            conn.request_close(CloseReason::TransportError);
                            status.into_response()
                        }
                    }
                }
                (Transport::WebSocket, Method::GET) => {
                    if conn.transport() != Transport::Polling || conn.probing.swap(true, Ordering::AcqRel) {
                        // The reference server accepts a second WebSocket for
                        // an upgraded session and closes it at once; clients
                        // that do not expect an HTTP error rely on that.
                        return upgrade_websocket(request, drop);
                    }
                    let tasks = shared.tasks.clone();
                    upgrade_websocket(request, move |ws| {
                        let span = session_span(&conn);
                        tasks.spawn(ws::upgrade(conn, ws).instrument(span));
                    })
                }
                _ => engine_error(StatusCode::BAD_REQUEST, 3, "Bad request"),
            }
        }
    }
}

/// The decoded `key=value` pairs of a query string (`+` is a space).
pub fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        Some((percent_decode(key)?, percent_decode(value)?))
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

async fn read_body(request: Request, max: usize) -> Result<Bytes, StatusCode> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let limited = http_body_util::Limited::new(request.into_body(), max);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => Err(StatusCode::BAD_REQUEST),
    }
}

async fn handshake(shared: Arc<Shared>, transport: Transport, request: Request) -> Response {
    if request.method() != Method::GET {
        return engine_error(StatusCode::BAD_REQUEST, 2, "Bad handshake method");
    }
    if shared.shutdown.is_cancelled() || shared.draining.load(Ordering::Acquire) {
        return engine_error(StatusCode::SERVICE_UNAVAILABLE, 4, "Forbidden");
    }
    let bearer = bearer_token(request.headers());
    let query: Box<str> = request.uri().query().unwrap_or_default().into();
    let sid = shared.new_sid();
    match transport {
        Transport::Polling => {
            let (conn, upgrade) = EngineConn::new(shared.clone(), sid.clone(), transport, bearer, query);
            let upgrade = upgrade.expect("polling sessions accept an upgrade");
            shared.engines.insert(sid, conn.clone());
            metrics::gauge!("switchboard_gateway_sessions").increment(1);
            let open = conn.open_frame(true);
            let span = session_span(&conn);
            shared.tasks.spawn(polling::drive(conn, upgrade).instrument(span));
            polling::open_response(&open)
        }
        Transport::WebSocket => {
            let tasks = shared.tasks.clone();
            upgrade_websocket(request, move |ws| {
                let (conn, _) = EngineConn::new(shared.clone(), sid.clone(), transport, bearer, query);
                shared.engines.insert(sid, conn.clone());
                metrics::gauge!("switchboard_gateway_sessions").increment(1);
                let _ = conn.outbox().push(conn.open_frame(false));
                let connect_check = tokio::time::Instant::now() + shared.config.connect_timeout;
                let span = session_span(&conn);
                tasks.spawn(ws::drive(conn, ws, Some(connect_check)).instrument(span));
            })
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<Box<str>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().into())
}

/// Answers a WebSocket upgrade with 101 and, once hyper hands the connection
/// over, gives the raw TCP stream to `start`.
fn upgrade_websocket(mut request: Request, start: impl FnOnce(WsConn) + Send + 'static) -> Response {
    let headers = request.headers();
    let is_upgrade =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version_ok = headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let (Some(key), true, true) = (headers.get(header::SEC_WEBSOCKET_KEY).cloned(), is_upgrade, version_ok) else {
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    };
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => start(WsConn::new(parts.io.into_inner(), parts.read_buf)),
            Err(_) => tracing::error!("websocket upgrade on an unexpected connection type"),
        }
    });
    let accept = accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(axum::body::Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Accepts HTTP connections until `shutdown`, serving `app` on each. Runs
/// hyper directly (not `axum::serve`) so that an upgraded connection can be
/// taken back as the plain [`TcpStream`] it is.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return Ok(()),
        };
        let _ = tcp.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).with_upgrades();
            let _ = connection.await;
        });
    }
}
