//! A real Prometheus (the Debian package's `prometheus` binary, started here
//! on a free port with a private data directory) scrapes a running cluster
//! (1 router, 2 gateways) while clients exchange messages, and is queried
//! through its HTTP API as a dashboard would: the targets are up and the
//! gateways' deliveries and the router's publishes are there and moved.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{Cluster, ClusterOptions, Role};

struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_prometheus(targets: &[(&str, std::net::SocketAddr)]) -> Prometheus {
    let dir = std::env::temp_dir().join(format!("sb-prometheus-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    let mut jobs: Vec<&str> = targets.iter().map(|(job, _)| *job).collect();
    jobs.dedup();
    for job in jobs {
        let addrs: Vec<String> = targets.iter().filter(|(j, _)| *j == job).map(|(_, a)| format!("'{a}'")).collect();
        config
            .push_str(&format!("  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n", addrs.join(", ")));
    }
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let binary = ["/usr/bin/prometheus", "prometheus"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())
        .expect("the prometheus binary (Debian package `prometheus`; scripts/test.sh installs it)");
    let child = Command::new(binary)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    Prometheus { child, port, _dir: TempDir(dir) }
}

async fn query(prometheus: &Prometheus, promql: &str) -> Option<Vec<Value>> {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", prometheus.port).parse().unwrap();
    let encoded: String = promql
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    let path = format!("/api/v1/query?query={encoded}");
    let response =
        switchboard_testkit::http::try_request(addr, "GET", &path, &[], None, Duration::from_secs(2)).await.ok()?;
    (response.body["status"] == "success")
        .then(|| response.body["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Waits until `promql` gives a sample whose value satisfies `check`.
async fn eventually_value(prometheus: &Prometheus, promql: &str, check: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(result) = query(prometheus, promql).await {
            let value = result.first().and_then(|s| s["value"][1].as_str()).and_then(|v| v.parse::<f64>().ok());
            if let Some(value) = value
                && check(value)
            {
                return value;
            }
            last = Some(result);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{promql}: no satisfying sample within 20 s; last result {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_running_cluster() {
    let mut options = ClusterOptions::new(env!("CARGO_BIN_EXE_switchboard"));
    options.routers = 1;
    options.gateways = 2;
    let cluster = Cluster::start(options).await;
    let targets = [
        ("switchboard-router", cluster.admin_addr(Role::Router, 0)),
        ("switchboard-gateway", cluster.admin_addr(Role::Gateway, 0)),
        ("switchboard-gateway", cluster.admin_addr(Role::Gateway, 1)),
    ];
    let prometheus = start_prometheus(&targets);

    let alice = cluster.connect(0, "/", "alice").await;
    let bob = cluster.connect(1, "/", "bob").await;
    for client in [&alice, &bob] {
        assert_eq!(client.ack("room:join", json!("lobby")).await, json!({"ok": true}));
    }
    for i in 0..20 {
        assert_eq!(alice.ack("room:message", json!({"roomId": "lobby", "text": i})).await, json!({"ok": true}));
    }

    let up = eventually_value(&prometheus, "sum(up)", |v| v == 3.0).await;
    assert_eq!(up, 3.0, "every target is scraped and up");
    eventually_value(&prometheus, "sum(switchboard_gateway_sessions)", |v| v >= 2.0).await;
    let delivered =
        eventually_value(&prometheus, "sum(switchboard_gateway_cluster_deliveries_total)", |v| v >= 20.0).await;
    let published =
        eventually_value(&prometheus, r#"sum(switchboard_router_publishes_total{outcome="ok"})"#, |v| v >= 20.0).await;
    // The values move with the traffic: 20 more messages, seen by the next scrapes.
    for i in 0..20 {
        assert_eq!(alice.ack("room:message", json!({"roomId": "lobby", "text": i})).await, json!({"ok": true}));
    }
    eventually_value(&prometheus, "sum(switchboard_gateway_cluster_deliveries_total)", |v| v >= delivered + 20.0).await;
    eventually_value(&prometheus, r#"sum(switchboard_router_publishes_total{outcome="ok"})"#, |v| {
        v >= published + 20.0
    })
    .await;
    // A query of the shape the dashboards use, per pod: one series per
    // gateway once each has two samples.
    let promql = "sum by (instance) (rate(switchboard_gateway_cluster_deliveries_total[30s]))";
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = query(&prometheus, promql).await.unwrap_or_default();
        if last.len() == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{promql}: not one series per gateway within 20 s: {last:?}");
}
