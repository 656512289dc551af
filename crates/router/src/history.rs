//! A room's history: the kept messages (`store = true`) of its stream
//! `sb:room:<nsp>:<room>`, read back for `Router.History`.
//!
//! The stream is the recovery log of every non-volatile broadcast, so the
//! kept messages are a subset of its entries, and the broker reads entries
//! by position only: `since` pages forward (`XRANGE`) from the position
//! until `limit` kept messages are found; without it, the newest entries
//! (`XREVRANGE`) are read in growing windows until the window holds
//! `limit` kept messages or the whole stream. Either way at most about the
//! stream's retention (`max_len`) entries are read, whatever is asked.
//! Entries that do not decode (written by something else) are skipped.

use switchboard_broker::{Broker, Entry, StreamId};
use switchboard_proto::{decode_entry, v1};

use crate::RouterError;

/// Entries read per call at least.
const PAGE: usize = 64;
/// Entries read per call at most.
const MAX_PAGE: usize = 1024;

/// At most `limit` kept messages of `stream` after `since` (or the newest),
/// oldest first, reading at most about `max_len` entries (the stream's
/// retention).
pub(crate) async fn read(
    broker: &dyn Broker,
    stream: &str,
    since: Option<&str>,
    limit: usize,
    max_len: usize,
) -> Result<Vec<v1::StoredMessage>, RouterError> {
    let limit = limit.min(max_len.max(1));
    if limit == 0 {
        return Ok(Vec::new());
    }
    let budget = max_len.max(PAGE);
    match since {
        Some(since) => {
            let since: StreamId =
                since.parse().map_err(|_| RouterError::Invalid(format!("since {since:?} is not a stream id")))?;
            forward(broker, stream, since, limit, budget).await
        }
        None => newest(broker, stream, limit, budget).await,
    }
}

async fn forward(
    broker: &dyn Broker,
    stream: &str,
    since: StreamId,
    limit: usize,
    budget: usize,
) -> Result<Vec<v1::StoredMessage>, RouterError> {
    let mut kept = Vec::with_capacity(limit);
    let mut cursor = since.to_string();
    let mut read = 0;
    while kept.len() < limit && read < budget {
        let page = (limit * 2).clamp(PAGE, MAX_PAGE).min(budget - read).max(1);
        let entries = broker.stream_range_after(stream, &cursor, page).await?;
        read += entries.len();
        let Some(last) = entries.last() else { break };
        cursor = last.id.clone();
        let exhausted = entries.len() < page;
        kept.extend(entries.iter().filter_map(stored).take(limit - kept.len()));
        if exhausted {
            break;
        }
    }
    Ok(kept)
}

async fn newest(
    broker: &dyn Broker,
    stream: &str,
    limit: usize,
    budget: usize,
) -> Result<Vec<v1::StoredMessage>, RouterError> {
    let mut window = (limit * 2).clamp(PAGE, budget);
    loop {
        let entries = broker.stream_last(stream, window).await?;
        let kept: Vec<v1::StoredMessage> = entries.iter().filter_map(stored).collect();
        if kept.len() >= limit || entries.len() < window || window >= budget {
            let skip = kept.len().saturating_sub(limit);
            return Ok(kept.into_iter().skip(skip).collect());
        }
        window = window.saturating_mul(4).min(budget);
    }
}

/// The kept message of an entry, with its id written in; `None` for an
/// entry that is not one (or does not decode).
fn stored(entry: &Entry) -> Option<v1::StoredMessage> {
    let delivery = decode_entry(&entry.data)
        .inspect_err(|error| tracing::debug!(id = entry.id, %error, "skipping a stream entry that does not decode"))
        .ok()?;
    if !delivery.store {
        return None;
    }
    Some(v1::StoredMessage { id: entry.id.clone(), packet: Some(delivery.entry_packet(&entry.id)?) })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;
    use switchboard_broker::{MemoryBroker, Retention};

    use super::*;
    use crate::wire::encode_entry;

    const STREAM: &str = "sb:room:/chat:general";

    /// Appends `count` entries, every `every`th kept (with `id` written in
    /// by readers); the ids of the kept ones and their texts.
    async fn fill(broker: &MemoryBroker, count: usize, every: usize) -> Vec<(String, String)> {
        let mut kept = Vec::new();
        for i in 0..count {
            let store = i % every == 0;
            let text = format!("m{i}");
            let entry = encode_entry(&v1::Delivery {
                nsp: "/chat".to_owned(),
                rooms: vec!["general".to_owned()],
                store,
                id_field: if store { "id".to_owned() } else { String::new() },
                packet: Some(v1::Packet::from_json("room:message", &[json!({ "text": text })])),
                ..Default::default()
            });
            let id = broker.stream_append(STREAM, entry, Retention::new(100_000, None)).await.unwrap();
            if store {
                kept.push((id, text));
            }
        }
        broker.stream_append(STREAM, Bytes::from_static(b"\xff junk"), Retention::new(100_000, None)).await.unwrap();
        kept
    }

    fn summary(messages: &[v1::StoredMessage]) -> Vec<(String, String)> {
        messages
            .iter()
            .map(|message| {
                let args: serde_json::Value =
                    serde_json::from_slice(&message.packet.as_ref().unwrap().args_array()).unwrap();
                assert_eq!(args[0]["id"], json!(message.id), "the id is written in");
                (message.id.clone(), args[0]["text"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    #[tokio::test]
    async fn newest_and_since_return_kept_messages_oldest_first() {
        let broker = MemoryBroker::new();
        let kept = fill(&broker, 500, 7).await;
        assert_eq!(kept.len(), 72);

        let newest = read(&broker, STREAM, None, 10, 10_000).await.unwrap();
        assert_eq!(summary(&newest), kept[62..].to_vec());
        let all = read(&broker, STREAM, None, 1000, 10_000).await.unwrap();
        assert_eq!(summary(&all), kept, "a window that grows to the whole stream");

        let after = read(&broker, STREAM, Some(&kept[3].0), 5, 10_000).await.unwrap();
        assert_eq!(summary(&after), kept[4..9].to_vec());
        let unpadded = kept[3].0.trim_start_matches('0').to_owned();
        assert_eq!(read(&broker, STREAM, Some(&unpadded), 5, 10_000).await.unwrap(), after, "unpadded ids too");
        let rest = read(&broker, STREAM, Some(&kept[60].0), 100, 10_000).await.unwrap();
        assert_eq!(summary(&rest), kept[61..].to_vec());
        assert!(read(&broker, STREAM, Some(&kept[71].0), 100, 10_000).await.unwrap().is_empty());
        assert!(read(&broker, STREAM, Some("0-0"), 0, 10_000).await.unwrap().is_empty(), "limit 0: none");
        assert!(read(&broker, "sb:room:/chat:empty", None, 10, 10_000).await.unwrap().is_empty());
        assert!(matches!(read(&broker, STREAM, Some("yesterday"), 10, 10_000).await, Err(RouterError::Invalid(_))));
    }

    #[tokio::test]
    async fn reads_are_bounded_by_the_retention() {
        let broker = MemoryBroker::new();
        let kept = fill(&broker, 300, 100).await;
        // Retention 64: only the newest 64 entries are looked at, which hold
        // none of the three kept messages; 3 asked, limit capped at 64.
        assert!(read(&broker, STREAM, None, 3, 64).await.unwrap().is_empty());
        assert_eq!(summary(&read(&broker, STREAM, Some("0-0"), 3, 64).await.unwrap()), kept[..1].to_vec());
        assert_eq!(summary(&read(&broker, STREAM, None, 3, 1000).await.unwrap()), kept);
    }
}
