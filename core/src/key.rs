//! 64-bit keys that say which shard owns them.
//!
//! | bits   | meaning                                            |
//! |--------|----------------------------------------------------|
//! | 63..52 | shard id (0..=4095), matching the 4096 routing slots |
//! | 51..0  | a per-shard counter, starting at 1                 |
//!
//! So `4503599627370497` is shard 1, counter 1. Instance, job, deployment and subscription
//! keys all have this form, so any of them routes to its shard with no lookup. A shard hands
//! out keys in increasing order; the counter never wraps (2^52 keys at a million per second
//! last 142 years), and running out is a rejection, not a wrap.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// Bits of a key that hold the counter.
pub const KEY_COUNTER_BITS: u32 = 52;
/// The largest shard id a key can carry.
pub const SHARD_ID_MAX: u16 = (1 << (64 - KEY_COUNTER_BITS)) - 1;
/// The largest counter value a key can carry.
pub const KEY_COUNTER_MAX: u64 = (1 << KEY_COUNTER_BITS) - 1;

/// Keys a shard keeps in reserve: a command is refused once fewer remain, so that no command
/// can run out halfway (one command uses at most a few keys per step, and steps are capped).
pub const KEYS_RESERVE: u64 = 1 << 40;

const _: () = assert!(SHARD_ID_MAX == 4095);
const _: () = assert!(KEYS_RESERVE < KEY_COUNTER_MAX / 1000);

/// A key: shard id in the top 12 bits, counter in the low 52.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key(pub u64);

impl Key {
    /// The first key a shard hands out.
    pub fn first(shard: u16) -> Key {
        Key::new(shard, 1)
    }

    /// A key from its parts. Panics on a shard id or counter out of range: both come from the
    /// shard's own configuration and generator, never from input.
    pub fn new(shard: u16, counter: u64) -> Key {
        assert!(shard <= SHARD_ID_MAX, "shard id {shard} over SHARD_ID_MAX");
        assert!(
            counter <= KEY_COUNTER_MAX,
            "key counter {counter} over KEY_COUNTER_MAX"
        );
        Key((u64::from(shard) << KEY_COUNTER_BITS) | counter)
    }

    /// The shard that owns this key.
    pub fn shard(self) -> u16 {
        (self.0 >> KEY_COUNTER_BITS) as u16
    }

    /// The per-shard counter.
    pub fn counter(self) -> u64 {
        self.0 & KEY_COUNTER_MAX
    }

    /// The next key of the same shard, or `None` when the counter is exhausted.
    pub fn next(self) -> Option<Key> {
        (self.counter() < KEY_COUNTER_MAX).then(|| Key(self.0 + 1))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_is_in_the_top_bits() {
        let key = Key::first(1);
        assert_eq!(key.0, 4_503_599_627_370_497);
        assert_eq!((key.shard(), key.counter()), (1, 1));
        let last = Key::new(SHARD_ID_MAX, KEY_COUNTER_MAX);
        assert_eq!(last.0, u64::MAX);
        assert_eq!(last.shard(), SHARD_ID_MAX);
        assert_eq!(last.next(), None);
        assert_eq!(Key::new(7, 41).next(), Some(Key::new(7, 42)));
    }

    fn hash(key: Key) -> u64 {
        use std::hash::BuildHasher;
        BuildHasherDefault::<KeyHasher>::default().hash_one(key)
    }

    #[test]
    fn neighbouring_keys_get_neighbouring_slots_and_spread_tags() {
        let first = Key::new(3, 1_000);
        let mut tags = std::collections::BTreeSet::new();
        for offset in 0..1024u64 {
            let key = Key(first.0 + offset);
            let hash = hash(key);
            // The slot comes from the low bits: they are the key's own.
            assert_eq!(hash & !TAG_BITS, key.0 & !TAG_BITS, "{key}");
            tags.insert(hash >> 57);
        }
        // The tags of 1,024 keys in a row take most of the 128 values, so a slot's tag
        // rules out almost every other key (a constant tag would make the map compare each).
        assert!(tags.len() > 120, "only {} distinct tags", tags.len());
        // The same key always hashes the same.
        assert_eq!(hash(first), hash(Key(first.0)));
    }

    #[test]
    fn a_key_map_holds_keys_far_apart_and_close_together() {
        let mut map = KeyMap::default();
        let keys: Vec<Key> = (0..5_000u64)
            .map(|i| Key::new((i % 7) as u16, i * 977 % 100_003 + 1))
            .collect();
        for (i, key) in keys.iter().enumerate() {
            map.insert(*key, i);
        }
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(map.get(key), Some(&i));
        }
        assert_eq!(map.len(), keys.len());
    }
}

/// Hashes keys for the state's hot maps (instances, element instances, jobs, variables), so a
/// lookup costs about one cache miss instead of the three or four of a B-tree search. Keys
/// are handed out by the shard itself, so there is no adversary to defend against with a
/// keyed hash.
///
/// The hash keeps the key's low bits as they are and puts a multiply's top seven bits (the
/// Fx constant) in its own top seven, [`TAG_BITS`]. The map picks a key's slot from the low
/// bits, so keys handed out together (an instance, its element instances and its job, made
/// by one command) sit in neighbouring slots and share cache lines, and the table is filled
/// in the order keys are made, like a ring. It matches a slot's tag against the top seven
/// bits, which the multiply spreads. A fully mixed hash scattered those neighbours over the
/// whole table: `ringflow-bench engine --inflight 2048` ran 7% faster with this one and
/// `--inflight 16384` 30% (bench/RESULTS.md, 2026-11-22), where the state no longer fits in
/// the CPU's caches.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
/// The bits of a key's hash that the map compares in a slot's tag (hashbrown's top seven).
pub const TAG_BITS: u64 = 0xFE00_0000_0000_0000;

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(FX_SEED);
        }
    }

    fn write_u64(&mut self, value: u64) {
        let mixed = self.0.rotate_left(5) ^ value;
        self.0 = mixed ^ (mixed.wrapping_mul(FX_SEED) & TAG_BITS);
    }
}

/// A hash map by key. Its iteration order is arbitrary: whatever must be ordered (snapshots,
/// the state's public iterators) goes through [`sorted_values`].
pub type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

/// The values of a [`KeyMap`] in key order.
pub fn sorted_values<V>(map: &KeyMap<V>) -> Vec<&V> {
    let mut entries: Vec<(&Key, &V)> = map.iter().collect();
    entries.sort_unstable_by_key(|(key, _)| **key);
    entries.into_iter().map(|(_, value)| value).collect()
}

/// The entries of a [`KeyMap`] in key order.
pub fn sorted_entries<V>(map: &KeyMap<V>) -> Vec<(&Key, &V)> {
    let mut entries: Vec<(&Key, &V)> = map.iter().collect();
    entries.sort_unstable_by_key(|(key, _)| **key);
    entries
}
