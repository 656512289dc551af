//! The one error type of the decoders.

/// Why bytes from a peer could not be decoded. Every variant closes the
/// offending session as a parse error; none of them can crash a process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(u8),
    #[error("packet is not valid UTF-8")]
    Utf8,
    #[error("invalid base64 in a binary packet")]
    Base64,
    #[error("illegal attachments count")]
    IllegalAttachments,
    #[error("too many attachments ({0})")]
    TooManyAttachments(usize),
    #[error("invalid packet id")]
    InvalidId,
    #[error("invalid JSON payload")]
    InvalidJson,
    #[error("invalid payload for this packet type")]
    InvalidPayload,
    #[error("unexpected binary attachment")]
    UnexpectedAttachment,
    #[error("attachment placeholder out of range")]
    BadPlaceholder,
}
