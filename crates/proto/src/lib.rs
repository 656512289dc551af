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
//! - Stream entries: each entry of a room's stream (`sb:room:<nsp>:<room>`)
//!   or a namespace's (`sb:nsp:<nsp>`) is one [`v1::Delivery`], stamps empty;
//!   read it with [`decode_entry`] and [`v1::Delivery::entry_packet`], which
//!   writes the entry id into a kept message that has an `id_field`.
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

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;
use serde_json::value::RawValue;

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

    /// This packet with the string `value` written into its first argument
    /// under `field` (replacing what was there), attachments unchanged:
    /// how a kept message gets its id, the id of its stream entry. `None`
    /// when the first argument is not a JSON object (or `args_json` is not
    /// a JSON array).
    ///
    /// Only the first argument is parsed; the others are copied as they are.
    pub fn with_field(&self, field: &str, value: &str) -> Option<v1::Packet> {
        let args = self.args_array();
        let args: Vec<&RawValue> = serde_json::from_slice(&args).ok()?;
        let (first, rest) = args.split_first()?;
        let mut object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(first.get()).ok()?;
        object.insert(field.to_owned(), serde_json::Value::String(value.to_owned()));
        let rest_len: usize = rest.iter().map(|arg| arg.get().len() + 1).sum();
        let mut out = BytesMut::with_capacity(self.args_json.len() + field.len() + value.len() + 8 + rest_len).writer();
        out.get_mut().put_u8(b'[');
        // Writing a `Map` of `Value`s into memory cannot fail.
        serde_json::to_writer(&mut out, &object).ok()?;
        for arg in rest {
            out.get_mut().put_u8(b',');
            out.get_mut().put_slice(arg.get().as_bytes());
        }
        out.get_mut().put_u8(b']');
        Some(v1::Packet {
            event: self.event.clone(),
            args_json: out.into_inner().freeze(),
            attachments: self.attachments.clone(),
        })
    }
}

/// Decodes one stream entry's bytes (a room's or a namespace's stream) into
/// the [`v1::Delivery`] the owning router appended. The `bytes` fields (the
/// packet's arguments and attachments) share `data`'s buffer. Untrusted
/// bytes give an error, never a panic.
pub fn decode_entry(data: &Bytes) -> Result<v1::Delivery, prost::DecodeError> {
    v1::Delivery::decode(data.clone())
}

impl v1::Delivery {
    /// The packet of a stream entry as it is delivered, for the entry of id
    /// `entry_id`: with the id written into the first argument under
    /// `id_field` when the entry has one (a kept message published with
    /// `Publish.id_field`), otherwise the packet as stored. `None` when the
    /// entry has no packet, or has an `id_field` and its first argument is
    /// not an object (not something a router appends).
    pub fn entry_packet(&self, entry_id: &str) -> Option<v1::Packet> {
        let packet = self.packet.as_ref()?;
        if self.id_field.is_empty() { Some(packet.clone()) } else { packet.with_field(&self.id_field, entry_id) }
    }
}
