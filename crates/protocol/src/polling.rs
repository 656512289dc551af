//! Long-polling payloads: packets joined by the record separator `\x1e`;
//! binary messages are written `b` followed by their base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{BufMut, Bytes, BytesMut};

use crate::DecodeError;
use crate::engine::{Packet, Payload};

/// The record separator between packets of one payload.
pub const SEPARATOR: u8 = 0x1e;

/// Splits a POST body into packets. Stops at the first malformed record: the
/// session is closed on any error, as the reference server does.
pub fn decode_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    let mut packets = Vec::new();
    let mut start = 0;
    for end in
        body.iter().enumerate().filter_map(|(i, &b)| (b == SEPARATOR).then_some(i)).chain(std::iter::once(body.len()))
    {
        let record = body.slice(start..end);
        start = end + 1;
        packets.push(decode_record(record)?);
    }
    Ok(packets)
}

fn decode_record(record: Bytes) -> Result<Packet, DecodeError> {
    if record.first() == Some(&b'b') {
        let data = STANDARD.decode(&record[1..]).map_err(|_| DecodeError::Base64)?;
        return Ok(Packet::Message(Payload::Binary(data.into())));
    }
    Packet::decode_text(record)
}

/// Appends one encoded engine.io packet (its text form, already with the type
/// digit, or raw binary) to a payload under construction.
pub fn push_record(out: &mut BytesMut, record: Record<'_>) {
    if !out.is_empty() {
        out.put_u8(SEPARATOR);
    }
    match record {
        Record::Text(text) => out.extend_from_slice(text),
        Record::Binary(data) => {
            out.put_u8(b'b');
            let start = out.len();
            out.resize(start + base64::encoded_len(data.len(), true).unwrap_or(0), 0);
            let written = STANDARD.encode_slice(data, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
        }
    }
}

/// One record of a payload being encoded.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// A text packet including its type digit (`4hello`).
    Text(&'a [u8]),
    /// A binary message.
    Binary(&'a [u8]),
}

/// Encodes whole packets into one payload (tests and clients).
pub fn encode_payload(packets: &[Packet]) -> Bytes {
    let mut out = BytesMut::new();
    for packet in packets {
        match packet {
            Packet::Message(Payload::Binary(data)) => push_record(&mut out, Record::Binary(data)),
            other => {
                let text = other.encode_text().unwrap_or_default();
                push_record(&mut out, Record::Text(&text));
            }
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_records() {
        let body = Bytes::from_static(b"4hello\x1e2\x1ebAQID");
        let packets = decode_payload(body).unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message(Payload::Text(Bytes::from_static(b"hello"))),
                Packet::Ping { probe: false },
                Packet::Message(Payload::Binary(Bytes::from_static(&[1, 2, 3]))),
            ]
        );
    }

    #[test]
    fn empty_record_is_an_error() {
        assert_eq!(decode_payload(Bytes::from_static(b"4a\x1e")), Err(DecodeError::Empty));
        assert_eq!(decode_payload(Bytes::from_static(b"b!!")), Err(DecodeError::Base64));
    }

    #[test]
    fn encodes_records() {
        let payload = encode_payload(&[
            Packet::Message(Payload::Text(Bytes::from_static(b"hello"))),
            Packet::Message(Payload::Binary(Bytes::from_static(&[1, 2, 3]))),
            Packet::Noop,
        ]);
        assert_eq!(&payload[..], b"4hello\x1ebAQID\x1e6");
    }
}
