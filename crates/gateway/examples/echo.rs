//! A minimal gateway: every event is echoed back to its sender (and its ack
//! answered with the same arguments). Anyone may connect.
//!
//! `cargo run -p switchboard-gateway --example echo` then connect a
//! socket.io client to http://127.0.0.1:3000.

use std::sync::Arc;

use switchboard_auth::Authenticator;
use switchboard_gateway::{BoxFuture, Config, Event, Gateway, Handler, Socket};

struct Echo;

impl Handler for Echo {
    fn on_event<'a>(&'a self, socket: &'a Arc<Socket>, event: Event) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match event.ack {
                Some(id) => socket.ack_binary(id, &event.args, &event.attachments),
                None => socket.emit_binary(&event.name, &event.args, &event.attachments),
            }
        })
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::var("ECHO_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let gateway =
        Gateway::builder(Config::default(), Authenticator::anonymous()).namespace("/", Arc::new(Echo)).build();
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echo gateway on http://{addr}");
    switchboard_gateway::serve(listener, gateway.router(), tokio_util::sync::CancellationToken::new()).await
}
