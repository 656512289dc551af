//! Outgoing frames, encoded once.
//!
//! A [`Frame`] is an Engine.IO packet already wrapped in its WebSocket header
//! (server frames are unmasked, so the bytes are the same for every
//! recipient). A broadcast builds one frame and every recipient's queue holds
//! a reference-counted clone of the same [`Bytes`]. The polling transport
//! reads the same bytes without the header.

use std::sync::LazyLock;

use bytes::Bytes;
use switchboard_protocol::polling::{self, Record};

/// The largest WebSocket header: 2 bytes + 8 bytes of extended length.
const MAX_HEADER: usize = 10;

/// One Engine.IO packet, ready for either transport.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// WebSocket header followed by the payload.
    bytes: Bytes,
    header: u8,
    binary: bool,
    /// Ephemeral frames (typing indicators, volatile emits) are the first to
    /// be dropped for a slow reader.
    volatile: bool,
}

/// The engine.io ping, `2`.
pub(crate) static PING: LazyLock<Frame> = LazyLock::new(|| Frame::text(b"2"));
/// The engine.io noop, `6`.
pub(crate) static NOOP: LazyLock<Frame> = LazyLock::new(|| Frame::text(b"6"));

impl Frame {
    /// A text frame with this engine.io packet (type digit included).
    pub(crate) fn text(packet: &[u8]) -> Frame {
        Frame::build(false, |buf| buf.extend_from_slice(packet))
    }

    /// A binary frame (an attachment).
    pub(crate) fn binary(data: &[u8]) -> Frame {
        Frame::build(true, |buf| buf.extend_from_slice(data))
    }

    /// Builds a frame whose payload `write` appends to the buffer, with no
    /// copy afterwards: room for the largest header is reserved in front and
    /// the unused part sliced off.
    pub(crate) fn build(binary: bool, write: impl FnOnce(&mut Vec<u8>)) -> Frame {
        let mut buf = Vec::with_capacity(MAX_HEADER + 64);
        buf.resize(MAX_HEADER, 0);
        write(&mut buf);
        let len = buf.len() - MAX_HEADER;
        let opcode = if binary { 0x82 } else { 0x81 };
        let mut long = [0u8; MAX_HEADER];
        let header: &[u8] = match len {
            0..=125 => &[opcode, len as u8],
            126..=0xffff => &[opcode, 126, (len >> 8) as u8, len as u8],
            _ => {
                long[0] = opcode;
                long[1] = 127;
                long[2..].copy_from_slice(&(len as u64).to_be_bytes());
                &long
            }
        };
        let start = MAX_HEADER - header.len();
        buf[start..MAX_HEADER].copy_from_slice(header);
        let bytes = Bytes::from(buf).slice(start..);
        Frame { bytes, header: header.len() as u8, binary, volatile: false }
    }

    /// The same frame, droppable under pressure.
    pub(crate) fn volatile(mut self) -> Frame {
        self.volatile = true;
        self
    }

    pub(crate) fn is_volatile(&self) -> bool {
        self.volatile
    }

    /// The WebSocket frame: header and payload.
    pub(crate) fn ws_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The engine.io packet without the WebSocket header.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.bytes[self.header as usize..]
    }

    /// Bytes counted against the pending-bytes limit.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends this frame as one record of a polling payload.
    pub(crate) fn push_polling(&self, out: &mut bytes::BytesMut) {
        let record = if self.binary { Record::Binary(self.payload()) } else { Record::Text(self.payload()) };
        polling::push_record(out, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_frame() {
        let f = Frame::text(b"4hello");
        assert_eq!(&f.ws_bytes()[..], b"\x81\x064hello");
        assert_eq!(f.payload(), b"4hello");
    }

    #[test]
    fn medium_and_long_lengths() {
        let f = Frame::binary(&[7u8; 300]);
        assert_eq!(&f.ws_bytes()[..4], &[0x82, 126, 1, 44]);
        assert_eq!(f.payload().len(), 300);
        let f = Frame::text(&vec![b'a'; 70_000]);
        assert_eq!(&f.ws_bytes()[..2], &[0x81, 127]);
        assert_eq!(&f.ws_bytes()[2..10], &70_000u64.to_be_bytes());
    }

    #[test]
    fn polling_records() {
        let mut out = bytes::BytesMut::new();
        Frame::text(b"4a").push_polling(&mut out);
        Frame::binary(&[1, 2, 3]).push_polling(&mut out);
        assert_eq!(&out[..], b"4a\x1ebAQID");
    }
}
