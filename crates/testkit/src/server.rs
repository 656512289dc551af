//! A standalone Switchboard for tests: the gateway with the chat mounted and
//! the in-memory broker, served on `127.0.0.1:0` until the [`TestServer`] is
//! dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use switchboard_auth::{AuthConfig, Authenticator, mint_hs256};
use switchboard_broker::MemoryBroker;
use switchboard_chat::{Chat, ChatConfig};
use switchboard_gateway::{Config, Gateway};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::client::{ConnectError, TestClient};
use crate::http::{self, HttpResponse};

/// Lifetime of the tokens the server mints.
const TOKEN_TTL_SECS: u64 = 3600;

/// What a test may change before the server starts.
#[derive(Debug, Clone)]
pub struct Options {
    pub gateway: Config,
    /// The chat's settings; the presence interval is 50 ms (not the 250 ms
    /// default) to keep presence tests short.
    pub chat: ChatConfig,
    /// The server API key; `None` turns the API off.
    pub api_key: Option<String>,
    /// Namespaces starting with this prefix are created on first CONNECT and
    /// run the chat.
    pub dynamic_prefix: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        let chat = ChatConfig { presence_interval: std::time::Duration::from_millis(50), ..ChatConfig::default() };
        Self { gateway: Config::default(), chat, api_key: Some(random_hex()), dynamic_prefix: None }
    }
}

/// A running server. Dropping it stops it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The HS256 secret tokens are checked with.
    pub secret: String,
    pub api_key: Option<String>,
    pub gateway: Gateway,
    pub chat: Arc<Chat>,
    pub shutdown: CancellationToken,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Starts a server with the default [`Options`] as changed by `configure`.
pub async fn spawn_standalone(configure: impl FnOnce(&mut Options)) -> TestServer {
    let mut options = Options::default();
    configure(&mut options);
    let secret = random_hex();
    let auth = Authenticator::from_config(&AuthConfig { secret: Some(secret.clone()), ..AuthConfig::default() })
        .expect("an HS256 secret is a valid auth configuration");
    let chat = Chat::new(options.chat, Arc::new(MemoryBroker::new()));
    let mut builder = chat.mount(Gateway::builder(options.gateway, auth));
    if let Some(prefix) = options.dynamic_prefix {
        let handler = chat.chat_handler();
        builder = builder
            .dynamic_namespaces(Box::new(move |name| name.starts_with(prefix.as_str()).then(|| handler.clone())));
    }
    let gateway = builder.build();
    let app = gateway.router().merge(chat.api_router(gateway.clone(), options.api_key.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let shutdown = CancellationToken::new();
    tokio::spawn(switchboard_gateway::serve(listener, app, shutdown.clone()));
    TestServer { addr, secret, api_key: options.api_key, gateway, chat, shutdown }
}

impl TestServer {
    /// A token for `user` (name = user id, role `user`).
    pub fn token(&self, user: &str) -> String {
        self.token_with(user, user, "user")
    }

    pub fn token_with(&self, user: &str, name: &str, role: &str) -> String {
        mint_hs256(&self.secret, user, name, role, TOKEN_TTL_SECS)
    }

    /// Connects `user` (role `user`) to a namespace; panics on refusal.
    pub async fn connect(&self, nsp: &str, user: &str) -> TestClient {
        self.connect_as(nsp, user, user, "user").await
    }

    pub async fn connect_as(&self, nsp: &str, user: &str, name: &str, role: &str) -> TestClient {
        let auth = serde_json::json!({ "token": self.token_with(user, name, role) });
        match TestClient::connect(self.addr, nsp, auth).await {
            Ok(client) => client,
            Err(error) => panic!("{user} cannot connect to {nsp}: {error:?}"),
        }
    }

    /// Connects with any CONNECT payload (no token, a bad one, `pid`/`offset`).
    pub async fn try_connect(&self, nsp: &str, auth: Value) -> Result<TestClient, ConnectError> {
        TestClient::connect(self.addr, nsp, auth).await
    }

    /// A server API request with the key (as `Authorization: Bearer`).
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
        let key = self.api_key.clone().unwrap_or_default();
        let bearer = format!("Bearer {key}");
        let body = body.map(|b| b.to_string());
        http::request(self.addr, method, path, &[("authorization", &bearer)], body.as_deref().map(str::as_bytes)).await
    }

    /// Any HTTP request to the server: chosen headers, raw body.
    pub async fn http(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> HttpResponse {
        http::request(self.addr, method, path, headers, body).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.gateway.shutdown();
        self.shutdown.cancel();
    }
}

fn random_hex() -> String {
    rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect()
}
