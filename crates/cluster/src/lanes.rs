//! Lanes (a room, or a namespace's own broadcasts), their streams, and the
//! tags that name them in offsets.
//!
//! The owner of a room numbers and stores its broadcasts in the stream
//! `sb:room:<nsp>:<room>`; namespace-wide broadcasts go to `sb:nsp:<nsp>`.
//! A delivered event carries the offset `<stream id>@<tag>` as its last
//! argument, the tag a short hash of the lane, so that a client's offset
//! tells which stream it is a position in without naming the room.

use switchboard_router::ownership::{hash64, nsp_key, room_key};

/// The ownership key of a room (`room:<nsp>:<room>`) or, without a room, of
/// the namespace (`nsp:<nsp>`).
pub(crate) fn lane_key(nsp: &str, room: Option<&str>) -> String {
    match room {
        Some(room) => room_key(nsp, room),
        None => nsp_key(nsp),
    }
}

/// The stream of a lane: `sb:` and its key.
pub(crate) fn stream(key: &str) -> String {
    format!("sb:{key}")
}

/// The tag of a lane in offsets: 8 hex digits.
pub(crate) fn tag(key: &str) -> String {
    format!("{:08x}", hash64("tag", key) as u32)
}

/// An offset argument: `<stream id>@<tag>`.
pub(crate) fn offset(id: &str, tag: &str) -> String {
    format!("{id}@{tag}")
}

/// The parts of an offset argument; `None` when it is not one.
pub(crate) fn parse_offset(offset: &str) -> Option<(&str, &str)> {
    let (id, tag) = offset.rsplit_once('@')?;
    switchboard_gateway::cluster::stream_id_key(id)?;
    Some((id, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_streams_tags_and_offsets() {
        assert_eq!(stream(&lane_key("/chat", Some("general"))), "sb:room:/chat:general");
        assert_eq!(stream(&lane_key("/chat", None)), "sb:nsp:/chat");
        let tag = tag(&lane_key("/chat", Some("general")));
        assert_eq!(tag.len(), 8);
        assert_ne!(tag, super::tag(&lane_key("/chat", Some("random"))));
        let offset = offset("0000000000001-000002", &tag);
        assert_eq!(parse_offset(&offset), Some(("0000000000001-000002", tag.as_str())));
        assert_eq!(parse_offset("12"), None);
        assert_eq!(parse_offset("x@y"), None);
    }
}
