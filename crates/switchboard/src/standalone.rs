//! The standalone server: one process, the in-memory broker, the chat on
//! `/`, `/chat` and `/notifications`, the server API, and the admin port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use switchboard_auth::Authenticator;
use switchboard_broker::MemoryBroker;
use switchboard_chat::{Chat, ChatConfig};
use switchboard_gateway::{Gateway, GatewayBuilder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::settings::Settings;
use crate::telemetry;

/// How long open sessions get to close on shutdown.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let config = settings.gateway_config()?;
    let auth = authenticator(&settings)?;
    let metrics = telemetry::init_metrics()?;

    let chat = Chat::new(chat_config(&settings), Arc::new(MemoryBroker::new()));
    let builder = dynamic_namespaces(&settings, &chat, chat.mount(Gateway::builder(config, auth)))?;
    let gateway = builder.build();
    let app = gateway.router().merge(chat.api_router(gateway.clone(), settings.api_key.clone()));

    let (listener, admin_listener) = bind(&settings).await?;
    let readiness = Readiness::default();
    let shutdown = CancellationToken::new();

    let admin_app = admin::router(metrics, readiness.clone());
    let admin_task = tokio::spawn(switchboard_gateway::serve(admin_listener, admin_app, shutdown.clone()));
    let server = tokio::spawn(switchboard_gateway::serve(listener, app, shutdown.clone()));
    readiness.set(true);
    tracing::info!(
        listen = %settings.listen,
        admin = %settings.admin_listen,
        path = %gateway.config().path,
        api = settings.api_key.is_some(),
        "switchboard standalone is listening"
    );

    wait_for_signal().await;
    tracing::info!("shutting down");
    readiness.set(false);
    gateway.shutdown();
    shutdown.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, gateway.drained()).await.is_err() {
        tracing::warn!("sessions still open after the grace period");
    }
    let _ = server.await;
    let _ = admin_task.await;
    Ok(())
}

/// Namespaces created on first CONNECT when SWITCHBOARD_DYNAMIC_NAMESPACES
/// matches them, with the chat mounted.
pub(crate) fn dynamic_namespaces(
    settings: &Settings,
    chat: &Arc<Chat>,
    builder: GatewayBuilder,
) -> anyhow::Result<GatewayBuilder> {
    let Some(pattern) = &settings.dynamic_namespaces else { return Ok(builder) };
    let regex = regex::Regex::new(pattern).context("SWITCHBOARD_DYNAMIC_NAMESPACES: not a valid regular expression")?;
    let handler = chat.chat_handler();
    Ok(builder.dynamic_namespaces(Box::new(move |name| regex.is_match(name).then(|| handler.clone()))))
}

/// The client listener (SWITCHBOARD_LISTEN) and the admin one.
pub(crate) async fn bind(settings: &Settings) -> anyhow::Result<(TcpListener, TcpListener)> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("SWITCHBOARD_LISTEN: cannot listen on {}", settings.listen))?;
    let admin_listener = TcpListener::bind(settings.admin_listen)
        .await
        .with_context(|| format!("SWITCHBOARD_ADMIN_LISTEN: cannot listen on {}", settings.admin_listen))?;
    Ok((listener, admin_listener))
}

pub(crate) fn authenticator(settings: &Settings) -> anyhow::Result<Authenticator> {
    let config = settings.auth_config();
    if !Authenticator::is_configured(&config) && !config.allow_anonymous {
        // Closed by default, yet a newcomer's first run works: a secret for
        // this run only, and a token to try it with.
        let (auth, token) = Authenticator::demo();
        println!("No authentication configured: using a random HS256 secret for this run.");
        println!("demo token: {token}");
        println!(
            "(set SWITCHBOARD_JWT_SECRET, SWITCHBOARD_JWT_PUBLIC_KEY_FILE or SWITCHBOARD_JWKS_FILE for real tokens)"
        );
        return Ok(auth);
    }
    let auth = Authenticator::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    if auth.is_anonymous() {
        tracing::warn!(
            "SWITCHBOARD_ALLOW_ANONYMOUS=true: sockets connect WITHOUT authentication; every socket gets an anonymous identity. Never use this in production."
        );
    } else {
        tracing::info!(auth = %auth.describe(), "authentication");
    }
    Ok(auth)
}

pub(crate) fn chat_config(settings: &Settings) -> ChatConfig {
    ChatConfig {
        presence_broadcast: settings.presence_broadcast,
        presence_on_connect: settings.presence_on_connect,
        presence_interval: settings.presence_interval,
        announce_roles: settings
            .announce_roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        history_on_join: settings.history_on_join,
        history_max_messages: settings.history_max_messages,
        history_max_age: settings.history_max_age,
    }
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
