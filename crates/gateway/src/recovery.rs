//! Connection state recovery: the packets a disconnected socket may have
//! missed, and the sessions that may come back.
//!
//! Every event broadcast without an acknowledgement and not volatile gets an
//! offset (a string appended as its last argument, as the reference server
//! does); the client sends the last offset it saw with its private id (`pid`)
//! when it reconnects. The log keeps each broadcast once, whatever the number
//! of recipients, for the recovery window or up to a count. Recovery succeeds
//! only when every packet after the client's offset is still in the log.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::frame::Frame;
use crate::sync::lock;

/// Who a logged packet was for.
#[derive(Debug)]
pub(crate) struct Audience {
    /// Rooms (or socket ids) it went to; empty means the whole namespace.
    pub(crate) rooms: Vec<Arc<str>>,
    /// Rooms (or socket ids) left out.
    pub(crate) except: Vec<Arc<str>>,
}

impl Audience {
    fn includes(&self, sid: &str, rooms: &[Arc<str>]) -> bool {
        let is_in = |name: &Arc<str>| &**name == sid || rooms.contains(name);
        (self.rooms.is_empty() || self.rooms.iter().any(is_in)) && !self.except.iter().any(is_in)
    }
}

#[derive(Debug)]
struct Entry {
    offset: u64,
    at: Instant,
    audience: Audience,
    frames: Vec<Frame>,
}

#[derive(Debug)]
struct Persisted {
    sid: Arc<str>,
    user_id: Arc<str>,
    rooms: Vec<Arc<str>>,
    at: Instant,
}

/// A session given back: its id, rooms and the frames it missed.
#[derive(Debug)]
pub(crate) struct Restored {
    pub(crate) sid: Arc<str>,
    pub(crate) user_id: Arc<str>,
    pub(crate) rooms: Vec<Arc<str>>,
    pub(crate) missed: Vec<Frame>,
}

#[derive(Debug, Default)]
struct Log {
    next: u64,
    entries: VecDeque<Entry>,
}

/// The recovery state of one namespace.
#[derive(Debug)]
pub(crate) struct Recovery {
    window: Duration,
    max_packets: usize,
    log: Mutex<Log>,
    sessions: Mutex<HashMap<Arc<str>, Persisted>>,
}

impl Recovery {
    pub(crate) fn new(window: Duration, max_packets: usize) -> Self {
        let max_packets = max_packets.max(1);
        Self { window, max_packets, log: Mutex::new(Log::default()), sessions: Mutex::new(HashMap::new()) }
    }

    /// Logs a packet; `encode` builds its frames with the offset it is given.
    pub(crate) fn append(
        &self,
        audience: Audience,
        now: Instant,
        encode: impl FnOnce(u64) -> Vec<Frame>,
    ) -> Vec<Frame> {
        let mut log = lock(&self.log);
        let offset = log.next;
        log.next += 1;
        let frames = encode(offset);
        while log.entries.len() >= self.max_packets
            || log.entries.front().is_some_and(|e| now.saturating_duration_since(e.at) > self.window)
        {
            log.entries.pop_front();
        }
        log.entries.push_back(Entry { offset, at: now, audience, frames: frames.clone() });
        frames
    }

    /// Keeps a disconnected socket's state for the recovery window.
    pub(crate) fn persist(&self, pid: Arc<str>, sid: Arc<str>, user_id: Arc<str>, rooms: Vec<Arc<str>>) {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| now.saturating_duration_since(s.at) <= self.window);
        sessions.insert(pid, Persisted { sid, user_id, rooms, at: now });
    }

    /// Gives a session back, with every packet after `offset` it should have
    /// received; `None` when that is impossible. `user_id`, when given, must
    /// be the session's user (anonymous servers cannot tell users apart).
    /// As in the reference server, a client that never received an offset
    /// cannot recover: it cannot say what it missed.
    pub(crate) fn restore(&self, pid: &str, offset: &str, user_id: Option<&str>) -> Option<Restored> {
        let now = Instant::now();
        let session = {
            let mut sessions = lock(&self.sessions);
            let session = sessions.remove(pid)?;
            if now.saturating_duration_since(session.at) > self.window
                || user_id.is_some_and(|user| user != &*session.user_id)
            {
                return None;
            }
            session
        };
        // The first offset the client has not seen.
        let from = offset.parse::<u64>().ok()?.checked_add(1)?;
        let log = lock(&self.log);
        if from > log.next {
            return None;
        }
        let oldest = log.entries.front().map_or(log.next, |e| e.offset);
        if from < oldest {
            return None;
        }
        let missed = log
            .entries
            .iter()
            .skip((from - oldest) as usize)
            .filter(|e| e.audience.includes(&session.sid, &session.rooms))
            .flat_map(|e| e.frames.iter().cloned())
            .collect();
        Some(Restored { sid: session.sid, user_id: session.user_id, rooms: session.rooms, missed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    fn log_to(recovery: &Recovery, rooms: &[&str], text: &str) -> u64 {
        let audience = Audience { rooms: rooms.iter().map(|r| room(r)).collect(), except: vec![] };
        let mut offset = 0;
        recovery.append(audience, Instant::now(), |o| {
            offset = o;
            vec![Frame::text(text.as_bytes())]
        });
        offset
    }

    #[test]
    fn replays_what_the_rooms_missed() {
        let r = Recovery::new(Duration::from_secs(60), 100);
        let seen = log_to(&r, &["a"], "4seen");
        r.persist(room("pid"), room("sid"), room("u1"), vec![room("a")]);
        log_to(&r, &["a"], "4one");
        log_to(&r, &["b"], "4other-room");
        log_to(&r, &[], "4everyone");
        log_to(&r, &["sid"], "4direct");
        let restored = r.restore("pid", &seen.to_string(), Some("u1")).unwrap();
        let texts: Vec<_> = restored.missed.iter().map(|f| f.payload().to_vec()).collect();
        assert_eq!(texts, vec![b"4one".to_vec(), b"4everyone".to_vec(), b"4direct".to_vec()]);
        assert_eq!(&*restored.sid, "sid");
        assert!(r.restore("pid", "0", Some("u1")).is_none(), "a session is restored once");
    }

    #[test]
    fn refuses_another_user_and_evicted_offsets() {
        let r = Recovery::new(Duration::from_secs(60), 2);
        r.persist(room("pid"), room("sid"), room("u1"), vec![]);
        assert!(r.restore("pid", "0", Some("u2")).is_none());
        r.persist(room("pid"), room("sid"), room("u1"), vec![]);
        for _ in 0..4 {
            log_to(&r, &[], "4x");
        }
        assert!(r.restore("pid", "0", Some("u1")).is_none(), "offset 1 was evicted");
        r.persist(room("pid"), room("sid"), room("u1"), vec![]);
        assert_eq!(r.restore("pid", "1", Some("u1")).unwrap().missed.len(), 2);
        r.persist(room("pid"), room("sid"), room("u1"), vec![]);
        assert!(r.restore("pid", "99", Some("u1")).is_none(), "an offset from the future");
        r.persist(room("pid"), room("sid"), room("u1"), vec![]);
        assert!(r.restore("pid", "abc", Some("u1")).is_none());
    }
}
