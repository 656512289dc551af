//! `switchboard gateway`: a cluster gateway. It holds client connections
//! and its local room index; broadcasts go through the owning routers
//! (found in Redis), deliveries come back on its Redis channel, sessions are
//! kept in Redis for recovery on any gateway, and requests for another
//! gateway's sessions are forwarded to it (docs/cluster.md).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchboard_broker::{RedisBroker, RedisOptions};
use switchboard_chat::Chat;
use switchboard_cluster::{ClusterConfig, Link};
use switchboard_gateway::{Gateway, Peers, SidSigner};
use switchboard_router::GatewayId;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::settings::Settings;
use crate::standalone::{SHUTDOWN_GRACE, authenticator, bind, chat_config, dynamic_namespaces, wait_for_signal};
use crate::telemetry;

/// The other gateways' addresses, from the live set the link follows.
struct LinkPeers(Link);

impl Peers for LinkPeers {
    fn address(&self, gateway_id: &str) -> Option<String> {
        self.0.gateway_address(gateway_id)
    }
}

pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let config = settings.gateway_config()?;
    let auth = authenticator(&settings)?;
    let metrics = telemetry::init_metrics()?;
    let secret = settings
        .cluster_secret
        .clone()
        .filter(|secret| !secret.is_empty())
        .context("SWITCHBOARD_CLUSTER_SECRET is required by `switchboard gateway` (the same on every gateway)")?;
    let id = settings.node_id_for("gateway");
    let gateway_id = GatewayId::new(&id).map_err(|e| anyhow::anyhow!("SWITCHBOARD_NODE_ID: {e}"))?;
    let signer = SidSigner::try_new(&id, secret.as_bytes()).map_err(|e| anyhow::anyhow!("SWITCHBOARD_NODE_ID: {e}"))?;
    let broker = RedisBroker::connect(&settings.redis_url, RedisOptions::default())
        .await
        .map_err(|e| anyhow::anyhow!("SWITCHBOARD_REDIS_URL: {e}"))?;
    let broker = Arc::new(broker);

    let mut cluster = ClusterConfig::new(gateway_id, settings.advertise_address());
    cluster.recovery_window = settings.recovery_window;
    let link = Link::new(cluster, broker.clone());

    let chat = Chat::new(chat_config(&settings), broker.clone());
    let builder = chat
        .mount(Gateway::builder(config, auth))
        .link(Arc::new(link.clone()))
        .cluster(signer, Arc::new(LinkPeers(link.clone())));
    let builder = dynamic_namespaces(&settings, &chat, builder)?;
    let gateway = builder.build();
    link.attach(gateway.clone());
    chat.follow_presence(&gateway);
    let app = gateway.router().merge(chat.api_router(gateway.clone(), settings.api_key.clone()));

    let (listener, admin_listener) = bind(&settings).await?;
    let readiness = Readiness::default();
    let shutdown = CancellationToken::new();
    let link_stop = CancellationToken::new();

    let admin_task = tokio::spawn(switchboard_gateway::serve(
        admin_listener,
        admin::router(metrics, readiness.clone()),
        shutdown.clone(),
    ));
    let server = tokio::spawn(switchboard_gateway::serve(listener, app, shutdown.clone()));
    let link_task = tokio::spawn({
        let link = link.clone();
        let stop = link_stop.clone();
        async move { link.run(stop).await }
    });
    // Ready while the lease is held and a router session is up.
    let watch = tokio::spawn({
        let (link, readiness) = (link.clone(), readiness.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                readiness.set(link.ready());
            }
        }
    });
    tracing::info!(
        id = %link.gateway_id(),
        listen = %settings.listen,
        advertise = %settings.advertise_address(),
        admin = %settings.admin_listen,
        redis = %settings.redis_url,
        "switchboard gateway is listening"
    );

    wait_for_signal().await;
    // Not ready first (the load balancer stops sending new clients), then
    // the sessions close gradually and their clients resume elsewhere.
    tracing::info!(period = ?settings.drain_period, "draining");
    let started = std::time::Instant::now();
    readiness.set(false);
    watch.abort();
    gateway.drain(settings.drain_period).await;
    shutdown.cancel();
    gateway.shutdown();
    if tokio::time::timeout(SHUTDOWN_GRACE, gateway.drained()).await.is_err() {
        tracing::warn!("sessions still open after the grace period");
    }
    tracing::info!(took = ?started.elapsed(), "drained");
    // Sessions were kept for recovery while closing; now the lease goes.
    link_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(3), link_task).await;
    let _ = server.await;
    let _ = admin_task.await;
    Ok(())
}
