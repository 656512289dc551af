//! `switchboard router` as a process: against a private Redis it registers
//! in `sb:routers` with its advertised address, answers gRPC health and
//! `/readyz`, and on SIGTERM removes its lease and exits 0.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_broker::{Broker, RedisBroker, RedisOptions};
use switchboard_testkit::{RedisServer, eventually, http};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const WAIT: Duration = Duration::from_secs(10);

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The router process; killed if the test ends without stopping it.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn health(grpc: SocketAddr) -> Option<i32> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{grpc}")).unwrap();
    let channel = endpoint.connect().await.ok()?;
    let request = HealthCheckRequest { service: "switchboard.v1.Router".into() };
    Some(HealthClient::new(channel).check(request).await.ok()?.into_inner().status)
}

async fn ready(admin: SocketAddr) -> Option<u16> {
    tokio::net::TcpStream::connect(admin).await.ok()?;
    Some(http::request(admin, "GET", "/readyz", &[], None).await.status)
}

#[tokio::test]
async fn the_router_serves_health_and_readiness_and_leaves_on_sigterm() {
    let redis = RedisServer::start();
    let (grpc_port, admin_port) = (free_port(), free_port());
    let grpc = SocketAddr::from(([127, 0, 0, 1], grpc_port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("router")
        .env("SWITCHBOARD_REDIS_URL", redis.url())
        .env("SWITCHBOARD_GRPC_LISTEN", grpc.to_string())
        .env("SWITCHBOARD_ADMIN_LISTEN", admin.to_string())
        .env("SWITCHBOARD_NODE_ID", "router-test")
        .env("SWITCHBOARD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let mut process = Process(child);

    eventually("gRPC health SERVING", WAIT, || async {
        (health(grpc).await == Some(ServingStatus::Serving as i32)).then_some(())
    })
    .await;
    eventually("/readyz 200", WAIT, || async { (ready(admin).await == Some(200)).then_some(()) }).await;
    let metrics = http::request(admin, "GET", "/metrics", &[], None).await;
    assert_eq!(metrics.status, 200);
    let broker = RedisBroker::connect(&redis.url(), RedisOptions::default()).await.unwrap();
    let leases = broker.lease_members("sb:routers").await.unwrap();
    assert_eq!(leases, vec![format!("router-test|127.0.0.1:{grpc_port}")], "registered with its advertised address");

    let pid = process.0.id();
    let signalled = Command::new("sh").arg("-c").arg(format!("kill -TERM {pid}")).status().unwrap();
    assert!(signalled.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed() < WAIT, "still running {WAIT:?} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(stopped.elapsed() < Duration::from_secs(5), "stopped after {:?}", stopped.elapsed());
    assert!(broker.lease_members("sb:routers").await.unwrap().is_empty(), "the lease is removed");
}

#[test]
fn a_bad_node_id_stops_the_process_with_a_message_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("router")
        .env("SWITCHBOARD_NODE_ID", "not valid!")
        .env("SWITCHBOARD_GRPC_LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD_ADMIN_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SWITCHBOARD_NODE_ID"), "{stderr}");
}
