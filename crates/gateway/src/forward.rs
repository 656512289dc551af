//! No sticky sessions: a request for a session that another gateway of the
//! cluster holds is passed on to that gateway (docs/cluster.md).
//!
//! The sid names its gateway and is signed ([`crate::sid`]). A polling GET or
//! POST is forwarded over HTTP with a pooled keep-alive client and the answer
//! streamed back; a WebSocket upgrade is proxied at the byte level: the
//! upgrade request goes to the owner on a connection of its own, its `101` is
//! relayed, and from then on the bytes are copied both ways until either side
//! closes. A forwarded request carries `x-switchboard-forwarded: <own id>` and
//! is never forwarded again, so two gateways that disagree cannot bounce a
//! request between them.
//!
//! When the owner is not live or cannot be reached, the client gets the
//! answer for an unknown session (400, `Session ID unknown`), as from the
//! reference server, and opens a new session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::server::{Shared, engine_error};
use crate::sid::{Peers, SidSigner, claimed_gateway};
use crate::sync::lock;

/// The header that marks a request one gateway forwarded to another; its
/// value is the forwarding gateway's id.
pub(crate) const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-switchboard-forwarded");

/// How long opening a connection to another gateway may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the owner may take to answer a WebSocket upgrade request.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to a long-poll's longest wait (pingInterval + pingTimeout) for the
/// time a forwarded request may wait for its answer.
const LONG_POLL_MARGIN: Duration = Duration::from_secs(10);
/// At most one warning per unreachable peer in this time; the others go to
/// the debug log.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Idle keep-alive connections to a peer are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Headers that belong to one connection, never passed on (RFC 9110 7.6.1),
/// besides those named in `Connection`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// What the metric `switchboard_gateway_forwarded_requests_total` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Polling,
    WebSocket,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Polling => "polling",
            Kind::WebSocket => "websocket",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The owner answered (whatever it answered).
    Ok,
    /// The owner is not live, or could not be reached in time.
    Unreachable,
    /// Not forwarded: the sid names another gateway but its signature does
    /// not verify, or the request was already forwarded once.
    Refused,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unreachable => "unreachable",
            Outcome::Refused => "refused",
        }
    }
}

fn count(kind: Kind, outcome: Outcome) {
    metrics::counter!(
        "switchboard_gateway_forwarded_requests_total",
        "kind" => kind.as_str(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
}

/// Why a request could not be passed on to its owner.
#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("the gateway is not live")]
    NotLive,
    #[error("invalid address {0:?}")]
    BadAddress(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("http client: {0}")]
    Client(#[from] hyper_util::client::legacy::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("request: {0}")]
    Request(#[from] http::Error),
}

/// A gateway's part in a cluster: its signer, where the others are, and the
/// client that talks to them.
pub(crate) struct Cluster {
    pub(crate) signer: SidSigner,
    peers: Arc<dyn Peers>,
    /// Pooled HTTP/1.1 keep-alive connections to the other gateways.
    client: Client<HttpConnector, Body>,
    /// `x-switchboard-forwarded: <own id>`.
    forwarded_value: HeaderValue,
    /// How long a forwarded polling request may wait for its answer: a
    /// long-poll's longest wait, and a margin.
    answer_timeout: Duration,
    /// When each unreachable peer was last warned about.
    warned: Mutex<HashMap<String, Instant>>,
}

impl Cluster {
    pub(crate) fn new(signer: SidSigner, peers: Arc<dyn Peers>, config: &Config) -> Cluster {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        let forwarded_value =
            HeaderValue::from_str(signer.gateway_id()).expect("a gateway id is a valid header value ([A-Za-z0-9_-]+)");
        Cluster {
            signer,
            peers,
            client,
            forwarded_value,
            answer_timeout: config.engine.ping_interval + config.engine.ping_timeout + LONG_POLL_MARGIN,
            warned: Mutex::new(HashMap::new()),
        }
    }

    /// Answers a request for `sid`, which this gateway does not hold: passed
    /// on to the owner when that is another live gateway, else the answer
    /// for an unknown session. `websocket`: the request is a WebSocket
    /// upgrade (a GET with `Upgrade`).
    pub(crate) async fn route(&self, shared: &Shared, sid: &str, websocket: bool, request: Request) -> Response {
        let kind = if websocket { Kind::WebSocket } else { Kind::Polling };
        let own = self.signer.gateway_id();
        let Some(owner) = self.signer.owner(sid) else {
            if claimed_gateway(sid).is_some_and(|claimed| claimed != own) {
                tracing::debug!(kind = kind.as_str(), "not forwarded: the sid's signature does not verify");
                count(kind, Outcome::Refused);
            }
            return unknown_session();
        };
        if owner == own {
            return unknown_session();
        }
        if let Some(from) = request.headers().get(FORWARDED_HEADER) {
            tracing::debug!(kind = kind.as_str(), owner, from = ?from, "not forwarded: already forwarded once");
            count(kind, Outcome::Refused);
            return unknown_session();
        }
        let result = match self.peers.address(owner) {
            None => Err(ForwardError::NotLive),
            Some(address) if websocket => self.proxy_websocket(shared, &address, request).await,
            Some(address) => self.forward_http(&address, request).await,
        };
        match result {
            Ok(response) => {
                tracing::debug!(kind = kind.as_str(), owner, status = response.status().as_u16(), "forwarded");
                count(kind, Outcome::Ok);
                response
            }
            Err(error) => {
                self.warn_unreachable(owner, kind, &error);
                count(kind, Outcome::Unreachable);
                unknown_session()
            }
        }
    }

    /// Passes a polling request on and streams the answer back.
    async fn forward_http(&self, address: &str, request: Request) -> Result<Response, ForwardError> {
        let (parts, body) = request.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let uri: Uri =
            format!("http://{address}{target}").parse().map_err(|_| ForwardError::BadAddress(address.to_owned()))?;
        let mut headers = parts.headers;
        strip_hop_by_hop(&mut headers);
        headers.remove(header::UPGRADE);
        headers.insert(FORWARDED_HEADER, self.forwarded_value.clone());
        let mut outgoing = http::Request::builder().method(parts.method).uri(uri).body(body)?;
        *outgoing.headers_mut() = headers;
        let answer = tokio::time::timeout(self.answer_timeout, self.client.request(outgoing))
            .await
            .map_err(|_| ForwardError::Timeout(self.answer_timeout))??;
        let (mut parts, body) = answer.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(relay(parts.status, parts.headers, Body::new(body)))
    }

    /// Proxies a WebSocket upgrade: the owner's `101` is relayed and the two
    /// connections are joined byte for byte.
    async fn proxy_websocket(
        &self,
        shared: &Shared,
        address: &str,
        mut request: Request,
    ) -> Result<Response, ForwardError> {
        let Some(client_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return Ok(engine_error(StatusCode::BAD_REQUEST, 3, "Bad request"));
        };
        let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let mut upstream = http::Request::builder().method(Method::GET).uri(target).body(Empty::<Bytes>::new())?;
        let mut headers = std::mem::take(request.headers_mut());
        strip_hop_by_hop(&mut headers);
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(FORWARDED_HEADER, self.forwarded_value.clone());
        *upstream.headers_mut() = headers;

        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| ForwardError::Timeout(CONNECT_TIMEOUT))?
            .map_err(ForwardError::Connect)?;
        let _ = tcp.set_nodelay(true);
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(connection.with_upgrades());
            sender.send_request(upstream).await
        };
        let mut answer = tokio::time::timeout(UPGRADE_TIMEOUT, exchange)
            .await
            .map_err(|_| ForwardError::Timeout(UPGRADE_TIMEOUT))??;
        if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
            // The owner refused the upgrade (the session ended, say): its
            // answer is the client's.
            let (mut parts, body) = answer.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            return Ok(relay(parts.status, parts.headers, Body::new(body)));
        }
        let upstream_upgrade = hyper::upgrade::on(&mut answer);
        let shutdown = shared.shutdown.clone();
        shared.tasks.spawn(async move {
            let (client, upstream) = tokio::join!(client_upgrade, upstream_upgrade);
            let (Ok(client), Ok(upstream)) = (client, upstream) else {
                tracing::debug!("proxied websocket: an upgrade did not complete");
                return;
            };
            let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
            tokio::select! {
                result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                    tracing::debug!(?result, "proxied websocket closed");
                }
                // The connection is cut; the client reconnects elsewhere.
                () = shutdown.cancelled() => {}
            }
        });
        // The 101 as the owner wrote it: `Upgrade`, `Connection` and the
        // accept key (computed from the client's key, passed on unchanged).
        Ok(relay(StatusCode::SWITCHING_PROTOCOLS, answer.headers().clone(), Body::empty()))
    }

    /// Warns about an unreachable peer at most once per [`WARN_EVERY`].
    fn warn_unreachable(&self, owner: &str, kind: Kind, error: &ForwardError) {
        let now = Instant::now();
        let warn = {
            let mut warned = lock(&self.warned);
            if warned.len() > 256 {
                warned.retain(|_, at| now.duration_since(*at) < WARN_EVERY);
            }
            match warned.get(owner) {
                Some(at) if now.duration_since(*at) < WARN_EVERY => false,
                _ => {
                    warned.insert(owner.to_owned(), now);
                    true
                }
            }
        };
        if warn {
            tracing::warn!(owner, kind = kind.as_str(), %error, "cannot forward to the gateway that holds the session");
        } else {
            tracing::debug!(owner, kind = kind.as_str(), %error, "cannot forward to the gateway that holds the session");
        }
    }
}

/// The reference server's answer for a session it does not know.
fn unknown_session() -> Response {
    engine_error(StatusCode::BAD_REQUEST, 1, "Session ID unknown")
}

/// A response with the owner's status, headers and body.
fn relay(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = body.into_response();
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Removes the headers that describe one connection: the fixed list and the
/// ones the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| name != header::UPGRADE)
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Private, Upgrade"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "cookie", "upgrade"]);
    }
}
