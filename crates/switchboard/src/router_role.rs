//! `switchboard router`: one room router replica of a cluster
//! (docs/cluster.md). It holds a lease in Redis (`sb:routers`, with the
//! address gateways dial), serves the gRPC service `switchboard.v1.Router`
//! and the standard health service on SWITCHBOARD_GRPC_LISTEN, and the
//! admin port (`/metrics`, `/healthz`, `/readyz`) on SWITCHBOARD_ADMIN_LISTEN.
//!
//! Ready (and gRPC health `SERVING`) while it holds its lease and Redis
//! answers. On SIGTERM or Ctrl-C it hands its rooms over: not ready, it owns
//! nothing any more (publishes to it are refused `NOT_OWNER`, and gateways
//! send them to the next owner), its lease is removed so that the others
//! see the new owners at once, it keeps serving for a second while gateways
//! move, then sessions end and the process exits 0.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchboard_broker::{RedisBroker, RedisOptions, Retention};
use switchboard_router::{NodeId, Router, RouterConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::settings::Settings;
use crate::standalone::wait_for_signal;
use crate::telemetry;

/// How long each step of a shutdown may take (the gRPC server's stop, the
/// lease's removal).
const SHUTDOWN_STEP: Duration = Duration::from_secs(2);

/// How long a leaving router keeps serving after removing its lease: the
/// others read the live set every 250 ms, and a publish refused meanwhile
/// is sent again to the new owner.
const HANDOVER: Duration = Duration::from_secs(1);

/// The router's settings: the defaults, with room streams kept as long as
/// both recovery and history need them (a room's stream is its recovery log
/// and its history): SWITCHBOARD_RECOVERY_WINDOW or
/// SWITCHBOARD_HISTORY_MAX_AGE, whichever is longer, and at least
/// SWITCHBOARD_HISTORY_MAX_MESSAGES entries.
fn router_config(settings: &Settings) -> RouterConfig {
    let defaults = RouterConfig::default();
    let max_len = defaults.retention.max_len.max(settings.history_max_messages);
    let max_age = settings.recovery_window.max(settings.history_max_age);
    let mut batch = defaults.batch;
    batch.linger = settings.router_batch_linger;
    RouterConfig { retention: Retention::new(max_len, Some(max_age)), batch, ..defaults }
}

pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let id = settings.node_id_for("router");
    let id = NodeId::new(&id).map_err(|error| anyhow::anyhow!("SWITCHBOARD_NODE_ID: {error}"))?;
    let advertise = settings.grpc_advertise_address();
    let metrics = telemetry::init_metrics()?;
    switchboard_router::describe_metrics();
    switchboard_broker::redis::describe_metrics();

    // Connecting awaits nothing on Redis: a router starts while Redis is
    // down, not ready, and heals when it comes.
    let broker = RedisBroker::connect(&settings.redis_url, RedisOptions::default())
        .await
        .map_err(|error| anyhow::anyhow!("SWITCHBOARD_REDIS_URL: {error}"))?;
    let grpc_listener = TcpListener::bind(settings.grpc_listen)
        .await
        .with_context(|| format!("SWITCHBOARD_GRPC_LISTEN: cannot listen on {}", settings.grpc_listen))?;
    let admin_listener = TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("SWITCHBOARD_ADMIN_LISTEN: cannot listen on {}", settings.admin_listen))?;

    let router = Router::new(id, advertise.clone(), Arc::new(broker), router_config(&settings));
    let readiness = Readiness::default();
    let shutdown = CancellationToken::new();
    let leave = CancellationToken::new();

    let admin_app = admin::router(metrics, readiness.clone());
    let admin_task = tokio::spawn(switchboard_gateway::serve(admin_listener, admin_app, shutdown.clone()));
    let running = tokio::spawn({
        let router = router.clone();
        let leave = leave.clone();
        async move { router.run(leave.cancelled_owned()).await }
    });
    let ready = readiness.clone();
    let mut grpc_task = tokio::spawn(switchboard_router::grpc::serve(
        router.clone(),
        grpc_listener,
        shutdown.clone(),
        move |healthy| ready.set(healthy),
    ));
    tracing::info!(
        id = %router.id(),
        grpc = %settings.grpc_listen,
        advertise,
        admin = %settings.admin_listen,
        "switchboard router is listening"
    );

    let failed = tokio::select! {
        () = wait_for_signal() => None,
        served = &mut grpc_task => Some(match served {
            Ok(Ok(())) => anyhow::anyhow!("the gRPC server stopped"),
            Ok(Err(error)) => anyhow::Error::new(error).context("the gRPC server failed"),
            Err(error) => anyhow::Error::new(error).context("the gRPC server panicked"),
        }),
    };
    tracing::info!("shutting down: handing the rooms over");
    readiness.set(false);
    // Hand over first: own nothing (publishes are refused NOT_OWNER and go
    // to the next owner), remove the lease so that everyone sees the new
    // owners at their next read, and keep serving while the gateways move.
    router.retire();
    leave.cancel();
    match tokio::time::timeout(SHUTDOWN_STEP, running).await {
        Ok(Ok(Ok(()))) => tracing::info!("lease removed"),
        Ok(Ok(Err(error))) => tracing::warn!(%error, "the lease could not be removed; it ends by itself"),
        Ok(Err(error)) => tracing::warn!(%error, "the router task failed"),
        Err(_) => tracing::warn!("removing the lease took too long; it ends by itself"),
    }
    if failed.is_none() {
        tokio::time::sleep(HANDOVER).await;
    }
    shutdown.cancel();
    if failed.is_none() && tokio::time::timeout(SHUTDOWN_STEP, &mut grpc_task).await.is_err() {
        tracing::warn!("the gRPC server did not stop in time");
        grpc_task.abort();
    }
    let _ = tokio::time::timeout(SHUTDOWN_STEP, admin_task).await;
    match failed {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
