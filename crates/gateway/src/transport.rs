//! The two transports: a WebSocket held by one task ([`ws`]), and HTTP
//! long-polling requests ([`polling`]). Both drive the same
//! [`crate::engine::EngineConn`].

pub(crate) mod polling;
pub(crate) mod ws;
pub(crate) mod ws_codec;
