//! Where clients connect to and from: the server's loopback address, the
//! Engine.IO path, and the source addresses sockets are bound to round-robin
//! (each source address has its own ~28k ephemeral ports).
//!
//! Only 127.0.0.0/8 is accepted, for the server and the sources alike: this
//! tool floods whatever it points at.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail, ensure};
use tokio::net::{TcpSocket, TcpStream};

/// The server end and the local ends of every client connection.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) servers: Vec<SocketAddr>,
    /// The Engine.IO path, starting and ending with `/`.
    pub(crate) path: String,
    sources: Vec<Ipv4Addr>,
}

impl Target {
    pub(crate) fn new(url: &str, path: &str, sources: Option<&str>) -> anyhow::Result<Self> {
        let servers = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(parse_server)
            .collect::<anyhow::Result<Vec<_>>>()?;
        ensure!(!servers.is_empty(), "--url names no server");
        let sources = match sources {
            Some(spec) => parse_sources(spec)?,
            None => Vec::new(),
        };
        let mut path = path.to_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        Ok(Self { servers, path, sources })
    }

    /// The server client `index` talks to.
    pub(crate) fn server(&self, index: usize) -> SocketAddr {
        self.servers[index % self.servers.len()]
    }

    /// `host:port` for the Host header.
    pub(crate) fn authority(&self, index: usize) -> String {
        self.server(index).to_string()
    }

    pub(crate) fn ws_url(&self, index: usize) -> String {
        format!("ws://{}{}?EIO=4&transport=websocket", self.server(index), self.path)
    }

    /// Opens a TCP connection for client `index`, bound to its source
    /// address when source addresses were given.
    pub(crate) async fn connect(&self, index: usize) -> anyhow::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        if !self.sources.is_empty() {
            let ip = self.sources[index % self.sources.len()];
            socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).with_context(|| format!("bind {ip}"))?;
        }
        let stream = socket.connect(self.server(index)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

fn parse_server(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = ["http://", "ws://"].iter().find_map(|scheme| url.strip_prefix(scheme)).unwrap_or(url);
    if url.starts_with("https://") || url.starts_with("wss://") {
        bail!("TLS is not supported: {url}");
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().with_context(|| format!("port in {url}"))?),
        None => (authority, 80),
    };
    let ip: Ipv4Addr = if host == "localhost" {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse().with_context(|| format!("host {host:?} is not an IPv4 address"))?
    };
    ensure!(ip.is_loopback(), "refusing {ip}: only 127.0.0.0/8 is allowed");
    Ok(SocketAddr::new(IpAddr::V4(ip), port))
}

/// `127.0.0.2-127.0.0.20,127.0.1.1`: ranges and single addresses.
fn parse_sources(spec: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: Ipv4Addr = a.trim().parse().with_context(|| format!("address {a:?}"))?;
        let b: Ipv4Addr = b.trim().parse().with_context(|| format!("address {b:?}"))?;
        ensure!(a.is_loopback() && b.is_loopback(), "refusing {part}: only 127.0.0.0/8 is allowed");
        let (a, b) = (u32::from(a), u32::from(b));
        ensure!(a <= b && b - a < 65_536, "bad range {part}");
        out.extend((a..=b).map(Ipv4Addr::from));
    }
    ensure!(!out.is_empty(), "--source-addrs names no address");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_loopback_urls() {
        let t = Target::new("http://127.0.0.1:3000", "/socket.io/", None).unwrap();
        assert_eq!(t.server(5), "127.0.0.1:3000".parse().unwrap());
        assert_eq!(t.ws_url(0), "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket");
        let t = Target::new("ws://localhost:8080/x", "socket.io", None).unwrap();
        assert_eq!(t.server(0), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/socket.io/");
        assert!(Target::new("127.0.0.9:1", "/", None).is_ok());
    }

    #[test]
    fn spreads_clients_over_servers() {
        let t = Target::new("http://127.0.0.1:3001,http://127.0.0.1:3002", "/socket.io/", None).unwrap();
        assert_eq!(t.server(0).port(), 3001);
        assert_eq!(t.server(1).port(), 3002);
        assert_eq!(t.server(2).port(), 3001);
        assert!(Target::new("http://127.0.0.1:3001,http://10.1.1.1:3002", "/", None).is_err());
    }

    #[test]
    fn refuses_other_hosts() {
        assert!(Target::new("http://10.0.0.1:3000", "/", None).is_err());
        assert!(Target::new("http://example.com:3000", "/", None).is_err());
        assert!(Target::new("https://127.0.0.1:3000", "/", None).is_err());
        assert!(Target::new("http://127.0.0.1:3000", "/", Some("10.0.0.1")).is_err());
    }

    #[test]
    fn parses_source_ranges() {
        let s = parse_sources("127.0.0.2-127.0.0.4, 127.0.1.1").unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[3], Ipv4Addr::new(127, 0, 1, 1));
        assert!(parse_sources("127.0.0.4-127.0.0.2").is_err());
    }
}
