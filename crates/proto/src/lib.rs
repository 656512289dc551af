//! The gRPC contract of Switchboard's cluster, generated from `proto/` at
//! the root of the repository (`proto/README.md` describes it).
//!
//! - [`v1::router_server`] and [`v1::router_client`]: the `Router` service,
//!   gateway to room router: one `Session` stream per (gateway, router)
//!   pair for memberships, presence and publishes, and unary calls for
//!   presence and history.
//! - [`v1::ChannelMessage`]: what is published on a gateway's Redis channel
//!   `sb:gw:<id>`: batched deliveries from the routers and commands (join,
//!   leave, disconnect, targeted emits) with their replies. Not gRPC, but
//!   protobuf all the same: encode with [`prost::Message::encode_to_vec`],
//!   decode with [`prost::Message::decode`] (from a [`bytes::Bytes`], the
//!   `bytes` fields share its buffer instead of copying it).
//! - [`v1::server_api_server`] and [`v1::server_api_client`]: the
//!   `ServerApi` service, the HTTP server API of docs/api.md over gRPC, for
//!   backends, behind the API key.
//!
//! Health checks use `tonic-health` (the standard `grpc.health.v1`
//! service), not a service of this contract.
//!
//! The code is generated at build time by `tonic-prost-build` with the
//! `protoc` binary of `protoc-bin-vendored`: no system `protoc` is needed.

/// The generated messages and services of package `switchboard.v1`.
pub mod v1 {
    tonic::include_proto!("switchboard.v1");
}

pub use prost;
pub use tonic;

use bytes::Bytes;

/// The revision of the contract this crate speaks, sent in `Hello` and
/// `Welcome`. A new revision only adds messages, oneof cases or fields; a
/// peer uses what the lower of the two revisions has.
pub const REVISION: u32 = 1;

impl v1::Packet {
    /// A packet of `event` with `args`, encoded as the JSON array of
    /// `args_json`, without attachments.
    pub fn from_json(event: impl Into<String>, args: &[serde_json::Value]) -> Self {
        // Serializing `Value`s cannot fail: their map keys are strings.
        let args_json = serde_json::to_vec(args).unwrap_or_else(|_| b"[]".to_vec());
        Self { event: event.into(), args_json: Bytes::from(args_json), attachments: Vec::new() }
    }

    /// The JSON array of the arguments: `args_json`, or `[]` when it is
    /// empty (as the contract reads empty bytes).
    pub fn args_array(&self) -> Bytes {
        if self.args_json.is_empty() { Bytes::from_static(b"[]") } else { self.args_json.clone() }
    }
}
