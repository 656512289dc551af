//! Who owns what: rendezvous (highest random weight) hashing of keys over
//! the live routers, and the keys themselves.
//!
//! The owner of key `k` is the router `r` with the largest [`hash64`]`(r, k)`.
//! Every process that sees the same live set picks the same owner without
//! talking to the others, and when a router leaves only its keys move (each
//! to the runner-up); when one joins, it takes about `1/(n+1)` of the keys,
//! from every other router alike.
//!
//! The hash must be the same in every process and every version of the
//! code, or two routers would both (or neither) own a room during a rolling
//! upgrade. So it is spelled out here rather than taken from `std::hash`
//! (whose algorithm may change): FNV-1a 64 over the router id, a `0xff`
//! byte (never in UTF-8, so `("ab", "c")` and `("a", "bc")` differ) and the
//! key, then the MurmurHash3 64-bit finalizer, because FNV alone mixes its
//! last bytes poorly and the ranking compares hashes that differ in their
//! first bytes only. Tests pin its values.

use crate::RouterId;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The weight of router `router` for key `key`.
pub fn hash64(router: &str, key: &str) -> u64 {
    let bytes = router.as_bytes().iter().chain(&[0xff]).chain(key.as_bytes());
    fmix64(bytes.fold(FNV_OFFSET, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)))
}

/// MurmurHash3's 64-bit finalizer: every input bit flips about half of the
/// output bits.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The owner of `key` among `live`: the largest weight, ties (which a
/// 64-bit hash makes all but impossible) to the larger id, so that the
/// answer never depends on the order of `live`. `None` when nobody is live.
pub fn owner<'a>(key: &str, live: impl IntoIterator<Item = &'a RouterId>) -> Option<&'a RouterId> {
    live.into_iter().max_by_key(|router| (hash64(router.as_str(), key), *router))
}

/// The ownership key of a room: `room:<nsp>:<room>`.
pub fn room_key(nsp: &str, room: &str) -> String {
    format!("room:{nsp}:{room}")
}

/// The ownership key of a namespace (its presence and its namespace-wide
/// broadcasts): `nsp:<nsp>`.
pub fn nsp_key(nsp: &str) -> String {
    format!("nsp:{nsp}")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::NodeId;

    fn routers(n: usize) -> Vec<RouterId> {
        (0..n).map(|i| NodeId::new(&format!("router-{i}")).unwrap()).collect()
    }

    fn keys() -> Vec<String> {
        (0..10_000).map(|i| room_key("/chat", &format!("room-{i}"))).collect()
    }

    fn owners<'a>(keys: &'a [String], live: &'a [RouterId]) -> HashMap<&'a str, &'a RouterId> {
        keys.iter().map(|key| (key.as_str(), owner(key, live).unwrap())).collect()
    }

    #[test]
    fn the_hash_is_pinned() {
        // FNV-1a 64 of "a" is a published test vector; the finalizer is
        // applied on top.
        let fnv_a = (FNV_OFFSET ^ u64::from(b'a')).wrapping_mul(FNV_PRIME);
        assert_eq!(fnv_a, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash64("router-0", "room:/chat:general"), PINNED_GENERAL);
        assert_eq!(hash64("", ""), PINNED_EMPTY);
        assert_ne!(hash64("ab", "c"), hash64("a", "bc"), "the separator keeps id and key apart");
    }

    // Computed independently (a few lines of Python); they must never change.
    const PINNED_GENERAL: u64 = 0xb900_6cf1_1204_da5d;
    const PINNED_EMPTY: u64 = 0x1bbd_5c81_3c69_a8d7;

    #[test]
    fn owners_do_not_depend_on_the_order_of_the_live_set() {
        let live = routers(5);
        let mut reversed = live.clone();
        reversed.reverse();
        for key in keys().iter().take(500) {
            assert_eq!(owner(key, &live), owner(key, &reversed));
        }
        assert_eq!(owner("room:/:x", &[]), None);
        assert_eq!(owner("room:/:x", &live[..1]), Some(&live[0]));
    }

    #[test]
    fn keys_spread_evenly() {
        let keys = keys();
        for n in 2..=7 {
            let live = routers(n);
            let mut counts: HashMap<&RouterId, usize> = HashMap::new();
            for router in owners(&keys, &live).into_values() {
                *counts.entry(router).or_default() += 1;
            }
            let fair = keys.len() / n;
            for router in &live {
                let count = counts.get(router).copied().unwrap_or(0);
                assert!(count.abs_diff(fair) * 5 <= fair, "{n} routers: {router} owns {count}, fair is {fair}");
            }
        }
    }

    #[test]
    fn only_the_keys_of_a_router_that_leaves_move() {
        let keys = keys();
        let live = routers(5);
        let before = owners(&keys, &live);
        let remaining: Vec<RouterId> = live.iter().filter(|r| r.as_str() != "router-2").cloned().collect();
        let after = owners(&keys, &remaining);
        for key in &keys {
            let (was, is) = (before[key.as_str()], after[key.as_str()]);
            if was.as_str() == "router-2" {
                assert_ne!(is.as_str(), "router-2");
            } else {
                assert_eq!(was, is, "{key} moved from a router that stayed");
            }
        }
    }

    #[test]
    fn a_router_that_joins_takes_a_fair_share_and_nothing_else_moves() {
        let keys = keys();
        let live = routers(4);
        let before = owners(&keys, &live);
        let grown = routers(5);
        let after = owners(&keys, &grown);
        let moved: Vec<&String> = keys.iter().filter(|key| before[key.as_str()] != after[key.as_str()]).collect();
        assert!(moved.iter().all(|key| after[key.as_str()].as_str() == "router-4"), "keys move to the newcomer only");
        let fair = keys.len() / 5;
        assert!(moved.len().abs_diff(fair) * 5 <= fair, "{} moved, fair is {fair}", moved.len());
    }

    #[test]
    fn keys_name_rooms_and_namespaces() {
        assert_eq!(room_key("/chat", "general"), "room:/chat:general");
        assert_eq!(nsp_key("/chat"), "nsp:/chat");
    }
}
