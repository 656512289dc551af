//! [`RoomTable`]: what the owning router knows of its rooms and namespaces.
//!
//! Gateways are the truth about their own sockets; this table only records
//! what they announced: per room, the gateways that hold at least one
//! member (they announce their first and last member), and per namespace
//! the users online with the gateways holding each (they announce a user's
//! first and last socket). From that the router knows where a broadcast
//! goes (never to a gateway without members) and answers presence without
//! asking every gateway. A per-room (and per-namespace) sequence numbers
//! the deliveries.
//!
//! The table is plain data, no I/O and no locks: the router keeps it behind
//! one mutex, held for short synchronous sections. A room (a namespace)
//! exists while some gateway holds it; its sequence starts again at 1 when
//! it is held again, as it does on a new owner, so a gateway counts a
//! room's sequence from the first delivery after its announcement.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::GatewayId;
use crate::ownership::{nsp_key, room_key};

/// The user id of sockets without a user. Announced like a user, it makes
/// a gateway a holder of the namespace (namespace-wide broadcasts reach
/// it), but it is nobody online and never comes online or goes offline.
pub const ANONYMOUS: &str = "";

/// What a presence announcement changed cluster-wide (as far as this
/// owner's table goes: it owns the namespace's presence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    /// The user's first socket anywhere: the user came online.
    CameOnline,
    /// The user's last socket anywhere left: the user went offline.
    WentOffline,
    /// The user was and stays online (or offline).
    Unchanged,
}

/// A user who came online or went offline, from a resync or a gateway
/// that was forgotten.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PresenceEvent {
    pub nsp: String,
    pub user: String,
    pub online: bool,
}

/// Everything one gateway holds (the part of it this router owns): its
/// rooms and its users, as `(nsp, name)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    pub rooms: BTreeSet<(String, String)>,
    pub users: BTreeSet<(String, String)>,
}

/// Rooms and presence of the namespaces this router owns.
#[derive(Debug, Default)]
pub struct RoomTable {
    namespaces: HashMap<String, Namespace>,
    held: HashMap<GatewayId, Holdings>,
}

#[derive(Debug, Default)]
struct Namespace {
    rooms: HashMap<String, Room>,
    users: HashMap<String, BTreeSet<GatewayId>>,
    /// Gateways holding anything here (a room or a user), with how many
    /// things: the audience of a namespace-wide broadcast.
    holders: BTreeMap<GatewayId, usize>,
    seq: u64,
}

#[derive(Debug, Default)]
struct Room {
    gateways: BTreeSet<GatewayId>,
    seq: u64,
}

/// A room or a user, of one namespace.
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Room(&'a str),
    User(&'a str),
}

impl RoomTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A gateway got its first member of a room (`present`) or lost its
    /// last. True when that changed the room's gateways.
    pub fn membership(&mut self, gateway: &GatewayId, nsp: &str, room: &str, present: bool) -> bool {
        self.set(gateway, nsp, Item::Room(room), present).0
    }

    /// A user's first socket on a gateway connected (`online`) or its last
    /// there left; what that changed for the user cluster-wide.
    pub fn presence(&mut self, gateway: &GatewayId, nsp: &str, user: &str, online: bool) -> PresenceChange {
        let change = self.set(gateway, nsp, Item::User(user), online).1;
        if user == ANONYMOUS { PresenceChange::Unchanged } else { change }
    }

    /// The gateways holding members of a room, sorted.
    pub fn gateways_of(&self, nsp: &str, room: &str) -> Vec<GatewayId> {
        let room = self.namespaces.get(nsp).and_then(|ns| ns.rooms.get(room));
        room.map(|room| room.gateways.iter().cloned().collect()).unwrap_or_default()
    }

    /// The gateways holding anything of a namespace known here (its users,
    /// its rooms owned here), sorted: where a namespace-wide broadcast goes.
    pub fn namespace_gateways(&self, nsp: &str) -> Vec<GatewayId> {
        self.namespaces.get(nsp).map(|ns| ns.holders.keys().cloned().collect()).unwrap_or_default()
    }

    /// The users online in a namespace, sorted.
    pub fn online_users(&self, nsp: &str) -> Vec<String> {
        let users = self.namespaces.get(nsp).map(|ns| ns.users.keys().filter(|user| *user != ANONYMOUS));
        let mut users: Vec<String> = users.map(|users| users.cloned().collect()).unwrap_or_default();
        users.sort_unstable();
        users
    }

    /// What a gateway holds here.
    pub fn holdings(&self, gateway: &GatewayId) -> Holdings {
        self.held.get(gateway).cloned().unwrap_or_default()
    }

    /// The next sequence number of a room (`Some(room)`) or of the
    /// namespace's own broadcasts (`None`); 0 for one nobody holds, which
    /// has nobody to deliver to.
    pub fn next_seq(&mut self, nsp: &str, room: Option<&str>) -> u64 {
        let Some(ns) = self.namespaces.get_mut(nsp) else { return 0 };
        let seq = match room {
            None => &mut ns.seq,
            Some(room) => match ns.rooms.get_mut(room) {
                Some(room) => &mut room.seq,
                None => return 0,
            },
        };
        *seq += 1;
        *seq
    }

    /// Drops everything a gateway held (its lease ended); the users that
    /// went offline with it.
    pub fn forget_gateway(&mut self, gateway: &GatewayId) -> Vec<PresenceEvent> {
        self.resync(gateway, Holdings::default())
    }

    /// Replaces what a gateway holds with `state` (it re-announced
    /// everything); the users that came online or went offline by it.
    pub fn resync(&mut self, gateway: &GatewayId, state: Holdings) -> Vec<PresenceEvent> {
        let old = self.holdings(gateway);
        let mut events = Vec::new();
        for (nsp, room) in old.rooms.difference(&state.rooms) {
            self.set(gateway, nsp, Item::Room(room), false);
        }
        for (nsp, room) in state.rooms.difference(&old.rooms) {
            self.set(gateway, nsp, Item::Room(room), true);
        }
        for ((nsp, user), online) in old
            .users
            .difference(&state.users)
            .map(|item| (item, false))
            .chain(state.users.difference(&old.users).map(|item| (item, true)))
        {
            let change = self.set(gateway, nsp, Item::User(user), online).1;
            if change != PresenceChange::Unchanged && user != ANONYMOUS {
                events.push(PresenceEvent { nsp: nsp.clone(), user: user.clone(), online });
            }
        }
        events
    }

    /// Keeps only what `owns` says this router owns, by ownership key
    /// (`room:<nsp>:<room>` for rooms, `nsp:<nsp>` for presence); the rest
    /// moved to another owner, whom its gateways announce it to.
    pub fn retain_owned(&mut self, owns: impl Fn(&str) -> bool) {
        let mut dropped = Vec::new();
        for (nsp, ns) in &self.namespaces {
            let presence_owned = owns(&nsp_key(nsp));
            for (user, gateways) in ns.users.iter().filter(|_| !presence_owned) {
                dropped.extend(gateways.iter().map(|gw| (gw.clone(), nsp.clone(), user.clone(), true)));
            }
            for (room, state) in ns.rooms.iter().filter(|(room, _)| !owns(&room_key(nsp, room))) {
                dropped.extend(state.gateways.iter().map(|gw| (gw.clone(), nsp.clone(), room.clone(), false)));
            }
        }
        for (gateway, nsp, name, is_user) in dropped {
            let item = if is_user { Item::User(&name) } else { Item::Room(&name) };
            self.set(&gateway, &nsp, item, false);
        }
    }

    /// Records that `gateway` holds (or no longer holds) `item`; whether
    /// that changed anything, and for a user what it changed cluster-wide.
    fn set(&mut self, gateway: &GatewayId, nsp: &str, item: Item<'_>, held: bool) -> (bool, PresenceChange) {
        if held {
            let ns = self.namespaces.entry(nsp.to_owned()).or_default();
            let (inserted, first) = match item {
                Item::Room(room) => {
                    (ns.rooms.entry(room.to_owned()).or_default().gateways.insert(gateway.clone()), false)
                }
                Item::User(user) => {
                    let gateways = ns.users.entry(user.to_owned()).or_default();
                    (gateways.insert(gateway.clone()), gateways.len() == 1)
                }
            };
            if !inserted {
                return (false, PresenceChange::Unchanged);
            }
            *ns.holders.entry(gateway.clone()).or_default() += 1;
            let holdings = self.held.entry(gateway.clone()).or_default();
            match item {
                Item::Room(room) => holdings.rooms.insert((nsp.to_owned(), room.to_owned())),
                Item::User(user) => holdings.users.insert((nsp.to_owned(), user.to_owned())),
            };
            (true, if first { PresenceChange::CameOnline } else { PresenceChange::Unchanged })
        } else {
            let Some(ns) = self.namespaces.get_mut(nsp) else { return (false, PresenceChange::Unchanged) };
            let (removed, last) = match item {
                Item::Room(room) => remove_from(&mut ns.rooms, room, |r| &mut r.gateways, gateway),
                Item::User(user) => remove_from(&mut ns.users, user, |g| g, gateway),
            };
            if !removed {
                return (false, PresenceChange::Unchanged);
            }
            if let Some(count) = ns.holders.get_mut(gateway) {
                *count -= 1;
                if *count == 0 {
                    ns.holders.remove(gateway);
                }
            }
            if ns.holders.is_empty() {
                self.namespaces.remove(nsp);
            }
            if let Some(holdings) = self.held.get_mut(gateway) {
                let key = (nsp.to_owned(), item.name().to_owned());
                match item {
                    Item::Room(_) => holdings.rooms.remove(&key),
                    Item::User(_) => holdings.users.remove(&key),
                };
                if holdings.rooms.is_empty() && holdings.users.is_empty() {
                    self.held.remove(gateway);
                }
            }
            let went_offline = matches!(item, Item::User(_)) && last;
            (true, if went_offline { PresenceChange::WentOffline } else { PresenceChange::Unchanged })
        }
    }
}

impl Item<'_> {
    fn name(&self) -> &str {
        match self {
            Item::Room(name) | Item::User(name) => name,
        }
    }
}

/// Removes `gateway` from the set of `map[name]`, and the entry when its
/// set is left empty; (removed, that was the last one).
fn remove_from<V>(
    map: &mut HashMap<String, V>,
    name: &str,
    gateways: impl Fn(&mut V) -> &mut BTreeSet<GatewayId>,
    gateway: &GatewayId,
) -> (bool, bool) {
    let Some(value) = map.get_mut(name) else { return (false, false) };
    let set = gateways(value);
    let removed = set.remove(gateway);
    let last = set.is_empty();
    if last {
        map.remove(name);
    }
    (removed, last)
}

/// Sets of `(nsp, name)` pairs, for building [`Holdings`].
pub fn pairs<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeSet<(String, String)> {
    items.into_iter().map(|(nsp, name)| (nsp.to_owned(), name.to_owned())).collect()
}

#[cfg(test)]
mod tests;
