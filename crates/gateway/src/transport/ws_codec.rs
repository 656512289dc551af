//! WebSocket framing (RFC 6455), server side: parse masked client frames,
//! reassemble fragmented messages, enforce the message size limit.
//!
//! Why not tungstenite: its connection object keeps read and write buffers
//! per socket for the whole life of the connection, which costs more memory
//! per idle client than all the rest of a session; and it writes one frame at
//! a time. Here the read buffer exists only while bytes are in flight, and the
//! writer sends many pre-encoded frames with one vectored write.

use bytes::{Buf, Bytes, BytesMut};

/// A whole message from the client.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Close,
}

/// Why the stream of frames is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// A message over the size limit (close code 1009).
    TooBig,
    /// Anything else against the RFC (close code 1002).
    Protocol,
}

impl FrameError {
    pub(crate) fn close_code(self) -> u16 {
        match self {
            FrameError::TooBig => 1009,
            FrameError::Protocol => 1002,
        }
    }
}

/// Parser state of one connection.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// Bytes read and not yet parsed; empty (unallocated) while idle.
    pub(crate) buf: BytesMut,
    fragments: Option<(u8, BytesMut)>,
}

impl Decoder {
    /// Parses every complete frame in the buffer into `out`.
    pub(crate) fn decode(&mut self, max: usize, out: &mut Vec<Message>) -> Result<(), FrameError> {
        loop {
            let buf = &self.buf[..];
            if buf.len() < 2 {
                break;
            }
            let (b0, b1) = (buf[0], buf[1]);
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0f;
            if b0 & 0x70 != 0 || b1 & 0x80 == 0 {
                // Reserved bits (no extension was negotiated) or an unmasked
                // client frame.
                return Err(FrameError::Protocol);
            }
            let (len, mut header) = match b1 & 0x7f {
                126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap_or_default()), 10),
                126 | 127 => break,
                n => (u64::from(n), 2),
            };
            let is_control = opcode & 0x08 != 0;
            if is_control && (len > 125 || !fin) {
                return Err(FrameError::Protocol);
            }
            let pending = self.fragments.as_ref().map_or(0, |(_, f)| f.len()) as u64;
            if len + pending > max as u64 {
                return Err(FrameError::TooBig);
            }
            let len = len as usize;
            if buf.len() < header + 4 + len {
                self.buf.reserve(header + 4 + len - buf.len());
                break;
            }
            let mask = [buf[header], buf[header + 1], buf[header + 2], buf[header + 3]];
            header += 4;
            self.buf.advance(header);
            let mut payload = self.buf.split_to(len);
            unmask(&mut payload, mask);
            match (opcode, self.fragments.take()) {
                (0x0, Some((first, mut data))) => {
                    data.extend_from_slice(&payload);
                    if fin {
                        out.push(data_message(first, data.freeze()));
                    } else {
                        self.fragments = Some((first, data));
                    }
                }
                (0x1 | 0x2, None) if fin => out.push(data_message(opcode, payload.freeze())),
                (0x1 | 0x2, None) => self.fragments = Some((opcode, payload)),
                (0x8, fragments) => {
                    self.fragments = fragments;
                    out.push(Message::Close);
                }
                (0x9, fragments) => {
                    self.fragments = fragments;
                    out.push(Message::Ping(payload.freeze()));
                }
                (0xA, fragments) => self.fragments = fragments,
                _ => return Err(FrameError::Protocol),
            }
        }
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            // Give the buffer back while the connection is idle.
            self.buf = BytesMut::new();
        }
        Ok(())
    }
}

fn data_message(opcode: u8, data: Bytes) -> Message {
    if opcode == 0x1 { Message::Text(data) } else { Message::Binary(data) }
}

fn unmask(data: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// A server frame with a small payload (pong, close).
pub(crate) fn control_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.push(0x80 | opcode);
    frame.push(payload.len().min(125) as u8);
    frame.extend_from_slice(&payload[..payload.len().min(125)]);
    frame
}

/// The `Sec-WebSocket-Accept` value for a key.
pub(crate) fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![opcode_byte];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        frame
    }

    #[test]
    fn decodes_text_and_fragmented_binary() {
        let mut d = Decoder::default();
        d.buf.extend_from_slice(&masked(0x81, b"4hello"));
        d.buf.extend_from_slice(&masked(0x02, b"ab"));
        d.buf.extend_from_slice(&masked(0x89, b"p"));
        d.buf.extend_from_slice(&masked(0x80, b"cd"));
        let mut out = Vec::new();
        d.decode(100, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                Message::Text(Bytes::from_static(b"4hello")),
                Message::Ping(Bytes::from_static(b"p")),
                Message::Binary(Bytes::from_static(b"abcd")),
            ]
        );
        assert_eq!(d.buf.capacity(), 0, "idle decoder holds no buffer");
    }

    #[test]
    fn waits_for_partial_frames() {
        let frame = masked(0x81, &[b'a'; 300]);
        let mut d = Decoder::default();
        let mut out = Vec::new();
        d.buf.extend_from_slice(&frame[..3]);
        d.decode(1000, &mut out).unwrap();
        d.buf.extend_from_slice(&frame[3..100]);
        d.decode(1000, &mut out).unwrap();
        assert!(out.is_empty());
        d.buf.extend_from_slice(&frame[100..]);
        d.decode(1000, &mut out).unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn refuses_oversized_and_unmasked() {
        let mut d = Decoder::default();
        d.buf.extend_from_slice(&masked(0x81, &[b'a'; 300]));
        assert_eq!(d.decode(200, &mut Vec::new()), Err(FrameError::TooBig));
        let mut d = Decoder::default();
        d.buf.extend_from_slice(&[0x81, 0x01, b'a']);
        assert_eq!(d.decode(200, &mut Vec::new()), Err(FrameError::Protocol));
    }

    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
