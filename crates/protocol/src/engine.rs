//! Engine.IO v4 packets.
//!
//! A packet is one type digit followed by its data. Over WebSocket a text
//! frame carries one packet; a binary frame is always a `message` with binary
//! data and carries no type digit. Over polling see [`crate::polling`].

use bytes::Bytes;

use crate::DecodeError;

/// The data of a `message` packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// UTF-8 text, without the type digit.
    Text(Bytes),
    /// Raw binary.
    Binary(Bytes),
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0` with the handshake JSON.
    Open(Bytes),
    /// `1`.
    Close,
    /// `2`, or `2probe` during an upgrade.
    Ping { probe: bool },
    /// `3`, or `3probe` during an upgrade.
    Pong { probe: bool },
    /// `4` and text, or a binary frame.
    Message(Payload),
    /// `5`.
    Upgrade,
    /// `6`.
    Noop,
}

impl Packet {
    /// Decodes a text packet (a WebSocket text frame or one polling record).
    pub fn decode_text(text: Bytes) -> Result<Packet, DecodeError> {
        let Some(&first) = text.first() else {
            return Err(DecodeError::Empty);
        };
        let rest = text.slice(1..);
        let probe = match rest.as_ref() {
            b"" => false,
            b"probe" => true,
            _ => !matches!(first, b'2' | b'3'),
        };
        Ok(match first {
            b'0' => Packet::Open(rest),
            b'1' => Packet::Close,
            b'2' if probe || rest.is_empty() => Packet::Ping { probe },
            b'3' if probe || rest.is_empty() => Packet::Pong { probe },
            // Pings and pongs carry no data other than `probe`; anything else
            // is a malformed packet.
            b'2' | b'3' => return Err(DecodeError::InvalidPayload),
            b'4' => {
                std::str::from_utf8(&rest).map_err(|_| DecodeError::Utf8)?;
                Packet::Message(Payload::Text(rest))
            }
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            other => return Err(DecodeError::UnknownType(other)),
        })
    }

    /// A WebSocket binary frame: always a binary `message`.
    pub fn decode_binary(data: Bytes) -> Packet {
        Packet::Message(Payload::Binary(data))
    }

    /// The text form (`4hello`, `2probe`, …). Binary messages have none; use
    /// [`crate::polling`] to put them in a polling payload.
    pub fn encode_text(&self) -> Option<Bytes> {
        let fixed: &'static [u8] = match self {
            Packet::Open(json) => return Some(prefixed(b'0', json)),
            Packet::Close => b"1",
            Packet::Ping { probe: false } => b"2",
            Packet::Ping { probe: true } => b"2probe",
            Packet::Pong { probe: false } => b"3",
            Packet::Pong { probe: true } => b"3probe",
            Packet::Message(Payload::Text(text)) => return Some(prefixed(b'4', text)),
            Packet::Message(Payload::Binary(_)) => return None,
            Packet::Upgrade => b"5",
            Packet::Noop => b"6",
        };
        Some(Bytes::from_static(fixed))
    }
}

fn prefixed(digit: u8, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(digit);
    out.extend_from_slice(data);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> Result<Packet, DecodeError> {
        Packet::decode_text(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn decodes_every_type() {
        assert_eq!(text("1"), Ok(Packet::Close));
        assert_eq!(text("2"), Ok(Packet::Ping { probe: false }));
        assert_eq!(text("2probe"), Ok(Packet::Ping { probe: true }));
        assert_eq!(text("3probe"), Ok(Packet::Pong { probe: true }));
        assert_eq!(text("4hello"), Ok(Packet::Message(Payload::Text(Bytes::from_static(b"hello")))));
        assert_eq!(text("5"), Ok(Packet::Upgrade));
        assert_eq!(text("6"), Ok(Packet::Noop));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(text(""), Err(DecodeError::Empty));
        assert_eq!(text("9"), Err(DecodeError::UnknownType(b'9')));
        assert_eq!(text("2garbage["), Err(DecodeError::InvalidPayload));
        assert_eq!(Packet::decode_text(Bytes::from_static(b"4\xff")), Err(DecodeError::Utf8));
    }

    #[test]
    fn encodes_text_forms() {
        let hello = Packet::Message(Payload::Text(Bytes::from_static(b"hello")));
        assert_eq!(hello.encode_text().as_deref(), Some(&b"4hello"[..]));
        assert_eq!(Packet::Ping { probe: true }.encode_text().as_deref(), Some(&b"2probe"[..]));
        assert_eq!(Packet::Noop.encode_text().as_deref(), Some(&b"6"[..]));
        let binary = Packet::Message(Payload::Binary(Bytes::from_static(b"\x01")));
        assert_eq!(binary.encode_text(), None);
    }
}
