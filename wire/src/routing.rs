//! Which shard owns a key.
//!
//! Two kinds of keys route differently:
//!
//! - **Entity keys** (process instance, job, incident, deployment, subscription keys) are
//!   64-bit numbers with the owning shard id in the top 12 bits: `shard = key >> 52`. No
//!   lookup, no hash.
//! - **Text keys** (a correlation key, a business key) are hashed to one of [`SLOTS`] slots;
//!   the topology's slot table maps each slot to a shard. Moving slots between shards is how a
//!   cluster grows without rehashing every key.
//!
//! The hash is 64-bit FNV-1a over the key's UTF-8 bytes, mixed by MurmurHash3's 64-bit
//! finalizer (FNV-1a alone spreads keys that differ only at the end, like `order-1`,
//! `order-2`, badly over its top bits); the slot is the top 12 bits. All arithmetic is on
//! unsigned 64-bit integers, wrapping:
//!
//! ```text
//! hash = 0xcbf29ce484222325
//! for each byte b of the key's UTF-8 encoding:
//!     hash = hash XOR b
//!     hash = hash * 0x100000001b3
//! hash = hash XOR (hash >> 33);  hash = hash * 0xff51afd7ed558ccd
//! hash = hash XOR (hash >> 33);  hash = hash * 0xc4ceb9fe1a85ec53
//! hash = hash XOR (hash >> 33)
//! slot = hash >> 52            (0 ..= 4095)
//! ```
//!
//! Test vectors (checked by this module's tests; a client in any language must reproduce
//! them):
//!
//! | key | FNV-1a 64 | after the finalizer | slot |
//! |---|---|---|---:|
//! | `""` (empty) | `0xcbf29ce484222325` | `0xefd01f60ba992926` | 3837 |
//! | `a` | `0xaf63dc4c8601ec8c` | `0x82a2a958a9bece5b` | 2090 |
//! | `order-4711` | `0xe1e9ab68fdda093d` | `0x140f65d68b879ec1` | 320 |
//! | `customer:42` | `0x8bcecd7098807c3f` | `0xbcdbd52263084440` | 3021 |
//! | `Größe` (UTF-8 `47 72 c3 b6 c3 9f 65`) | `0x86945265579d537a` | `0xe504efb774d003a6` | 3664 |
//!
//! (Computed with an independent Python implementation of the pseudocode above.)
//!
//! The slot table of a cluster with `n` shards gives shard `s` the contiguous slots
//! `[s * 4096 / n, (s + 1) * 4096 / n)`: see [`SlotTable::uniform`].

/// Number of routing slots. Fixed for the life of a cluster.
pub const SLOTS: usize = 4096;
/// Bits of an entity key below the shard id.
pub const KEY_SHARD_SHIFT: u32 = 52;
/// The largest shard id (12 bits).
pub const SHARD_ID_MAX: u16 = 4095;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const _: () = assert!(SLOTS == 1 << (64 - KEY_SHARD_SHIFT));

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finalizer (`fmix64`).
pub fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The routing hash of a text key: `fmix64(fnv1a64(utf8 bytes))`.
pub fn routing_hash(key: &str) -> u64 {
    fmix64(fnv1a64(key.as_bytes()))
}

/// The slot of a text key (a correlation key or a business key).
pub fn slot_of(key: &str) -> u16 {
    (routing_hash(key) >> KEY_SHARD_SHIFT) as u16
}

/// The shard that owns an entity key (instance, job, incident, ... key).
pub fn shard_of_entity_key(key: u64) -> u16 {
    (key >> KEY_SHARD_SHIFT) as u16
}

/// Why a slot table cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotTableError {
    /// Shard count out of range.
    #[error("a cluster has 1 to {max} shards, not {shards}", max = SHARD_ID_MAX as usize + 1)]
    ShardCount {
        /// The count given.
        shards: usize,
    },
    /// A table whose length is not `SLOTS`, or which names a shard that does not exist.
    #[error("slot table invalid: {0}")]
    Invalid(String),
}

/// The map from slots to shards, as the topology carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotTable {
    shard_of_slot: Vec<u16>,
    shards: usize,
}

impl SlotTable {
    /// `shards` shards, each owning a contiguous, equal (within one) range of slots.
    pub fn uniform(shards: usize) -> Result<SlotTable, SlotTableError> {
        if shards == 0 || shards > SHARD_ID_MAX as usize + 1 {
            return Err(SlotTableError::ShardCount { shards });
        }
        let shard_of_slot = (0..SLOTS)
            .map(|slot| (slot * shards / SLOTS) as u16)
            .collect();
        Ok(SlotTable {
            shard_of_slot,
            shards,
        })
    }

    /// A table as received from a server: one shard id per slot, each below `shards`.
    pub fn from_slots(shard_of_slot: Vec<u16>, shards: usize) -> Result<SlotTable, SlotTableError> {
        if shard_of_slot.len() != SLOTS {
            let length = shard_of_slot.len();
            return Err(SlotTableError::Invalid(format!(
                "{length} slots, not {SLOTS}"
            )));
        }
        if let Some(slot) = shard_of_slot.iter().position(|s| *s as usize >= shards) {
            let shard = shard_of_slot[slot];
            return Err(SlotTableError::Invalid(format!(
                "slot {slot} names shard {shard} of {shards}"
            )));
        }
        Ok(SlotTable {
            shard_of_slot,
            shards,
        })
    }

    /// The shard that owns a text key.
    pub fn shard_of(&self, key: &str) -> u16 {
        self.shard_of_slot[slot_of(key) as usize]
    }

    /// The shard of a slot.
    pub fn shard_of_slot(&self, slot: u16) -> u16 {
        self.shard_of_slot[slot as usize]
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The shard of every slot, in slot order (as the topology carries it).
    pub fn as_slice(&self) -> &[u16] {
        &self.shard_of_slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_test_vectors_hold() {
        let vectors: [(&str, u64, u64, u16); 5] = [
            ("", 0xcbf2_9ce4_8422_2325, 0xefd0_1f60_ba99_2926, 3837),
            ("a", 0xaf63_dc4c_8601_ec8c, 0x82a2_a958_a9be_ce5b, 2090),
            (
                "order-4711",
                0xe1e9_ab68_fdda_093d,
                0x140f_65d6_8b87_9ec1,
                320,
            ),
            (
                "customer:42",
                0x8bce_cd70_9880_7c3f,
                0xbcdb_d522_6308_4440,
                3021,
            ),
            ("Größe", 0x8694_5265_579d_537a, 0xe504_efb7_74d0_03a6, 3664),
        ];
        for (key, fnv, hash, slot) in vectors {
            assert_eq!(fnv1a64(key.as_bytes()), fnv, "FNV-1a of {key:?}");
            assert_eq!(routing_hash(key), hash, "routing hash of {key:?}");
            assert_eq!(slot_of(key), slot, "slot of {key:?}");
        }
    }

    #[test]
    fn keys_spread_evenly_over_slots_and_shards() {
        let keys = 1_000_000;
        let mut per_slot = vec![0u32; SLOTS];
        for n in 0..keys {
            per_slot[slot_of(&format!("order-{n}")) as usize] += 1;
        }
        // About 244 keys per slot; Poisson spread puts the extremes of 4096 slots near
        // +-3.5 standard deviations (+-55), so +-30% fails only on a real skew.
        let expected = keys as f64 / SLOTS as f64;
        let (min, max) = (
            per_slot.iter().min().unwrap(),
            per_slot.iter().max().unwrap(),
        );
        assert!(
            f64::from(*min) > expected * 0.7 && f64::from(*max) < expected * 1.3,
            "slots hold {min}..{max} keys, expected about {expected:.0}"
        );
        let table = SlotTable::uniform(3).expect("3 shards");
        let mut per_shard = [0u32; 3];
        for (slot, count) in per_slot.iter().enumerate() {
            per_shard[table.shard_of_slot(slot as u16) as usize] += count;
        }
        for count in per_shard {
            let share = f64::from(count) / keys as f64;
            assert!(
                (share - 1.0 / 3.0).abs() < 0.01,
                "a shard got {share:.4} of the keys"
            );
        }
    }

    #[test]
    fn slot_tables_are_contiguous_and_checked() {
        let table = SlotTable::uniform(2).expect("2 shards");
        assert_eq!((table.shard_of_slot(0), table.shard_of_slot(2047)), (0, 0));
        assert_eq!(
            (table.shard_of_slot(2048), table.shard_of_slot(4095)),
            (1, 1)
        );
        assert_eq!(
            SlotTable::uniform(0),
            Err(SlotTableError::ShardCount { shards: 0 })
        );
        assert!(SlotTable::uniform(4097).is_err());
        assert!(SlotTable::from_slots(vec![0; 10], 1).is_err());
        let mut slots = vec![0u16; SLOTS];
        slots[7] = 2;
        let error = SlotTable::from_slots(slots, 2).expect_err("shard 2 of 2");
        assert!(
            error.to_string().contains("slot 7 names shard 2"),
            "{error}"
        );
        assert_eq!(shard_of_entity_key(4_503_599_627_370_497), 1);
        assert_eq!(shard_of_entity_key(u64::MAX), SHARD_ID_MAX);
    }
}
