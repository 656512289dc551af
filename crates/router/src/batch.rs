//! [`Delivery`] and the bytes of a delivery batch: what the router publishes
//! on a gateway's channel (`sb:gw:<id>`), and what it appends to a stream.
//!
//! This framing is a stand-in: the gRPC contract's protobuf
//! `DeliveryBatch` will replace it, behind the same [`encode_batch`] /
//! [`decode_batch`] pair, so nothing else depends on the layout. Decoding
//! takes untrusted bytes and returns a typed error, never a panic.
//!
//! # Layout (version 1)
//!
//! All integers are big-endian.
//!
//! ```text
//! batch    = version:u8 (= 1)  router_id:str  count:u32  delivery{count}
//! delivery = nsp:str  rooms:list<str>  except:list<str>  flags:u8
//!            stamps:list<stamp>  packet:bytes
//! stamp    = seq:u64  offset:str          (offset "" = not appended)
//! str      = len:u32  UTF-8 octets{len}
//! bytes    = len:u32  octets{len}
//! list<T>  = count:u32  T{count}
//! flags    = bit 0: volatile, bit 1: store; other bits 0
//! ```
//!
//! A stream entry is a batch of one delivery whose stamps are empty (the
//! entry's id is its offset), from the router that appended it: what
//! recovery needs to filter it by rooms and exclusions, and history to
//! tell stored messages (`store`) from the rest of the recovery log.

use std::borrow::Borrow;

use bytes::{BufMut, Bytes, BytesMut};

use crate::RouterError;

const VERSION: u8 = 1;
const VOLATILE: u8 = 1;
const STORE: u8 = 2;

/// A decoded batch: who sent it and its deliveries, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The router that published it: a gateway that sees a sequence jump
    /// from one router missed deliveries; a new router means a new owner.
    pub router_id: String,
    pub deliveries: Vec<Delivery>,
}

/// One broadcast as it reaches one gateway: the packet, once, with who it
/// is for and where it stands in each of its rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub nsp: String,
    /// The rooms it went to; empty for the whole namespace.
    pub rooms: Vec<String>,
    /// Rooms (or socket ids) left out.
    pub except: Vec<String>,
    /// May be dropped for a socket that cannot take it now; never
    /// recovered.
    pub volatile: bool,
    /// Part of the room's history (a stored chat message), not only of the
    /// recovery log.
    pub store: bool,
    /// One per room, in the order of `rooms` (one for a namespace-wide
    /// broadcast).
    pub stamps: Vec<Stamp>,
    /// The encoded packet, opaque to the router.
    pub packet: Bytes,
}

/// Where a delivery stands in one room (or namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    /// The owner's sequence number for the room: consecutive per room and
    /// owner, so that a gateway sees a gap.
    pub seq: u64,
    /// The stream id it was appended as; `None` when it was not stored.
    pub offset: Option<String>,
}

/// Encodes deliveries as one batch from `router_id`.
pub fn encode_batch<D: Borrow<Delivery>>(router_id: &str, deliveries: &[D]) -> Bytes {
    let size: usize = deliveries.iter().map(|d| encoded_len(d.borrow())).sum();
    let mut out = BytesMut::with_capacity(9 + router_id.len() + size);
    out.put_u8(VERSION);
    put_str(&mut out, router_id);
    put_len(&mut out, deliveries.len());
    for delivery in deliveries {
        let delivery = delivery.borrow();
        put_str(&mut out, &delivery.nsp);
        put_list(&mut out, &delivery.rooms);
        put_list(&mut out, &delivery.except);
        out.put_u8(if delivery.volatile { VOLATILE } else { 0 } | if delivery.store { STORE } else { 0 });
        put_len(&mut out, delivery.stamps.len());
        for stamp in &delivery.stamps {
            out.put_u64(stamp.seq);
            put_str(&mut out, stamp.offset.as_deref().unwrap_or(""));
        }
        put_len(&mut out, delivery.packet.len());
        out.put_slice(&delivery.packet);
    }
    out.freeze()
}

/// Decodes a batch; packets are slices of `batch`, not copies.
pub fn decode_batch(batch: &Bytes) -> Result<Batch, RouterError> {
    let mut reader = Reader { bytes: batch, at: 0 };
    let version = reader.u8()?;
    if version != VERSION {
        return Err(RouterError::Malformed(format!("version {version}, expected {VERSION}")));
    }
    let router_id = reader.string()?;
    // Each delivery takes at least 21 bytes: a count cannot promise more
    // than the input holds, so it never sizes a huge allocation.
    let count = reader.count(21)?;
    let mut deliveries = Vec::with_capacity(count);
    for _ in 0..count {
        let nsp = reader.string()?;
        let rooms = reader.strings()?;
        let except = reader.strings()?;
        let flags = reader.u8()?;
        if flags & !(VOLATILE | STORE) != 0 {
            return Err(RouterError::Malformed(format!("unknown flags {flags:#04x}")));
        }
        let stamps = (0..reader.count(12)?)
            .map(|_| {
                let seq = reader.u64()?;
                let offset = Some(reader.string()?).filter(|offset| !offset.is_empty());
                Ok(Stamp { seq, offset })
            })
            .collect::<Result<Vec<Stamp>, RouterError>>()?;
        let packet = reader.bytes()?;
        let (volatile, store) = (flags & VOLATILE != 0, flags & STORE != 0);
        deliveries.push(Delivery { nsp, rooms, except, volatile, store, stamps, packet });
    }
    if reader.at != batch.len() {
        return Err(RouterError::Malformed(format!("{} bytes after the last delivery", batch.len() - reader.at)));
    }
    Ok(Batch { router_id, deliveries })
}

fn encoded_len(delivery: &Delivery) -> usize {
    let strs = |list: &[String]| 4 + list.iter().map(|s| 4 + s.len()).sum::<usize>();
    let stamps: usize = delivery.stamps.iter().map(|s| 12 + s.offset.as_ref().map_or(0, String::len)).sum();
    4 + delivery.nsp.len() + strs(&delivery.rooms) + strs(&delivery.except) + 1 + 4 + stamps + 4 + delivery.packet.len()
}

/// Lengths beyond `u32` cannot be framed; nothing the router sends comes
/// near (Redis caps a message at 512 MB), so they are saturated rather than
/// made a runtime error, and the decoder then rejects the batch.
fn put_len(out: &mut BytesMut, len: usize) {
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_str(out: &mut BytesMut, text: &str) {
    put_len(out, text.len());
    out.put_slice(text.as_bytes());
}

fn put_list(out: &mut BytesMut, list: &[String]) {
    put_len(out, list.len());
    for item in list {
        put_str(out, item);
    }
}

/// A cursor over the batch being decoded.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], RouterError> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len());
        let end = end.ok_or_else(|| RouterError::Malformed(format!("truncated at byte {}", self.at)))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, RouterError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, RouterError> {
        let bytes: [u8; 4] = self.take(4)?.try_into().map_err(|_| RouterError::Malformed("u32".to_owned()))?;
        Ok(u32::from_be_bytes(bytes) as usize)
    }

    fn u64(&mut self) -> Result<u64, RouterError> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| RouterError::Malformed("u64".to_owned()))?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// A count of items of at least `min_size` bytes each, checked against
    /// what is left.
    fn count(&mut self, min_size: usize) -> Result<usize, RouterError> {
        let at = self.at;
        let count = self.u32()?;
        if count.saturating_mul(min_size) > self.bytes.len() - self.at {
            return Err(RouterError::Malformed(format!("count {count} at byte {at} exceeds the input")));
        }
        Ok(count)
    }

    fn string(&mut self) -> Result<String, RouterError> {
        let at = self.at;
        let len = self.u32()?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| RouterError::Malformed(format!("invalid UTF-8 at byte {at}")))
    }

    fn strings(&mut self) -> Result<Vec<String>, RouterError> {
        (0..self.count(4)?).map(|_| self.string()).collect()
    }

    fn bytes(&mut self) -> Result<Bytes, RouterError> {
        let len = self.u32()?;
        let start = self.at;
        self.take(len)?;
        Ok(self.bytes.slice(start..start + len))
    }
}

#[cfg(test)]
mod tests;
