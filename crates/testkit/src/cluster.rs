//! A real cluster for tests: a private Redis ([`RedisServer`]), `switchboard
//! router` replicas and `switchboard gateway` processes of the binary under
//! test, each on free ports of 127.0.0.1, in its own process group, killed
//! when the [`Cluster`] is dropped.
//!
//! Processes are addressed by [`Role`] and a 0-based index (`kill(Role::Gateway,
//! 1)` kills the second gateway); their node ids are 1-based (`router-1`,
//! `gw-2`). A restarted router keeps its id and ports; a restarted gateway keeps
//! its ports (clients find it at the same url) but takes a new id (`gw-2-r1`),
//! as a replacement pod would: the id names the sessions it issues.
//!
//! Everything a process writes (stdout and stderr: it logs to stderr) is kept
//! (the last 64 KiB per process) for failure messages: a readiness timeout
//! panics with the process's output, and dropping a cluster while a test
//! panics prints every process's tail. With `SB_DEBUG` set, the output is also
//! copied to the test's stderr as it comes, each line prefixed with the node id.
//!
//! ```no_run
//! # async fn example() {
//! use switchboard_testkit::{Cluster, ClusterOptions, Role};
//! let mut cluster = Cluster::start(ClusterOptions::new("target/debug/switchboard")).await;
//! let mut alice = cluster.connect(0, "/", "alice").await;
//! let mut bob = cluster.connect(2, "/", "bob").await;
//! alice.ack("room:join", serde_json::json!("lobby")).await;
//! bob.ack("room:join", serde_json::json!("lobby")).await;
//! cluster.kill(Role::Router, 0);
//! let metrics = cluster.metrics(Role::Gateway, 2).await;
//! let _ = metrics.value("switchboard_gateway_cluster_deliveries_total");
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_auth::mint_hs256;

use crate::client::{ConnectError, TestClient};
use crate::http::{self, HttpResponse};
use crate::redis::RedisServer;

/// Lifetime of the tokens the cluster mints.
const TOKEN_TTL_SECS: u64 = 3600;
/// How much of a process's output is kept.
const LOG_KEEP: usize = 64 * 1024;
/// How much of each process's output a failure prints.
const LOG_TAIL_LINES: usize = 40;
/// Attempts at starting a process whose ports were taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// The two kinds of cluster process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `switchboard router`: owns rooms, numbers and fans out broadcasts.
    Router,
    /// `switchboard gateway`: holds client connections.
    Gateway,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Router => "router",
            Role::Gateway => "gateway",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Role::Router => "router",
            Role::Gateway => "gw",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subcommand())
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Router replicas (at least one for a gateway to become ready).
    pub routers: usize,
    /// Gateways.
    pub gateways: usize,
    /// The `switchboard` binary (in a test of the `switchboard` crate:
    /// `env!("CARGO_BIN_EXE_switchboard")`).
    pub binary: PathBuf,
    /// Settings for every process, over the defaults (`SWITCHBOARD_*` names).
    pub env: Vec<(String, String)>,
    /// Settings for routers only, over `env`.
    pub router_env: Vec<(String, String)>,
    /// Settings for gateways only, over `env`.
    pub gateway_env: Vec<(String, String)>,
    /// How long one process may take to answer `/readyz` with 200.
    pub ready_timeout: Duration,
}

impl ClusterOptions {
    /// Two routers, three gateways, no overrides, 30 s to become ready.
    pub fn new(binary: impl Into<PathBuf>) -> ClusterOptions {
        ClusterOptions {
            routers: 2,
            gateways: 3,
            binary: binary.into(),
            env: Vec::new(),
            router_env: Vec::new(),
            gateway_env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
        }
    }

    /// Sets a setting for every process.
    pub fn env(mut self, name: &str, value: &str) -> ClusterOptions {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a setting for the gateways.
    pub fn gateway_env(mut self, name: &str, value: &str) -> ClusterOptions {
        self.gateway_env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets a setting for the routers.
    pub fn router_env(mut self, name: &str, value: &str) -> ClusterOptions {
        self.router_env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A process's kept output, shared with the threads that read its pipes.
#[derive(Debug, Default)]
struct Log {
    text: String,
}

impl Log {
    fn push_line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        if self.text.len() > LOG_KEEP {
            let mut cut = self.text.len() - LOG_KEEP;
            while !self.text.is_char_boundary(cut) {
                cut += 1;
            }
            self.text.drain(..cut);
        }
    }
}

/// One router or gateway slot: its ports stay; its process may be dead.
#[derive(Debug)]
struct Node {
    role: Role,
    id: String,
    /// Gateway: the client address. Router: the gRPC address.
    listen: SocketAddr,
    admin: SocketAddr,
    restarts: u32,
    child: Option<Child>,
    log: Arc<Mutex<Log>>,
}

impl Node {
    fn new(role: Role, index: usize) -> Node {
        Node {
            role,
            id: format!("{}-{}", role.id_prefix(), index + 1),
            listen: free_addr(),
            admin: free_addr(),
            restarts: 0,
            child: None,
            log: Arc::default(),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_text(&self) -> String {
        lock(&self.log).text.clone()
    }

    fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// SIGKILL to its own pid, then reaps it.
    fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().ok().flatten())
    }
}

/// Prometheus text, parsed: every sample with its labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

/// One line of Prometheus text: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Metrics {
    /// Parses the text exposition format; comments and unreadable lines are
    /// skipped.
    pub fn parse(text: &str) -> Metrics {
        Metrics { samples: text.lines().filter_map(parse_sample).collect() }
    }

    /// The sum of every sample named `name` (all label sets); 0 when absent,
    /// as a counter that was never incremented is often not exported.
    pub fn value(&self, name: &str) -> f64 {
        self.value_with(name, &[])
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    pub fn value_with(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|l| l == v)))
            .map(|s| s.value)
            .sum()
    }

    /// The samples named `name`, as `label set => value`, for messages.
    pub fn series(&self, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        self.samples.iter().filter(|s| s.name == name).map(|s| (s.labels.clone(), s.value)).collect()
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            // label name
            while chars.peek().is_some_and(|(_, c)| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let (start, c) = *chars.peek()?;
            if c == '}' {
                break start + 1;
            }
            let eq = inner[start..].find('=')? + start;
            let key = inner[start..eq].trim().to_owned();
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (_, '"') => break,
                    (_, other) => value.push(other),
                }
            }
            labels.insert(key, value);
        };
        rest = &inner[end..];
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// A running cluster. Dropping it kills every process it started (SIGKILL by
/// pid) and the Redis.
pub struct Cluster {
    options: ClusterOptions,
    redis: RedisServer,
    routers: Vec<Node>,
    gateways: Vec<Node>,
    /// The HS256 secret the gateways check tokens with.
    pub secret: String,
    /// The server API key of every process.
    pub api_key: String,
    /// `SWITCHBOARD_CLUSTER_SECRET`: signs session ids across gateways.
    pub cluster_secret: String,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("redis", &self.redis.addr())
            .field("routers", &self.routers.iter().map(|n| (&n.id, n.listen, n.admin)).collect::<Vec<_>>())
            .field("gateways", &self.gateways.iter().map(|n| (&n.id, n.listen, n.admin)).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts Redis, then the routers, then the gateways, each waited for
    /// (`/readyz` 200, within `options.ready_timeout`). Panics with the
    /// processes' output when one does not come up.
    pub async fn start(options: ClusterOptions) -> Cluster {
        assert!(
            options.binary.is_file(),
            "the switchboard binary is not at {} (build it: cargo build -p switchboard)",
            options.binary.display()
        );
        let redis = RedisServer::start();
        let routers = (0..options.routers).map(|i| Node::new(Role::Router, i)).collect();
        let gateways = (0..options.gateways).map(|i| Node::new(Role::Gateway, i)).collect();
        let mut cluster = Cluster {
            options,
            redis,
            routers,
            gateways,
            secret: random_hex(),
            api_key: random_hex(),
            cluster_secret: random_hex(),
        };
        for role in [Role::Router, Role::Gateway] {
            // Spawn the role's processes together, then wait for each: they
            // start in parallel.
            for i in 0..cluster.count(role) {
                cluster.spawn(role, i);
            }
            for i in 0..cluster.count(role) {
                cluster.await_start(role, i, true).await;
            }
        }
        cluster
    }

    /// How many processes of `role` the cluster has (dead ones included).
    pub fn count(&self, role: Role) -> usize {
        self.nodes(role).len()
    }

    /// The node id of a process (`router-1`, `gw-2`, `gw-2-r1` after a
    /// restart).
    pub fn node_id(&self, role: Role, i: usize) -> &str {
        &self.node(role, i).id
    }

    /// The pid of a running process; `None` when it was killed.
    pub fn pid(&self, role: Role, i: usize) -> Option<u32> {
        self.node(role, i).pid()
    }

    /// The client address of gateway `i` (Socket.IO and the server API).
    pub fn gateway_addr(&self, i: usize) -> SocketAddr {
        self.node(Role::Gateway, i).listen
    }

    /// `http://127.0.0.1:<port>` of gateway `i`.
    pub fn gateway_url(&self, i: usize) -> String {
        format!("http://{}", self.gateway_addr(i))
    }

    /// Every gateway's url, in index order.
    pub fn gateway_urls(&self) -> Vec<String> {
        (0..self.gateways.len()).map(|i| self.gateway_url(i)).collect()
    }

    /// The gRPC address of router `i`.
    pub fn router_addr(&self, i: usize) -> SocketAddr {
        self.node(Role::Router, i).listen
    }

    /// The admin address (`/metrics`, `/healthz`, `/readyz`) of a process.
    pub fn admin_addr(&self, role: Role, i: usize) -> SocketAddr {
        self.node(role, i).admin
    }

    /// The Redis of the cluster, to stop, restart or freeze it.
    pub fn redis(&mut self) -> &mut RedisServer {
        &mut self.redis
    }

    /// Kills a process with SIGKILL (its own pid) and reaps it; its slot
    /// stays, for [`restart`](Self::restart). Does nothing if it is not
    /// running.
    pub fn kill(&mut self, role: Role, i: usize) {
        self.node_mut(role, i).kill();
    }

    /// Sends SIGTERM (a graceful stop: drain) and waits up to `grace` for the
    /// process to exit. Its exit status, or `None` when it was still running
    /// after `grace` and was killed.
    pub async fn terminate(&mut self, role: Role, i: usize, grace: Duration) -> Option<ExitStatus> {
        let pid = self.node(role, i).pid()?;
        signal(pid, "TERM");
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.node_mut(role, i).exited() {
                self.node_mut(role, i).child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.node_mut(role, i).kill();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the process if it runs (SIGKILL) and starts it again on the same
    /// ports, then waits until it is ready. A router keeps its id; a gateway
    /// gets a new one (`gw-<n>-r<restarts>`).
    pub async fn restart(&mut self, role: Role, i: usize) {
        let node = self.node_mut(role, i);
        node.kill();
        node.restarts += 1;
        if role == Role::Gateway {
            node.id = format!("{}-{}-r{}", role.id_prefix(), i + 1, node.restarts);
        }
        lock(&node.log).push_line(&format!("---- restart {} as {} ----", node.restarts, node.id));
        self.spawn(role, i);
        self.await_start(role, i, false).await;
    }

    /// True when the process answers `/readyz` with 200.
    pub async fn is_ready(&self, role: Role, i: usize) -> bool {
        let admin = self.admin_addr(role, i);
        let probe = http::try_request(admin, "GET", "/readyz", &[], None, Duration::from_secs(1)).await;
        probe.is_ok_and(|r| r.status == 200)
    }

    /// Waits until the process answers `/readyz` with 200; panics after
    /// `within` with its output.
    pub async fn wait_ready(&mut self, role: Role, i: usize, within: Duration) {
        if let Err(why) = self.ready_within(role, i, within).await {
            panic!("{why}");
        }
    }

    /// Scrapes `/metrics` of a process. Panics if it does not answer.
    pub async fn metrics(&self, role: Role, i: usize) -> Metrics {
        let node = self.node(role, i);
        match http::try_request(node.admin, "GET", "/metrics", &[], None, crate::WAIT).await {
            Ok(response) if response.status == 200 => Metrics::parse(&response.text),
            Ok(response) => panic!("{} /metrics answered {}: {}", node.id, response.status, response.text),
            Err(error) => panic!("{} /metrics: {error}\noutput of {}:\n{}", node.id, node.id, node.tail()),
        }
    }

    /// A token for `user` (name = user id, role `user`).
    pub fn token(&self, user: &str) -> String {
        self.token_with(user, user, "user")
    }

    pub fn token_with(&self, user: &str, name: &str, role: &str) -> String {
        mint_hs256(&self.secret, user, name, role, TOKEN_TTL_SECS)
    }

    /// Connects `user` (role `user`) to a namespace through gateway `gateway`;
    /// panics on refusal, with the gateway's output.
    pub async fn connect(&self, gateway: usize, nsp: &str, user: &str) -> TestClient {
        let auth = serde_json::json!({ "token": self.token(user) });
        match self.try_connect(gateway, nsp, auth).await {
            Ok(client) => client,
            Err(error) => {
                let node = self.node(Role::Gateway, gateway);
                panic!(
                    "{user} cannot connect to {nsp} on {}: {error:?}\noutput of {}:\n{}",
                    node.id,
                    node.id,
                    node.tail()
                )
            }
        }
    }

    /// Connects through gateway `gateway` with any CONNECT payload (a token,
    /// plus `pid`/`offset` to recover).
    pub async fn try_connect(&self, gateway: usize, nsp: &str, auth: Value) -> Result<TestClient, ConnectError> {
        TestClient::connect(self.gateway_addr(gateway), nsp, auth).await
    }

    /// A server API request to gateway `gateway`, with the key.
    pub async fn api(&self, gateway: usize, method: &str, path: &str, body: Option<Value>) -> HttpResponse {
        let bearer = format!("Bearer {}", self.api_key);
        let body = body.map(|b| b.to_string());
        let addr = self.gateway_addr(gateway);
        http::request(addr, method, path, &[("authorization", &bearer)], body.as_deref().map(str::as_bytes)).await
    }

    /// Everything a process wrote (the last 64 KiB), across its restarts.
    pub fn logs(&self, role: Role, i: usize) -> String {
        self.node(role, i).log_text()
    }

    /// The last lines of every process's output, for a failure message.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for node in self.routers.iter().chain(&self.gateways) {
            let state = if node.child.is_some() { "running" } else { "stopped" };
            out.push_str(&format!("---- {} ({state}, admin {}) ----\n{}\n", node.id, node.admin, node.tail()));
        }
        out
    }

    fn nodes(&self, role: Role) -> &[Node] {
        match role {
            Role::Router => &self.routers,
            Role::Gateway => &self.gateways,
        }
    }

    fn node(&self, role: Role, i: usize) -> &Node {
        let nodes = self.nodes(role);
        nodes.get(i).unwrap_or_else(|| panic!("no {role} {i}: the cluster has {}", nodes.len()))
    }

    fn node_mut(&mut self, role: Role, i: usize) -> &mut Node {
        let nodes = match role {
            Role::Router => &mut self.routers,
            Role::Gateway => &mut self.gateways,
        };
        let count = nodes.len();
        nodes.get_mut(i).unwrap_or_else(|| panic!("no {role} {i}: the cluster has {count}"))
    }

    /// The environment of a process: nothing of the test's own, only PATH,
    /// the cluster's settings and the overrides.
    fn env_of(&self, node: &Node) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())),
            ("RUST_BACKTRACE".into(), "1".into()),
            // Plain text in the kept output (no terminal colours).
            ("NO_COLOR".into(), "1".into()),
            ("SWITCHBOARD_LOG".into(), std::env::var("SB_SERVER_LOG").unwrap_or_else(|_| "info".into())),
            ("SWITCHBOARD_NODE_ID".into(), node.id.clone()),
            ("SWITCHBOARD_REDIS_URL".into(), format!("redis://127.0.0.1:{}", self.redis.port())),
            ("SWITCHBOARD_ADMIN_LISTEN".into(), node.admin.to_string()),
            ("SWITCHBOARD_CLUSTER_SECRET".into(), self.cluster_secret.clone()),
            ("SWITCHBOARD_API_KEY".into(), self.api_key.clone()),
        ];
        let role_env = match node.role {
            Role::Router => {
                env.push(("SWITCHBOARD_GRPC_LISTEN".into(), node.listen.to_string()));
                &self.options.router_env
            }
            Role::Gateway => {
                env.push(("SWITCHBOARD_LISTEN".into(), node.listen.to_string()));
                env.push(("SWITCHBOARD_JWT_SECRET".into(), self.secret.clone()));
                env.push(("SWITCHBOARD_PRESENCE_INTERVAL".into(), "50ms".into()));
                &self.options.gateway_env
            }
        };
        for (name, value) in self.options.env.iter().chain(role_env) {
            env.retain(|(n, _)| n != name);
            env.push((name.clone(), value.clone()));
        }
        env
    }

    /// Starts the process of a slot (not waiting for it).
    fn spawn(&mut self, role: Role, i: usize) {
        let env = self.env_of(self.node(role, i));
        let binary = self.options.binary.clone();
        let node = self.node_mut(role, i);
        let mut command = Command::new(&binary);
        command
            .arg(role.subcommand())
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches the test,
            // which kills it, rather than every process at once.
            .process_group(0);
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {} {role}: {e}", binary.display()));
        let echo = std::env::var_os("SB_DEBUG").is_some();
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (log, id) = (node.log.clone(), node.id.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if echo {
                        eprintln!("[{id}] {line}");
                    }
                    lock(&log).push_line(&line);
                }
            });
        }
        node.child = Some(child);
    }

    /// Waits for a spawned process to be ready. A first start whose process
    /// exits because its port was taken meanwhile tries again on new ports; a
    /// restart keeps its ports and tries again a few times (the port may
    /// still be held for a moment). Panics with the output otherwise.
    async fn await_start(&mut self, role: Role, i: usize, new_ports: bool) {
        let within = self.options.ready_timeout;
        let mut attempt = 1;
        loop {
            match self.ready_within(role, i, within).await {
                Ok(()) => return,
                Err(_) if attempt < PORT_ATTEMPTS && self.port_was_taken(role, i) => {
                    let node = self.node_mut(role, i);
                    node.child = None;
                    lock(&node.log).push_line(&format!("---- its port was taken (attempt {attempt}): again ----"));
                    if new_ports {
                        node.listen = free_addr();
                        node.admin = free_addr();
                    } else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    self.spawn(role, i);
                    attempt += 1;
                }
                Err(why) => {
                    self.node_mut(role, i).kill();
                    panic!("{why}\n{}", self.log_tails());
                }
            }
        }
    }

    /// True when the process exited and its last words say that an address
    /// was in use (another process took a port between our probe and its bind).
    fn port_was_taken(&mut self, role: Role, i: usize) -> bool {
        let node = self.node_mut(role, i);
        node.exited().is_some() && {
            let text = node.log_text();
            let last = text.rsplit("---- ").next().unwrap_or_default().to_ascii_lowercase();
            last.contains("in use") || last.contains("os error 98")
        }
    }

    async fn ready_within(&mut self, role: Role, i: usize, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.node_mut(role, i).exited() {
                let node = self.node(role, i);
                return Err(format!(
                    "{} ({role}) exited before it was ready ({status}); output:\n{}",
                    node.id,
                    node.tail()
                ));
            }
            if self.node(role, i).child.is_none() {
                return Err(format!("{} ({role}) is not running", self.node(role, i).id));
            }
            if self.is_ready(role, i).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let node = self.node(role, i);
                return Err(format!(
                    "{} ({role}) did not answer http://{}/readyz with 200 within {within:?}; output:\n{}",
                    node.id,
                    node.admin,
                    node.tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("==== cluster output at the failure (redis {}) ====\n{}", self.redis.addr(), self.log_tails());
        }
        for node in self.gateways.iter_mut().chain(self.routers.iter_mut()) {
            node.kill();
        }
        // The RedisServer field stops its own process when dropped.
    }
}

/// Sends a signal to one pid, through the shell's `kill` builtin (this crate
/// forbids unsafe code, so no libc).
fn signal(pid: u32, name: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{name} {pid}"))
        .status()
        .unwrap_or_else(|e| panic!("sh -c kill: {e}"));
    assert!(status.success(), "kill -{name} {pid} failed: {status}");
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address")
}

fn random_hex() -> String {
    rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let text = "# HELP x_total things\n# TYPE x_total counter\nx_total 3\n\
                    y_total{outcome=\"ok\",role=\"a\"} 5\ny_total{outcome=\"refused\"} 2\n\
                    z{path=\"a\\\"b,c}\"} 1.5 1700000000\nh_bucket{le=\"+Inf\"} +Inf\nbroken line\n";
        let metrics = Metrics::parse(text);
        assert_eq!(metrics.value("x_total"), 3.0);
        assert_eq!(metrics.value("y_total"), 7.0);
        assert_eq!(metrics.value_with("y_total", &[("outcome", "ok")]), 5.0);
        assert_eq!(metrics.value_with("y_total", &[("outcome", "lost")]), 0.0);
        assert_eq!(metrics.value("absent_total"), 0.0);
        assert_eq!(metrics.value_with("z", &[("path", "a\"b,c}")]), 1.5);
        assert_eq!(metrics.value("h_bucket"), f64::INFINITY);
        assert_eq!(metrics.series("y_total").len(), 2);
    }

    #[test]
    fn keeps_the_tail_of_a_long_log() {
        let mut log = Log::default();
        for i in 0..10_000 {
            log.push_line(&format!("line {i} é"));
        }
        assert!(log.text.len() <= LOG_KEEP);
        assert!(log.text.ends_with("line 9999 é\n"));
    }
}
