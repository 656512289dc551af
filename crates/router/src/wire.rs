//! The bytes a router writes, in the protobuf of the gRPC contract
//! (`proto/switchboard/v1/router.proto`, crate `switchboard-proto`):
//!
//! - a stream entry (`XADD` to `sb:room:<nsp>:<room>` or `sb:nsp:<nsp>`) is
//!   one [`v1::Delivery`] with its stamps empty (the entry id is its
//!   offset): [`encode_entry`]; readers decode it with
//!   [`switchboard_proto::decode_entry`];
//! - what is published on a gateway's channel `sb:gw:<id>` is one
//!   [`v1::ChannelMessage`] whose case is a [`v1::DeliveryBatch`]
//!   (`request_id` 0, no `reply_to`): [`encode_batch`], read back with
//!   [`decode_batch`].
//!
//! One broadcast reaches many gateways, so its delivery is encoded once
//! ([`encode_delivery`]) and each batch is put together from the encoded
//! deliveries it carries, byte for byte what prost would encode for the
//! whole message. Decoding takes untrusted bytes and returns a typed error,
//! never a panic.

use bytes::{BufMut, Bytes, BytesMut};
use switchboard_proto::prost::Message as _;
use switchboard_proto::v1;

use crate::RouterError;

/// `ChannelMessage.deliveries`.
const CHANNEL_DELIVERIES: u32 = 3;
/// `DeliveryBatch.router_id`.
const BATCH_ROUTER_ID: u32 = 1;
/// `DeliveryBatch.deliveries`.
const BATCH_DELIVERIES: u32 = 2;
/// The wire type of strings, bytes and messages.
const LENGTH_DELIMITED: u32 = 2;

/// A stream entry: `delivery` as appended (the caller leaves its stamps
/// empty).
pub fn encode_entry(delivery: &v1::Delivery) -> Bytes {
    Bytes::from(delivery.encode_to_vec())
}

/// One delivery, encoded once for every batch that carries it.
pub fn encode_delivery(delivery: &v1::Delivery) -> Bytes {
    Bytes::from(delivery.encode_to_vec())
}

/// The `ChannelMessage{deliveries: DeliveryBatch{router_id, deliveries}}`
/// of deliveries encoded by [`encode_delivery`], in order.
pub fn encode_batch<'a>(router_id: &str, deliveries: impl IntoIterator<Item = &'a Bytes> + Clone) -> Bytes {
    let field_len = |tag: u32, len: usize| varint_len(u64::from(tag << 3)) + varint_len(len as u64) + len;
    let mut batch_len = if router_id.is_empty() { 0 } else { field_len(BATCH_ROUTER_ID, router_id.len()) };
    batch_len +=
        deliveries.clone().into_iter().map(|delivery| field_len(BATCH_DELIVERIES, delivery.len())).sum::<usize>();
    let mut out = BytesMut::with_capacity(field_len(CHANNEL_DELIVERIES, batch_len));
    put_field(&mut out, CHANNEL_DELIVERIES, batch_len);
    // proto3 leaves an empty string out, as prost does.
    if !router_id.is_empty() {
        put_field(&mut out, BATCH_ROUTER_ID, router_id.len());
        out.put_slice(router_id.as_bytes());
    }
    for delivery in deliveries {
        put_field(&mut out, BATCH_DELIVERIES, delivery.len());
        out.put_slice(delivery);
    }
    out.freeze()
}

/// The batch of a message published on a gateway's channel; an error for
/// bytes that do not decode or a message that is not a batch. The `bytes`
/// fields share `message`'s buffer.
pub fn decode_batch(message: &Bytes) -> Result<v1::DeliveryBatch, RouterError> {
    let decoded = v1::ChannelMessage::decode(message.clone()).map_err(|e| RouterError::Malformed(e.to_string()))?;
    match decoded.message {
        Some(v1::channel_message::Message::Deliveries(batch)) => Ok(batch),
        Some(_) => Err(RouterError::Malformed("a channel message that is not a delivery batch".to_owned())),
        None => Err(RouterError::Malformed("an empty channel message".to_owned())),
    }
}

/// The key and length of a length-delimited field.
fn put_field(out: &mut BytesMut, tag: u32, len: usize) {
    put_varint(out, u64::from(tag << 3 | LENGTH_DELIMITED));
    put_varint(out, len as u64);
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn varint_len(value: u64) -> usize {
    // 7 bits a byte; 0 takes one.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(room: &str, seq: u64, args_len: usize) -> v1::Delivery {
        v1::Delivery {
            nsp: "/chat".to_owned(),
            rooms: vec![room.to_owned()],
            except: vec!["sid-1".to_owned()],
            volatile: seq.is_multiple_of(2),
            stamps: vec![v1::Stamp { seq, offset: format!("0001700000000000-{seq:06}") }],
            packet: Some(v1::Packet {
                event: "room:message".to_owned(),
                args_json: Bytes::from(format!("[\"{}\"]", "x".repeat(args_len))),
                attachments: vec![Bytes::from_static(b"\x00\xff")],
            }),
            store: seq.is_multiple_of(3),
            id_field: String::new(),
        }
    }

    #[test]
    fn a_batch_is_the_channel_message_prost_encodes() {
        for (router_id, count, args_len) in [("r1", 1, 3), ("", 0, 0), ("router-abc", 70, 200), ("r", 3, 20_000)] {
            let deliveries: Vec<v1::Delivery> = (0..count).map(|i| delivery("general", i, args_len)).collect();
            let encoded: Vec<Bytes> = deliveries.iter().map(encode_delivery).collect();
            let batch = v1::DeliveryBatch { router_id: router_id.to_owned(), deliveries };
            let expected = v1::ChannelMessage {
                request_id: 0,
                reply_to: String::new(),
                message: Some(v1::channel_message::Message::Deliveries(batch.clone())),
            };
            let bytes = encode_batch(router_id, &encoded);
            assert_eq!(bytes, Bytes::from(expected.encode_to_vec()), "{router_id} × {count}");
            assert_eq!(decode_batch(&bytes), Ok(batch));
        }
    }

    #[test]
    fn varints_have_their_length() {
        for value in [0u64, 1, 127, 128, 16_383, 16_384, u64::from(u32::MAX), u64::MAX] {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
        }
    }

    #[test]
    fn what_is_not_a_batch_is_an_error() {
        let command = v1::ChannelMessage {
            request_id: 7,
            reply_to: "sb:router:r".to_owned(),
            message: Some(v1::channel_message::Message::RoomSockets(v1::RoomSockets::default())),
        };
        for bytes in [Bytes::from(command.encode_to_vec()), Bytes::new(), Bytes::from_static(b"\x1a\x05ab")] {
            assert!(matches!(decode_batch(&bytes), Err(RouterError::Malformed(_))), "{bytes:?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let valid = encode_batch("r", &[encode_delivery(&delivery("a", 1, 10))]);
        for round in 0..3000usize {
            let mut bytes = valid.to_vec();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed as usize) % bytes.len();
            bytes[at] = (seed >> 32) as u8;
            bytes.truncate(bytes.len() - round % 4);
            let _ = decode_batch(&Bytes::from(bytes));
        }
    }
}
