//! Presence: who is online in each chat namespace, and `users:online`.
//!
//! The chat counts each user's sockets per namespace itself (on connect and
//! disconnect), so it knows exactly when a user's first socket arrives and
//! its last one leaves. With broadcasting on, such a change asks for one
//! namespace-wide `users:online`; requests are coalesced by a flag and one
//! delayed task per namespace: the first change sends at once, later ones
//! wait until an interval has passed since the last send, and every change
//! meanwhile only finds the flag set. A connection storm therefore costs one
//! flag check per socket and one broadcast per interval.
//!
//! With broadcasting off, a socket gets the list once when it connects (unless
//! that is turned off too: a list to every connecting socket is quadratic in a
//! connection storm) and as the ack of its own `users:online` event. The list
//! sent on connect is a snapshot: volatile, not kept for recovery (a recovered
//! client asks again or gets the next broadcast).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_gateway::{Namespace, Socket, Target, Unavailable};

/// Presence of every chat namespace.
pub(crate) struct Presence {
    broadcast: bool,
    on_connect: bool,
    interval: Duration,
    namespaces: Mutex<HashMap<String, Arc<Online>>>,
    /// Namespaces whose cluster-wide presence this gateway watches.
    watched: Mutex<std::collections::HashSet<String>>,
}

/// Presence of one namespace.
#[derive(Default)]
struct Online {
    /// Sockets per user.
    users: Mutex<HashMap<Arc<str>, usize>>,
    schedule: Mutex<Schedule>,
}

#[derive(Default)]
struct Schedule {
    /// A broadcast task is waiting to run.
    pending: bool,
    last_sent: Option<Instant>,
}

impl Presence {
    pub(crate) fn new(broadcast: bool, on_connect: bool, interval: Duration) -> Self {
        Self {
            broadcast,
            on_connect,
            interval,
            namespaces: Mutex::new(HashMap::new()),
            watched: Mutex::new(std::collections::HashSet::new()),
        }
    }

    fn online(&self, nsp: &str) -> Arc<Online> {
        let mut namespaces = lock(&self.namespaces);
        if let Some(online) = namespaces.get(nsp) {
            return online.clone();
        }
        namespaces.entry(nsp.to_owned()).or_default().clone()
    }

    /// The users online in a namespace, each once, sorted: counted here
    /// when standalone, by the namespace's owner in a cluster.
    pub(crate) async fn list(&self, nsp: &Namespace) -> Result<Vec<String>, Unavailable> {
        match nsp.cluster_online_users().await {
            Some(list) => list,
            None => Ok(self.online(nsp.name()).list()),
        }
    }

    pub(crate) async fn on_connect(&self, socket: &Arc<Socket>) {
        let nsp = socket.namespace();
        if nsp.is_clustered() {
            // The owner counts; one gateway broadcasts the changes (see
            // `watch_cluster`). The newcomer gets the list now.
            if self.broadcast {
                self.watch_cluster(nsp);
            }
            if self.broadcast || self.on_connect {
                match self.list(nsp).await {
                    Ok(list) => socket.emit_volatile("users:online", &[json!(list)]),
                    Err(error) => tracing::debug!(%error, "users:online not sent on connect"),
                }
            }
            return;
        }
        let online = self.online(socket.namespace().name());
        let first = online.add(socket.user_id());
        if self.broadcast && first {
            // The broadcast reaches this socket too.
            online.schedule(socket.namespace().clone(), self.interval);
        } else if self.broadcast || self.on_connect {
            match self.list(socket.namespace()).await {
                Ok(list) => socket.emit_volatile("users:online", &[json!(list)]),
                Err(error) => tracing::debug!(%error, "users:online not sent on connect"),
            }
        }
    }

    pub(crate) fn on_disconnect(&self, socket: &Arc<Socket>) {
        if socket.namespace().is_clustered() {
            return;
        }
        let online = self.online(socket.namespace().name());
        if online.remove(socket.user_id()) && self.broadcast {
            online.schedule(socket.namespace().clone(), self.interval);
        }
    }
}

impl Presence {
    /// In a cluster: `users:online` to the whole namespace when the list
    /// changes, coalesced cluster-wide. One gateway at a time leads a
    /// namespace's presence (rendezvous over the live gateways); it reads
    /// the list from the namespace's owner every interval and broadcasts it
    /// when it changed. Started once per namespace, on its first socket.
    pub(crate) fn watch_cluster(&self, nsp: &Arc<Namespace>) {
        {
            let mut watched = lock(&self.watched);
            if !watched.insert(nsp.name().to_owned()) {
                return;
            }
        }
        let (nsp, interval) = (nsp.clone(), self.interval);
        tokio::spawn(async move {
            let key = format!("presence:{}", nsp.name());
            let mut last: Option<Vec<String>> = None;
            let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !nsp.cluster_leads(&key) {
                    last = None;
                    continue;
                }
                let list = match nsp.cluster_online_users().await {
                    Some(Ok(list)) => list,
                    Some(Err(error)) => {
                        tracing::debug!(%error, "presence not read");
                        continue;
                    }
                    None => return,
                };
                // The first list a new leader reads is taken as known:
                // the former leader broadcast it.
                let Some(previous) = last.replace(list.clone()) else { continue };
                if previous == list {
                    continue;
                }
                match nsp.broadcast(&Target::all().volatile(), "users:online", &[json!(list)], &[]).await {
                    Ok(_) => metrics::counter!("switchboard_chat_presence_broadcasts_total").increment(1),
                    Err(error) => tracing::warn!(%error, "users:online not broadcast"),
                }
            }
        });
    }
}

impl Online {
    /// Counts a socket in; true when it is the user's first.
    fn add(&self, user: &str) -> bool {
        let mut users = lock(&self.users);
        match users.get_mut(user) {
            Some(count) => {
                *count += 1;
                false
            }
            None => {
                users.insert(Arc::from(user), 1);
                true
            }
        }
    }

    /// Counts a socket out; true when it was the user's last.
    fn remove(&self, user: &str) -> bool {
        let mut users = lock(&self.users);
        match users.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                users.remove(user);
                true
            }
            None => false,
        }
    }

    fn list(&self) -> Vec<String> {
        let mut list: Vec<String> = lock(&self.users).keys().map(|u| u.to_string()).collect();
        list.sort_unstable();
        list
    }

    /// Asks for one `users:online` to the whole namespace, coalesced.
    fn schedule(self: &Arc<Self>, nsp: Arc<Namespace>, interval: Duration) {
        let delay = {
            let mut schedule = lock(&self.schedule);
            if schedule.pending {
                return;
            }
            schedule.pending = true;
            schedule
                .last_sent
                .map_or(Duration::ZERO, |last| (last + interval).saturating_duration_since(Instant::now()))
        };
        let online = self.clone();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            {
                let mut schedule = lock(&online.schedule);
                schedule.pending = false;
                schedule.last_sent = Some(Instant::now());
            }
            // Read after clearing the flag: a change from now on schedules
            // another broadcast, so none is lost.
            let list = match nsp.cluster_online_users().await {
                Some(Ok(list)) => list,
                Some(Err(error)) => {
                    tracing::warn!(%error, "users:online not broadcast");
                    return;
                }
                None => online.list(),
            };
            // In a cluster the list is a snapshot, sent volatile: it takes no
            // place in the recovery log, so that a client's last offset
            // names its room's stream (a recovered client asks again).
            let target = if nsp.is_clustered() { Target::all().volatile() } else { Target::all() };
            match nsp.broadcast(&target, "users:online", &[json!(list)], &[]).await {
                Ok(_) => metrics::counter!("switchboard_chat_presence_broadcasts_total").increment(1),
                Err(error) => tracing::warn!(%error, "users:online not broadcast"),
            }
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_first_and_last_sockets_of_a_user() {
        let online = Online::default();
        assert!(online.add("alice"));
        assert!(!online.add("alice"));
        assert!(online.add("bob"));
        assert_eq!(online.list(), vec!["alice", "bob"]);
        assert!(!online.remove("alice"));
        assert!(online.remove("alice"));
        assert!(!online.remove("alice"), "an unknown user is no change");
        assert_eq!(online.list(), vec!["bob"]);
    }
}
