//! The Socket.IO v5 and Engine.IO v4 wire protocols, without I/O.
//!
//! # Layout
//!
//! - [`engine`]: Engine.IO packets (`0`–`6`), their text and binary forms.
//! - [`polling`]: long-polling payloads (packets joined by the record
//!   separator `\x1e`, binary as `b<base64>`).
//! - [`packet`]: Socket.IO packets (`CONNECT` … `BINARY_ACK`), encode and
//!   decode, with the payload validation rules of the reference parser.
//! - [`binary`]: reassembly of a binary packet from its attachments.
//! - [`session`]: the Engine.IO session state machine (heartbeat, upgrade,
//!   close), driven by packets and the current time.
//! - [`handshake`]: the handshake answer (`0{"sid":…}`) and its settings.
//!
//! Nothing here touches a socket, a clock or a runtime: callers pass bytes and
//! [`std::time::Instant`]s in and get packets, actions and typed errors out.
//! Partial or hostile input is an error variant, never a panic; the decoders
//! are fuzzed (see `fuzz/`).

pub mod binary;
pub mod engine;
pub mod handshake;
pub mod packet;
pub mod polling;
pub mod session;

mod error;

pub use error::DecodeError;
