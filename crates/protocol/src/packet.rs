//! Socket.IO v5 packets: `<type>[<attachments>-][<nsp>,][<id>][<json>]`.
//!
//! Decoding follows the reference parser (`socket.io-parser` 4.x): the same
//! field order, the same payload validation per type, and reserved event
//! names refused. Encoding writes the engine.io `4` digit first so a packet
//! becomes a WebSocket frame or polling record without another copy.

use serde_json::Value;

use crate::DecodeError;

/// The packet types of Socket.IO v5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketKind {
    fn from_digit(digit: u8) -> Result<Self, DecodeError> {
        Ok(match digit {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            other => return Err(DecodeError::UnknownType(other)),
        })
    }

    /// The digit on the wire.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Whether binary attachments follow this packet.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// Event names a client may not emit: the server's own lifecycle events.
pub const RESERVED_EVENTS: &[&str] =
    &["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// One Socket.IO packet, with its JSON data parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketKind,
    /// The namespace, `/` when absent on the wire.
    pub nsp: String,
    /// The acknowledgement id.
    pub id: Option<u64>,
    /// For binary packets: how many binary attachments follow.
    pub attachments: usize,
    /// The JSON data; binary attachments appear as placeholders.
    pub data: Option<Value>,
}

impl Packet {
    /// A packet of this kind with no id and no data.
    pub fn new(kind: PacketKind, nsp: impl Into<String>) -> Self {
        Self { kind, nsp: nsp.into(), id: None, attachments: 0, data: None }
    }

    /// Decodes the text of an engine.io message (without its `4`).
    ///
    /// `max_attachments` bounds the attachments a binary packet may announce,
    /// so a peer cannot make the server wait for (and buffer) a million.
    pub fn decode(text: &[u8], max_attachments: usize) -> Result<Packet, DecodeError> {
        let text = std::str::from_utf8(text).map_err(|_| DecodeError::Utf8)?;
        let bytes = text.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(DecodeError::Empty);
        };
        let kind = PacketKind::from_digit(first)?;
        let mut i = 1;

        let mut attachments = 0;
        if kind.is_binary() {
            let dash = bytes[i..].iter().position(|&b| b == b'-').ok_or(DecodeError::IllegalAttachments)?;
            let digits = &text[i..i + dash];
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DecodeError::IllegalAttachments);
            }
            attachments = digits.parse().map_err(|_| DecodeError::IllegalAttachments)?;
            if attachments > max_attachments {
                return Err(DecodeError::TooManyAttachments(attachments));
            }
            i += dash + 1;
        }

        let mut nsp = "/";
        if bytes.get(i) == Some(&b'/') {
            let end = bytes[i..].iter().position(|&b| b == b',').map_or(bytes.len(), |p| i + p);
            nsp = &text[i..end];
            i = (end + 1).min(bytes.len());
        }

        let mut id = None;
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 0 {
            // The reference client counts ids up from 0; 15 digits keep us far
            // from overflow while refusing absurd values.
            if digits > 15 {
                return Err(DecodeError::InvalidId);
            }
            id = Some(text[i..i + digits].parse().map_err(|_| DecodeError::InvalidId)?);
            i += digits;
        }

        let data = if i < bytes.len() {
            Some(serde_json::from_str::<Value>(&text[i..]).map_err(|_| DecodeError::InvalidJson)?)
        } else {
            None
        };
        if !payload_is_valid(kind, data.as_ref()) {
            return Err(DecodeError::InvalidPayload);
        }
        Ok(Packet { kind, nsp: nsp.to_owned(), id, attachments, data })
    }

    /// Appends the wire form, preceded by the engine.io `4`, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        write_header(out, self.kind, self.attachments, &self.nsp, self.id);
        if let Some(data) = &self.data {
            // Writing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, data);
        }
    }

    /// The wire form with the engine.io `4` (tests and clients).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// For events: the event name, the first element of the data array.
    pub fn event_name(&self) -> Option<&str> {
        match (&self.kind, &self.data) {
            (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(items))) => items.first()?.as_str(),
            _ => None,
        }
    }
}

/// Writes `4<type>[<n>-][<nsp>,][<id>]`: everything before the JSON data.
pub fn write_header(out: &mut Vec<u8>, kind: PacketKind, attachments: usize, nsp: &str, id: Option<u64>) {
    out.push(b'4');
    out.push(kind.digit());
    if kind.is_binary() {
        out.extend_from_slice(attachments.to_string().as_bytes());
        out.push(b'-');
    }
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
}

/// The validation of `socket.io-parser`'s `isPayloadValid`.
fn payload_is_valid(kind: PacketKind, data: Option<&Value>) -> bool {
    match kind {
        PacketKind::Connect => matches!(data, None | Some(Value::Object(_))),
        PacketKind::Disconnect => data.is_none(),
        PacketKind::ConnectError => matches!(data, Some(Value::String(_) | Value::Object(_))),
        PacketKind::Event | PacketKind::BinaryEvent => match data {
            Some(Value::Array(items)) => match items.first() {
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                Some(Value::Number(_)) => true,
                _ => false,
            },
            _ => false,
        },
        PacketKind::Ack | PacketKind::BinaryAck => matches!(data, Some(Value::Array(_))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decode(s: &str) -> Result<Packet, DecodeError> {
        Packet::decode(s.as_bytes(), 10)
    }

    #[test]
    fn decodes_connect_with_auth() {
        let p = decode(r#"0/admin,{"token":"abc"}"#).unwrap();
        assert_eq!(p.kind, PacketKind::Connect);
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.data, Some(json!({"token": "abc"})));
        assert_eq!(decode("0").unwrap().nsp, "/");
    }

    #[test]
    fn decodes_event_with_id() {
        let p = decode(r#"212["hello",1]"#).unwrap();
        assert_eq!(p.id, Some(12));
        assert_eq!(p.event_name(), Some("hello"));
        let p = decode(r#"2/chat,3["a"]"#).unwrap();
        assert_eq!((p.nsp.as_str(), p.id), ("/chat", Some(3)));
    }

    #[test]
    fn decodes_binary_event() {
        let p = decode(r#"51-["up",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert_eq!(p.attachments, 1);
        let p = decode(r#"61-/chat,4[{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!((p.kind, p.nsp.as_str(), p.id), (PacketKind::BinaryAck, "/chat", Some(4)));
    }

    #[test]
    fn refuses_what_the_reference_parser_refuses() {
        assert_eq!(decode("2[\"connect\"]"), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("2{}"), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("2[]"), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("2[\"a\""), Err(DecodeError::InvalidJson));
        assert_eq!(decode("1{}"), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("3{}"), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("0[]"), Err(DecodeError::InvalidPayload));
        assert_eq!(decode("5a-[\"a\"]"), Err(DecodeError::IllegalAttachments));
        assert_eq!(decode("5[\"a\"]"), Err(DecodeError::IllegalAttachments));
        assert_eq!(decode("511-[\"a\"]"), Err(DecodeError::TooManyAttachments(11)));
        assert_eq!(decode("9"), Err(DecodeError::UnknownType(b'9')));
        assert_eq!(decode(""), Err(DecodeError::Empty));
        assert_eq!(decode("21234567890123456[\"a\"]"), Err(DecodeError::InvalidId));
    }

    #[test]
    fn numbers_survive_a_round_trip() {
        // Found by fuzz/socket_packet: with serde_json's default (not
        // correctly rounded) float parsing, this integer beyond u64 decoded to
        // 9.528616652861661e19, which encoded and decoded one ULP away.
        let p = decode("2[95286166528616616666]").unwrap();
        assert_eq!(Packet::decode(&p.encode()[1..], 10), Ok(p));
        // A double written by a JavaScript client is read exactly, so relaying
        // it does not change its value.
        let p = decode("2[1.602176634e-19]").unwrap();
        assert_eq!(p.data, Some(json!([1.602176634e-19_f64])));
        assert_eq!(p.encode(), b"42[1.602176634e-19]");
    }

    #[test]
    fn encodes_like_the_reference() {
        let mut p = Packet::new(PacketKind::Event, "/");
        p.data = Some(json!(["hello", {"a": 1}]));
        assert_eq!(p.encode(), br#"42["hello",{"a":1}]"#);
        p.nsp = "/chat".into();
        p.id = Some(7);
        assert_eq!(p.encode(), br#"42/chat,7["hello",{"a":1}]"#);
        let mut ack = Packet::new(PacketKind::BinaryAck, "/");
        ack.id = Some(0);
        ack.attachments = 2;
        ack.data = Some(json!([]));
        assert_eq!(ack.encode(), b"462-0[]");
        assert_eq!(Packet::new(PacketKind::Disconnect, "/").encode(), b"41");
    }
}
