//! [`RoomTable`]: what the owning router knows of its rooms and namespaces.
//!
//! Gateways are the truth about their own sockets; this table only records
//! what they announced: per room, the gateways that hold at least one
//! member (they announce their first and last member) and the users in it,
//! and per namespace the users online, each user with the gateways holding
//! it (they announce a user's first and last socket there). From that the router knows where a broadcast
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
/// rooms, its users per namespace and its users per room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holdings {
    /// `(nsp, room)`.
    pub rooms: BTreeSet<(String, String)>,
    /// `(nsp, user)`.
    pub users: BTreeSet<(String, String)>,
    /// `(nsp, room, user)`.
    pub room_users: BTreeSet<(String, String, String)>,
}

impl Holdings {
    fn is_empty(&self) -> bool {
        self.rooms.is_empty() && self.users.is_empty() && self.room_users.is_empty()
    }

    fn set(&mut self, nsp: &str, item: Item<'_>, held: bool) {
        let nsp = nsp.to_owned();
        match (item, held) {
            (Item::Room(room), true) => self.rooms.insert((nsp, room.to_owned())),
            (Item::Room(room), false) => self.rooms.remove(&(nsp, room.to_owned())),
            (Item::User(user), true) => self.users.insert((nsp, user.to_owned())),
            (Item::User(user), false) => self.users.remove(&(nsp, user.to_owned())),
            (Item::RoomUser(room, user), true) => self.room_users.insert((nsp, room.to_owned(), user.to_owned())),
            (Item::RoomUser(room, user), false) => self.room_users.remove(&(nsp, room.to_owned(), user.to_owned())),
        };
    }
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
    /// Gateways holding anything here (a room, a user), with how many
    /// things: the audience of a namespace-wide broadcast.
    holders: BTreeMap<GatewayId, usize>,
    seq: u64,
}

#[derive(Debug, Default)]
struct Room {
    gateways: BTreeSet<GatewayId>,
    users: HashMap<String, BTreeSet<GatewayId>>,
    seq: u64,
}

/// Something a gateway holds in a namespace.
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Room(&'a str),
    User(&'a str),
    RoomUser(&'a str, &'a str),
}

impl Namespace {
    /// The gateways holding `item`, the entry made when `create`.
    fn gateways_mut(&mut self, item: Item<'_>, create: bool) -> Option<&mut BTreeSet<GatewayId>> {
        match item {
            Item::Room(name) => self.room_mut(name, create).map(|room| &mut room.gateways),
            Item::User(user) => entry(&mut self.users, user, create),
            Item::RoomUser(name, user) => {
                self.room_mut(name, create).and_then(|room| entry(&mut room.users, user, create))
            }
        }
    }

    fn room_mut(&mut self, name: &str, create: bool) -> Option<&mut Room> {
        if create { Some(self.rooms.entry(name.to_owned()).or_default()) } else { self.rooms.get_mut(name) }
    }

    /// Drops the entries of `item` that hold nothing any more.
    fn prune(&mut self, item: Item<'_>) {
        match item {
            Item::User(user) => {
                if self.users.get(user).is_some_and(BTreeSet::is_empty) {
                    self.users.remove(user);
                }
            }
            Item::Room(name) | Item::RoomUser(name, _) => {
                if let Some(room) = self.rooms.get_mut(name) {
                    if let Item::RoomUser(_, user) = item
                        && room.users.get(user).is_some_and(BTreeSet::is_empty)
                    {
                        room.users.remove(user);
                    }
                    if room.gateways.is_empty() && room.users.is_empty() {
                        self.rooms.remove(name);
                    }
                }
            }
        }
    }
}

/// The set of `map[name]`, made when `create`.
fn entry<'m>(
    map: &'m mut HashMap<String, BTreeSet<GatewayId>>,
    name: &str,
    create: bool,
) -> Option<&'m mut BTreeSet<GatewayId>> {
    if create { Some(map.entry(name.to_owned()).or_default()) } else { map.get_mut(name) }
}

impl RoomTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A gateway got its first member of a room (`present`) or lost its
    /// last. True when that changed the room's gateways.
    pub fn membership(&mut self, gateway: &GatewayId, nsp: &str, room: &str, present: bool) -> bool {
        self.set(gateway, nsp, Item::Room(room), present) != Change::None
    }

    /// A user's first socket on a gateway connected (`online`) or its last
    /// there left; what that changed for the user cluster-wide.
    pub fn presence(&mut self, gateway: &GatewayId, nsp: &str, user: &str, online: bool) -> PresenceChange {
        match self.set(gateway, nsp, Item::User(user), online) {
            _ if user == ANONYMOUS => PresenceChange::Unchanged,
            Change::First => PresenceChange::CameOnline,
            Change::Last => PresenceChange::WentOffline,
            Change::Some | Change::None => PresenceChange::Unchanged,
        }
    }

    /// A user's first socket in a room on a gateway joined it (`present`),
    /// or its last there left; `CameOnline` when the user is now in the
    /// room (on any gateway) and was not, `WentOffline` when it left it.
    pub fn room_presence(
        &mut self,
        gateway: &GatewayId,
        nsp: &str,
        room: &str,
        user: &str,
        present: bool,
    ) -> PresenceChange {
        match self.set(gateway, nsp, Item::RoomUser(room, user), present) {
            Change::First => PresenceChange::CameOnline,
            Change::Last => PresenceChange::WentOffline,
            Change::Some | Change::None => PresenceChange::Unchanged,
        }
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
        sorted_users(self.namespaces.get(nsp).map(|ns| &ns.users))
    }

    /// The users in a room, sorted.
    pub fn room_users(&self, nsp: &str, room: &str) -> Vec<String> {
        sorted_users(self.namespaces.get(nsp).and_then(|ns| ns.rooms.get(room)).map(|room| &room.users))
    }

    /// The gateways holding a socket of any of `users` in a namespace,
    /// each once, sorted; the anonymous user is nobody to locate.
    pub fn locate_users<'a>(&self, nsp: &str, users: impl IntoIterator<Item = &'a str>) -> Vec<GatewayId> {
        let Some(ns) = self.namespaces.get(nsp) else { return Vec::new() };
        let found: BTreeSet<&GatewayId> = users
            .into_iter()
            .filter(|user| *user != ANONYMOUS)
            .filter_map(|user| ns.users.get(user))
            .flatten()
            .collect();
        found.into_iter().cloned().collect()
    }

    /// How many rooms the table holds (rooms some gateway announced a
    /// member or a user of).
    pub fn room_count(&self) -> usize {
        self.namespaces.values().map(|ns| ns.rooms.len()).sum()
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
        for (nsp, room, user) in old.room_users.difference(&state.room_users) {
            self.set(gateway, nsp, Item::RoomUser(room, user), false);
        }
        for (nsp, room, user) in state.room_users.difference(&old.room_users) {
            self.set(gateway, nsp, Item::RoomUser(room, user), true);
        }
        for (nsp, room) in old.rooms.difference(&state.rooms) {
            self.set(gateway, nsp, Item::Room(room), false);
        }
        for (nsp, room) in state.rooms.difference(&old.rooms) {
            self.set(gateway, nsp, Item::Room(room), true);
        }
        let mut events = Vec::new();
        let gone = old.users.difference(&state.users).map(|item| (item, false));
        for ((nsp, user), online) in gone.chain(state.users.difference(&old.users).map(|item| (item, true))) {
            if self.presence(gateway, nsp, user, online) != PresenceChange::Unchanged {
                events.push(PresenceEvent { nsp: nsp.clone(), user: user.clone(), online });
            }
        }
        events
    }

    /// Keeps only what `owns` says this router owns, by ownership key
    /// (`room:<nsp>:<room>` for rooms and their users, `nsp:<nsp>` for the
    /// namespace's users); the rest moved to another owner, whom its
    /// gateways announce it to.
    pub fn retain_owned(&mut self, owns: impl Fn(&str) -> bool) {
        let mut dropped: Vec<(GatewayId, Holdings)> = Vec::new();
        for (gateway, holdings) in &self.held {
            let users = holdings.users.iter().filter(|(nsp, _)| !owns(&nsp_key(nsp))).cloned().collect();
            let rooms = holdings.rooms.iter().filter(|(nsp, room)| !owns(&room_key(nsp, room))).cloned().collect();
            let room_users =
                holdings.room_users.iter().filter(|(nsp, room, _)| !owns(&room_key(nsp, room))).cloned().collect();
            let moved = Holdings { rooms, users, room_users };
            if !moved.is_empty() {
                dropped.push((gateway.clone(), moved));
            }
        }
        for (gateway, moved) in dropped {
            for (nsp, room, user) in &moved.room_users {
                self.set(&gateway, nsp, Item::RoomUser(room, user), false);
            }
            for (nsp, room) in &moved.rooms {
                self.set(&gateway, nsp, Item::Room(room), false);
            }
            for (nsp, user) in &moved.users {
                self.set(&gateway, nsp, Item::User(user), false);
            }
        }
    }

    /// Records that `gateway` holds (or no longer holds) `item`.
    fn set(&mut self, gateway: &GatewayId, nsp: &str, item: Item<'_>, held: bool) -> Change {
        let ns = if held {
            self.namespaces.entry(nsp.to_owned()).or_default()
        } else {
            match self.namespaces.get_mut(nsp) {
                Some(ns) => ns,
                None => return Change::None,
            }
        };
        let Some(gateways) = ns.gateways_mut(item, held) else { return Change::None };
        let changed = if held { gateways.insert(gateway.clone()) } else { gateways.remove(gateway) };
        if !changed {
            return Change::None;
        }
        let change = match (held, gateways.len()) {
            (true, 1) => Change::First,
            (false, 0) => Change::Last,
            _ => Change::Some,
        };
        ns.prune(item);
        let count = ns.holders.entry(gateway.clone()).or_default();
        if held {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                ns.holders.remove(gateway);
            }
            if ns.holders.is_empty() {
                self.namespaces.remove(nsp);
            }
        }
        let holdings = self.held.entry(gateway.clone()).or_default();
        holdings.set(nsp, item, held);
        if holdings.is_empty() {
            self.held.remove(gateway);
        }
        change
    }
}

/// What one [`RoomTable::set`] did to the gateways of its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    /// The first gateway holds it.
    First,
    /// The last gateway left it.
    Last,
    /// Another gateway came or went.
    Some,
}

/// The users of a map, without the anonymous one, sorted.
fn sorted_users(users: Option<&HashMap<String, BTreeSet<GatewayId>>>) -> Vec<String> {
    let mut users: Vec<String> =
        users.map(|users| users.keys().filter(|user| *user != ANONYMOUS).cloned().collect()).unwrap_or_default();
    users.sort_unstable();
    users
}

/// Sets of `(nsp, name)` pairs, for building [`Holdings`].
pub fn pairs<'a>(items: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeSet<(String, String)> {
    items.into_iter().map(|(nsp, name)| (nsp.to_owned(), name.to_owned())).collect()
}

#[cfg(test)]
mod tests;
