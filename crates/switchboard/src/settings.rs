//! Every setting, from the environment (`SWITCHBOARD_*`) or a flag. The names
//! are those of SPEC.md section 7 and docs/configuration.md; scripts, the Helm
//! chart and tests rely on them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use switchboard_auth::AuthConfig;
use switchboard_gateway::{Config, Cors, Limits};

use crate::units::{boolean, duration, positive, rate, size};

/// Switchboard: a Socket.IO server that scales out.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
    #[command(flatten)]
    pub(crate) settings: Settings,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the standalone server (the default).
    Standalone,
    /// Run a cluster gateway (not yet available).
    Gateway,
    /// Run a cluster room router: the gRPC service gateways talk to.
    Router,
    /// Serve the fixture the official Socket.IO conformance suites expect.
    #[command(hide = true)]
    Fixture {
        /// Which suite: engine.io-protocol, socket.io-protocol or client.
        suite: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct Settings {
    /// Client address (Socket.IO and the server API).
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "0.0.0.0:3000", global = true)]
    pub(crate) listen: SocketAddr,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SWITCHBOARD_ADMIN_LISTEN", default_value = "0.0.0.0:9090", global = true)]
    pub(crate) admin_listen: SocketAddr,
    /// The Socket.IO path.
    #[arg(long, env = "SWITCHBOARD_PATH", default_value = "/socket.io/", global = true)]
    pub(crate) path: String,
    #[arg(long, env = "SWITCHBOARD_PING_INTERVAL", default_value = "25s", value_parser = duration("SWITCHBOARD_PING_INTERVAL"), global = true)]
    pub(crate) ping_interval: Duration,
    #[arg(long, env = "SWITCHBOARD_PING_TIMEOUT", default_value = "20s", value_parser = duration("SWITCHBOARD_PING_TIMEOUT"), global = true)]
    pub(crate) ping_timeout: Duration,
    #[arg(long, env = "SWITCHBOARD_MAX_HTTP_BUFFER_SIZE", default_value = "1MB", value_parser = size("SWITCHBOARD_MAX_HTTP_BUFFER_SIZE"), global = true)]
    pub(crate) max_http_buffer_size: usize,
    /// Comma-separated allowed origins; `*` for any.
    #[arg(long, env = "SWITCHBOARD_CORS_ORIGINS", global = true)]
    pub(crate) cors_origins: Option<String>,
    #[arg(long, env = "SWITCHBOARD_CORS_CREDENTIALS", default_value = "false", value_parser = boolean("SWITCHBOARD_CORS_CREDENTIALS"), global = true)]
    pub(crate) cors_credentials: bool,
    #[arg(long, env = "SWITCHBOARD_RECOVERY_WINDOW", default_value = "2m", value_parser = duration("SWITCHBOARD_RECOVERY_WINDOW"), global = true)]
    pub(crate) recovery_window: Duration,
    #[arg(long, env = "SWITCHBOARD_RECOVERY_MAX_PACKETS", default_value = "100000", value_parser = positive("SWITCHBOARD_RECOVERY_MAX_PACKETS"), global = true)]
    pub(crate) recovery_max_packets: usize,
    #[arg(long, env = "SWITCHBOARD_ACK_TIMEOUT", default_value = "10s", value_parser = duration("SWITCHBOARD_ACK_TIMEOUT"), global = true)]
    pub(crate) ack_timeout: Duration,
    /// A regular expression: matching namespaces are created on first CONNECT.
    #[arg(long, env = "SWITCHBOARD_DYNAMIC_NAMESPACES", global = true)]
    pub(crate) dynamic_namespaces: Option<String>,

    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true, global = true)]
    pub(crate) jwt_secret: Option<String>,
    #[arg(long, env = "SWITCHBOARD_JWT_PUBLIC_KEY_FILE", global = true)]
    pub(crate) jwt_public_key_file: Option<PathBuf>,
    #[arg(long, env = "SWITCHBOARD_JWKS_FILE", global = true)]
    pub(crate) jwks_file: Option<PathBuf>,
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER", global = true)]
    pub(crate) jwt_issuer: Option<String>,
    #[arg(long, env = "SWITCHBOARD_JWT_AUDIENCE", global = true)]
    pub(crate) jwt_audience: Option<String>,
    #[arg(long, env = "SWITCHBOARD_ALLOW_ANONYMOUS", default_value = "false", value_parser = boolean("SWITCHBOARD_ALLOW_ANONYMOUS"), global = true)]
    pub(crate) allow_anonymous: bool,
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true, global = true)]
    pub(crate) api_key: Option<String>,

    #[arg(long, env = "SWITCHBOARD_PRESENCE_BROADCAST", default_value = "true", value_parser = boolean("SWITCHBOARD_PRESENCE_BROADCAST"), global = true)]
    pub(crate) presence_broadcast: bool,
    /// With SWITCHBOARD_PRESENCE_BROADCAST=false: send the online list to each socket on connect.
    #[arg(long, env = "SWITCHBOARD_PRESENCE_ON_CONNECT", default_value = "true", value_parser = boolean("SWITCHBOARD_PRESENCE_ON_CONNECT"), global = true)]
    pub(crate) presence_on_connect: bool,
    #[arg(long, env = "SWITCHBOARD_PRESENCE_INTERVAL", default_value = "250ms", value_parser = duration("SWITCHBOARD_PRESENCE_INTERVAL"), global = true)]
    pub(crate) presence_interval: Duration,
    #[arg(long, env = "SWITCHBOARD_ANNOUNCE_ROLES", default_value = "admin", global = true)]
    pub(crate) announce_roles: String,
    #[arg(long, env = "SWITCHBOARD_HISTORY_ON_JOIN", default_value = "50", global = true)]
    pub(crate) history_on_join: usize,
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_MESSAGES", default_value = "1000", value_parser = positive("SWITCHBOARD_HISTORY_MAX_MESSAGES"), global = true)]
    pub(crate) history_max_messages: usize,
    #[arg(long, env = "SWITCHBOARD_HISTORY_MAX_AGE", default_value = "24h", value_parser = duration("SWITCHBOARD_HISTORY_MAX_AGE"), global = true)]
    pub(crate) history_max_age: Duration,

    #[arg(long, env = "SWITCHBOARD_MAX_ATTACHMENTS", default_value = "10", global = true)]
    pub(crate) max_attachments: usize,
    #[arg(long, env = "SWITCHBOARD_MAX_ROOMS_PER_SOCKET", default_value = "100", value_parser = positive("SWITCHBOARD_MAX_ROOMS_PER_SOCKET"), global = true)]
    pub(crate) max_rooms_per_socket: usize,
    #[arg(long, env = "SWITCHBOARD_MAX_ROOM_NAME_LENGTH", default_value = "128", value_parser = positive("SWITCHBOARD_MAX_ROOM_NAME_LENGTH"), global = true)]
    pub(crate) max_room_name_length: usize,
    #[arg(long, env = "SWITCHBOARD_EVENT_RATE", default_value = "50", value_parser = rate("SWITCHBOARD_EVENT_RATE"), global = true)]
    pub(crate) event_rate: f64,
    #[arg(long, env = "SWITCHBOARD_EVENT_BURST", default_value = "100", value_parser = rate("SWITCHBOARD_EVENT_BURST"), global = true)]
    pub(crate) event_burst: f64,
    #[arg(long, env = "SWITCHBOARD_MAX_SOCKETS_PER_USER", default_value = "20", value_parser = positive("SWITCHBOARD_MAX_SOCKETS_PER_USER"), global = true)]
    pub(crate) max_sockets_per_user: usize,
    #[arg(long, env = "SWITCHBOARD_MAX_PENDING_BYTES", default_value = "4MiB", value_parser = size("SWITCHBOARD_MAX_PENDING_BYTES"), global = true)]
    pub(crate) max_pending_bytes: usize,

    /// The cluster's Redis (gateway and router roles).
    #[arg(
        long,
        env = "SWITCHBOARD_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true,
        global = true
    )]
    pub(crate) redis_url: String,
    /// The router's gRPC address (router role).
    #[arg(long, env = "SWITCHBOARD_GRPC_LISTEN", default_value = "0.0.0.0:50051", global = true)]
    pub(crate) grpc_listen: SocketAddr,
    /// host:port gateways dial to reach this router (router role); default: SWITCHBOARD_GRPC_LISTEN with an
    /// unspecified IP replaced by 127.0.0.1.
    #[arg(long, env = "SWITCHBOARD_GRPC_ADVERTISE", value_parser = host_port("SWITCHBOARD_GRPC_ADVERTISE"), global = true)]
    pub(crate) grpc_advertise: Option<String>,
    /// host:port other gateways reach this gateway's internal HTTP on (gateway role); default: SWITCHBOARD_LISTEN
    /// with an unspecified IP replaced by 127.0.0.1.
    #[arg(long, env = "SWITCHBOARD_ADVERTISE", value_parser = host_port("SWITCHBOARD_ADVERTISE"), global = true)]
    pub(crate) advertise: Option<String>,
    /// This process's id in the cluster, letters, digits, `_` and `-`; default: `<role>-<8 random hex digits>`.
    #[arg(long, env = "SWITCHBOARD_NODE_ID", value_parser = node_id("SWITCHBOARD_NODE_ID"), global = true)]
    pub(crate) node_id: Option<String>,
    /// The secret shared by a cluster's processes (signs session ids).
    #[arg(long, env = "SWITCHBOARD_CLUSTER_SECRET", hide_env_values = true, global = true)]
    pub(crate) cluster_secret: Option<String>,

    /// Router role: how long a delivery batch for a gateway waits for more
    /// deliveries; `0s` publishes what queued meanwhile (lower latency, a
    /// little more CPU).
    #[arg(long, env = "SWITCHBOARD_ROUTER_BATCH_LINGER", default_value = "0s", value_parser = duration("SWITCHBOARD_ROUTER_BATCH_LINGER"), global = true)]
    pub(crate) router_batch_linger: Duration,
    /// Gateway role: on SIGTERM, how long closing every session takes (in
    /// batches with jitter, so that clients reconnect elsewhere gradually).
    #[arg(long, env = "SWITCHBOARD_DRAIN_PERIOD", default_value = "10s", value_parser = duration("SWITCHBOARD_DRAIN_PERIOD"), global = true)]
    pub(crate) drain_period: Duration,

    /// Tracing filter, e.g. `info` or `switchboard_gateway=debug`.
    #[arg(long, env = "SWITCHBOARD_LOG", default_value = "info", global = true)]
    pub(crate) log: String,
    /// `plain` or `json`.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", default_value = "plain", value_parser = ["plain", "json"], global = true)]
    pub(crate) log_format: String,
}

impl Settings {
    /// The gateway's part.
    pub(crate) fn gateway_config(&self) -> anyhow::Result<Config> {
        let mut path = self.path.clone();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        if self.ping_timeout.is_zero() || self.ping_interval.is_zero() {
            anyhow::bail!("SWITCHBOARD_PING_INTERVAL and SWITCHBOARD_PING_TIMEOUT must be above zero");
        }
        let origins = self
            .cors_origins
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Config {
            path,
            engine: switchboard_protocol_settings(self),
            cors: Cors { origins, credentials: self.cors_credentials },
            recovery_window: self.recovery_window,
            recovery_max_packets: self.recovery_max_packets,
            ack_timeout: self.ack_timeout,
            connect_timeout: Duration::from_secs(45),
            limits: Limits {
                max_attachments: self.max_attachments,
                max_rooms_per_socket: self.max_rooms_per_socket,
                max_room_name_len: self.max_room_name_length,
                event_rate: self.event_rate,
                event_burst: self.event_burst,
                max_sockets_per_user: self.max_sockets_per_user,
                max_pending_bytes: self.max_pending_bytes.max(self.max_http_buffer_size * 2),
            },
            engine_echo: false,
        })
    }

    /// The id of this process in the cluster: SWITCHBOARD_NODE_ID, or
    /// `<role>-<8 random hex digits>` (a new one at every start).
    pub(crate) fn node_id_for(&self, role: &str) -> String {
        self.node_id.clone().unwrap_or_else(|| format!("{role}-{:08x}", rand::random::<u32>()))
    }

    /// What gateways dial to reach this router: SWITCHBOARD_GRPC_ADVERTISE,
    /// or SWITCHBOARD_GRPC_LISTEN with an unspecified IP replaced by
    /// 127.0.0.1 (right on one machine; elsewhere, such as in Kubernetes,
    /// set it to the pod IP).
    pub(crate) fn grpc_advertise_address(&self) -> String {
        self.grpc_advertise.clone().unwrap_or_else(|| reachable(self.grpc_listen))
    }

    /// What other gateways use to reach this gateway's internal HTTP:
    /// SWITCHBOARD_ADVERTISE, or SWITCHBOARD_LISTEN with an unspecified IP
    /// replaced by 127.0.0.1.
    pub(crate) fn advertise_address(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| reachable(self.listen))
    }

    pub(crate) fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            secret: self.jwt_secret.clone().filter(|s| !s.is_empty()),
            public_key_file: self.jwt_public_key_file.clone(),
            jwks_file: self.jwks_file.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            allow_anonymous: self.allow_anonymous,
        }
    }
}

/// `addr`, with an unspecified IP (`0.0.0.0`, `::`) replaced by 127.0.0.1.
fn reachable(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { addr.ip() };
    SocketAddr::new(ip, addr.port()).to_string()
}

/// Longest node id: it is part of channel names, leases and session ids.
const MAX_NODE_ID_LEN: usize = 64;

/// A parser of node ids: 1 to 64 of `[A-Za-z0-9_-]`.
fn node_id(setting: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |text| {
        let valid = !text.is_empty()
            && text.len() <= MAX_NODE_ID_LEN
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(text.to_owned())
        } else {
            Err(format!("{setting}: expected 1 to {MAX_NODE_ID_LEN} letters, digits, `_` or `-`"))
        }
    }
}

/// A parser of `host:port` addresses (a name, an IPv4 address or a
/// bracketed IPv6 one, and a port above zero).
fn host_port(setting: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |text| {
        let text = text.trim();
        let valid = text.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'|' || b == b'/')
                && port.parse::<u16>().is_ok_and(|port| port > 0)
        });
        if valid { Ok(text.to_owned()) } else { Err(format!("{setting}: expected host:port, such as 10.0.0.7:50051")) }
    }
}

fn switchboard_protocol_settings(settings: &Settings) -> switchboard_protocol::handshake::Settings {
    switchboard_protocol::handshake::Settings {
        ping_interval: settings.ping_interval,
        ping_timeout: settings.ping_timeout,
        max_payload: settings.max_http_buffer_size,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("switchboard").chain(args.iter().copied()))
    }

    #[test]
    fn advertised_addresses_default_to_the_listeners_on_loopback() {
        let cli = parse(&["router", "--grpc-listen", "0.0.0.0:7000", "--listen", "[::]:3001"]).unwrap();
        assert_eq!(cli.settings.grpc_advertise_address(), "127.0.0.1:7000");
        assert_eq!(cli.settings.advertise_address(), "127.0.0.1:3001");
        let cli =
            parse(&["router", "--grpc-listen", "10.1.2.3:7000", "--grpc-advertise", "router-0.svc:7000"]).unwrap();
        assert_eq!(cli.settings.grpc_advertise_address(), "router-0.svc:7000");
        let cli = parse(&["--listen", "10.1.2.3:3000", "--advertise", "[fd00::1]:3000"]).unwrap();
        assert_eq!(cli.settings.advertise_address(), "[fd00::1]:3000");
        let cli = parse(&["--listen", "10.1.2.3:3000"]).unwrap();
        assert_eq!(cli.settings.advertise_address(), "10.1.2.3:3000");
    }

    #[test]
    fn advertised_addresses_are_host_and_port() {
        for bad in ["router", "router:", ":50051", "router:0", "router:70000", "a b:1", "a|b:1", "http://a:1"] {
            let error = parse(&["router", "--grpc-advertise", bad]).expect_err(bad).to_string();
            assert!(error.contains("SWITCHBOARD_GRPC_ADVERTISE: expected host:port"), "{bad}: {error}");
        }
        assert!(parse(&["--advertise", "gw"]).expect_err("no port").to_string().contains("SWITCHBOARD_ADVERTISE"));
    }

    #[test]
    fn node_ids_are_given_or_made_per_role() {
        let cli = parse(&["router", "--node-id", "router_A-1"]).unwrap();
        assert_eq!(cli.settings.node_id_for("router"), "router_A-1");
        let made = parse(&["router"]).unwrap().settings.node_id_for("router");
        let hex = made.strip_prefix("router-").expect("the role first");
        assert!(hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
        for bad in ["", "a.b", "a|b", "é", "a b", &"x".repeat(65)] {
            let error = parse(&["router", "--node-id", bad]).expect_err(bad).to_string();
            assert!(error.contains("SWITCHBOARD_NODE_ID"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn cluster_settings_have_their_defaults() {
        let cli = parse(&["router"]).unwrap();
        assert_eq!(cli.settings.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(cli.settings.grpc_listen, "0.0.0.0:50051".parse().unwrap());
        assert_eq!(cli.settings.grpc_advertise_address(), "127.0.0.1:50051");
        assert_eq!(cli.settings.cluster_secret, None);
    }
}
