//! A sorted map that keeps a hash of its whole content up to date at the cost of what changed.
//!
//! An entity state's hash commits to its accounts and its order book through these maps
//! instead of encoding them whole for every frame (see `EntityState::hash`). The commitment:
//!
//! - each entry's leaf hash is `keccak(postcard((key, value)))`, cached with the entry;
//! - the entries, in key order, are cut into chunks: a chunk ends at every key whose
//!   [`ChunkKey::ends_chunk`] holds (about one key in [`CHUNK`]), and the keys after the last
//!   such key form the last chunk. The cut depends on the set of keys alone, not on the order
//!   in which they came, so every replica, and a replica restored from a snapshot, cuts alike;
//! - a chunk's hash is the keccak of its leaf hashes in order, cached per chunk;
//! - the root is `keccak("xln.merkle_map.v1" ‖ uint64 count ‖ the chunk hashes in order)`.
//!
//! It binds the content like a hash of its encoding does: two maps with one root have the same
//! leaf hashes in the same order, so the same entries (or a keccak collision was found).
//!
//! Every way to change an entry (`get_mut`, `insert`, `remove`) forgets the cached hashes that
//! depend on it: the entry's own, its chunk's and the root. The next `root` recomputes those
//! and nothing else: one changed account costs one account encoding, one chunk (~64 leaf
//! hashes) and the root (32 bytes per chunk). Keys chosen so that none ends a chunk (a peer can
//! grind its entity id) make chunks longer: at worst a keccak over 32 bytes per entry.
//!
//! Entries sit behind `Arc`s: cloning the map (an entity state is cloned for every frame) copies
//! pointers, and an entry is copied when it first changes in the clone (`Arc::make_mut`).
//! A map is encoded like a `BTreeMap` of the same entries, byte for byte; the caches are not
//! encoded, and take no part in equality.

use crate::board::EntityId;
use crate::codec::hash_of;
use crate::crypto::{Hash, keccak256};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, btree_map};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

/// What a root's preimage starts with. The commitments to a state are hashed often: their
/// domain tags are plain names (a keccak's worth cheaper than `codec::tag`).
const ROOT_TAG: &[u8] = b"xln.merkle_map.v1";

/// One key in about this many ends a chunk. The core's own tests cut much smaller chunks, so
/// that the few accounts of a test already span several.
pub const CHUNK: u64 = if cfg!(test) { 2 } else { 64 };

/// Keys that say where a chunk ends: a function of the key alone.
pub trait ChunkKey {
    fn ends_chunk(&self) -> bool;
}

/// Whether the number `n` (a part of a key that varies evenly from key to key) ends a chunk.
pub fn ends_chunk_at(n: u64) -> bool {
    n.is_multiple_of(CHUNK)
}

impl ChunkKey for crate::crypto::Hash {
    /// Hashes (hashlocks) vary evenly in every byte.
    fn ends_chunk(&self) -> bool {
        ends_chunk_at(u64::from(self.0[31]))
    }
}

impl ChunkKey for u64 {
    /// Numbers counted up one by one: every [`CHUNK`]th ends a chunk.
    fn ends_chunk(&self) -> bool {
        ends_chunk_at(*self)
    }
}

impl ChunkKey for EntityId {
    /// Lazy entity ids are hashes, registered ones count up: the last byte varies evenly in both.
    fn ends_chunk(&self) -> bool {
        ends_chunk_at(u64::from(self.0[31]))
    }
}

#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// `keccak(postcard((key, value)))` once computed.
    leaf: OnceLock<Hash>,
}

impl<V: Clone> Entry<V> {
    fn new(value: V) -> Arc<Self> {
        Arc::new(Self {
            value,
            leaf: OnceLock::new(),
        })
    }

    fn into_value(entry: Arc<Self>) -> V {
        Arc::unwrap_or_clone(entry).value
    }
}

/// The chunks of a map and their cached hashes.
#[derive(Clone)]
struct Chunks<K> {
    /// The keys that end a chunk, each with the hash of its chunk once computed.
    ends: BTreeMap<K, OnceLock<Hash>>,
    /// The hash of the chunk after the last key that ends one.
    tail: OnceLock<Hash>,
    root: OnceLock<Hash>,
}

impl<K> Default for Chunks<K> {
    fn default() -> Self {
        Self {
            ends: BTreeMap::new(),
            tail: OnceLock::new(),
            root: OnceLock::new(),
        }
    }
}

impl<K: Ord> Chunks<K> {
    /// Forgets the hash of the chunk that holds `key` (or would hold it), and the root.
    fn touch(&mut self, key: &K) {
        self.root.take();
        match self.ends.range_mut(key..).next() {
            Some((_, hash)) => hash.take(),
            None => self.tail.take(),
        };
    }
}

/// A `BTreeMap` with a Merkle root over its entries (see the module's doc).
#[derive(Clone)]
pub struct MerkleMap<K, V> {
    entries: BTreeMap<K, Arc<Entry<V>>>,
    chunks: Chunks<K>,
}

impl<K, V> Default for MerkleMap<K, V> {
    fn default() -> Self {
        Self {
            entries: BTreeMap::new(),
            chunks: Chunks::default(),
        }
    }
}

impl<K: Ord + Clone + ChunkKey, V: Clone> MerkleMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|entry| &entry.value)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// In key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter(self.entries.iter())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator {
        self.entries.keys()
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.values().map(|entry| &entry.value)
    }

    /// The value of `key`, to change: its cached hashes are forgotten first. This is the only
    /// way to change a value in place (there is no `iter_mut`: collect the keys, then change).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let entry = self.entries.get_mut(key)?;
        self.chunks.touch(key);
        let entry = Arc::make_mut(entry);
        entry.leaf.take();
        Some(&mut entry.value)
    }

    /// Sets the value of `key`; returns the one it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        // A new key that ends a chunk splits the chunk it falls in: the part after it is the
        // chunk touched here, the part up to it is new (and has no hash yet).
        self.chunks.touch(&key);
        if key.ends_chunk() {
            self.chunks.ends.entry(key.clone()).or_default();
        }
        self.entries
            .insert(key, Entry::new(value))
            .map(Entry::into_value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let entry = self.entries.remove(key)?;
        // A key that ended a chunk joins what is left of its chunk to the next one.
        if key.ends_chunk() {
            self.chunks.ends.remove(key);
        }
        self.chunks.touch(key);
        Some(Entry::into_value(entry))
    }
}

impl<K: Ord + ChunkKey + Serialize, V: Serialize> MerkleMap<K, V> {
    /// The Merkle root of the entries, recomputing only what changed since the last call.
    pub fn root(&self) -> Hash {
        let root = *self.chunks.root.get_or_init(|| self.compute_root());
        #[cfg(any(test, feature = "check-hash-cache"))]
        assert_eq!(
            root,
            self.root_from_scratch(),
            "a cached hash of a MerkleMap is stale: a change did not go through get_mut, \
             insert or remove"
        );
        root
    }

    fn compute_root(&self) -> Hash {
        let mut hashes = Vec::with_capacity(32 * (self.chunks.ends.len() + 1));
        let mut after = Bound::Unbounded;
        for (end, hash) in &self.chunks.ends {
            // Only a chunk without a hash is looked up in the entries.
            let chunk = || chunk_hash(self.entries.range((after, Bound::Included(end))));
            hashes.extend_from_slice(&hash.get_or_init(chunk).0);
            after = Bound::Excluded(end);
        }
        let mut tail = self.entries.range((after, Bound::Unbounded)).peekable();
        if tail.peek().is_some() {
            hashes.extend_from_slice(&self.chunks.tail.get_or_init(|| chunk_hash(tail)).0);
        }
        root_of(self.entries.len(), &hashes)
    }

    /// The root computed from the entries alone, reading and writing no cache: what [`root`]
    /// must equal, whatever happened before. For checks (the core's tests make `root` compare
    /// the two every time, and so does the `check-hash-cache` feature).
    ///
    /// [`root`]: MerkleMap::root
    pub fn root_from_scratch(&self) -> Hash {
        let mut hashes = Vec::new();
        let mut chunk = Vec::new();
        for (key, entry) in &self.entries {
            chunk.extend_from_slice(&leaf_hash(key, &entry.value).0);
            if key.ends_chunk() {
                hashes.extend_from_slice(&keccak256(&chunk).0);
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            hashes.extend_from_slice(&keccak256(&chunk).0);
        }
        root_of(self.entries.len(), &hashes)
    }
}

fn leaf_hash<K: Serialize, V: Serialize>(key: &K, value: &V) -> Hash {
    hash_of(&(key, value))
}

fn chunk_hash<'a, K: Serialize + 'a, V: Serialize + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a Arc<Entry<V>>)>,
) -> Hash {
    let mut leaves = Vec::new();
    for (key, entry) in entries {
        let leaf = entry.leaf.get_or_init(|| leaf_hash(key, &entry.value));
        leaves.extend_from_slice(&leaf.0);
    }
    keccak256(&leaves)
}

fn root_of(count: usize, chunk_hashes: &[u8]) -> Hash {
    let mut packed = Vec::with_capacity(ROOT_TAG.len() + 8 + chunk_hashes.len());
    packed.extend_from_slice(ROOT_TAG);
    packed.extend_from_slice(&(count as u64).to_be_bytes());
    packed.extend_from_slice(chunk_hashes);
    keccak256(&packed)
}

/// The entries of a [`MerkleMap`] in key order.
pub struct Iter<'a, K, V>(btree_map::Iter<'a, K, Arc<Entry<V>>>);

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, entry)| (k, &entry.value))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, entry)| (k, &entry.value))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

impl<'a, K: Ord + Clone + ChunkKey, V: Clone> IntoIterator for &'a MerkleMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<K: Ord + Clone + ChunkKey, V: Clone> FromIterator<(K, V)> for MerkleMap<K, V> {
    /// Like a `BTreeMap`: any order, and the last of a repeated key wins.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let entries: BTreeMap<K, Arc<Entry<V>>> =
            iter.into_iter().map(|(k, v)| (k, Entry::new(v))).collect();
        let ends = entries
            .keys()
            .filter(|key| key.ends_chunk())
            .map(|key| (key.clone(), OnceLock::new()))
            .collect();
        Self {
            entries,
            chunks: Chunks {
                ends,
                ..Chunks::default()
            },
        }
    }
}

impl<K: Ord + Clone + ChunkKey, V: Clone> std::ops::Index<&K> for MerkleMap<K, V> {
    type Output = V;
    /// Panics if `key` is absent, like `BTreeMap`'s index.
    fn index(&self, key: &K) -> &V {
        match self.get(key) {
            Some(value) => value,
            None => panic!("key not in MerkleMap"),
        }
    }
}

impl<K: PartialEq, V: PartialEq> PartialEq for MerkleMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|((ka, a), (kb, b))| ka == kb && a.value == b.value)
    }
}

impl<K: Eq, V: Eq> Eq for MerkleMap<K, V> {}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for MerkleMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, entry)| (k, &entry.value)))
            .finish()
    }
}

impl<K: Serialize, V: Serialize> Serialize for MerkleMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.entries.iter().map(|(k, entry)| (k, &entry.value)))
    }
}

impl<'de, K, V> Deserialize<'de> for MerkleMap<K, V>
where
    K: Ord + Clone + ChunkKey + Deserialize<'de>,
    V: Clone + Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Ord + Clone + ChunkKey + Deserialize<'de>,
            V: Clone + Deserialize<'de>,
        {
            type Value = MerkleMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // The hint comes from the input: trust it only within reason.
                let hint = access.size_hint().unwrap_or(0).min(1 << 16);
                let mut entries = Vec::with_capacity(hint);
                while let Some(entry) = access.next_entry::<K, V>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Keys with a small alphabet, so that operations hit existing keys often.
    fn id(n: u8) -> EntityId {
        let mut id = [0u8; 32];
        id[0] = n / 7;
        id[31] = n;
        EntityId(id)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u64),
        Remove(u8),
        Change(u8, u64),
        Root,
        CloneAndChange(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..40, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u8..40).prop_map(Op::Remove),
            3 => (0u8..40, any::<u64>()).prop_map(|(k, v)| Op::Change(k, v)),
            2 => Just(Op::Root),
            1 => (0u8..40).prop_map(Op::CloneAndChange),
        ]
    }

    proptest! {
        /// After any operations, the cached root is the root from scratch, the root of the same
        /// entries inserted in another order, and of the map after a snapshot round trip; and
        /// the map encodes like a `BTreeMap`.
        #[test]
        fn the_cached_root_is_always_the_root_from_scratch(
            ops in proptest::collection::vec(op(), 0..80)
        ) {
            let mut map: MerkleMap<EntityId, u64> = MerkleMap::new();
            let mut model: BTreeMap<EntityId, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        prop_assert_eq!(map.insert(id(k), v), model.insert(id(k), v));
                    }
                    Op::Remove(k) => prop_assert_eq!(map.remove(&id(k)), model.remove(&id(k))),
                    Op::Change(k, v) => {
                        if let Some(value) = map.get_mut(&id(k)) {
                            *value = v;
                        }
                        if let Some(value) = model.get_mut(&id(k)) {
                            *value = v;
                        }
                    }
                    Op::Root => prop_assert_eq!(map.root(), map.root_from_scratch()),
                    Op::CloneAndChange(k) => {
                        // A clone shares the entries: changing it leaves the original alone.
                        let before = map.root();
                        let mut copy = map.clone();
                        if let Some(value) = copy.get_mut(&id(k)) {
                            *value = value.wrapping_add(1);
                            prop_assert_ne!(copy.root(), before);
                        }
                        prop_assert_eq!(map.root(), before);
                    }
                }
                prop_assert!(map.iter().eq(model.iter()));
            }
            let root = map.root();
            prop_assert_eq!(root, map.root_from_scratch());
            let reversed: MerkleMap<EntityId, u64> =
                model.iter().rev().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(reversed.root(), root);
            let bytes = crate::codec::encode(&map);
            prop_assert_eq!(&bytes, &crate::codec::encode(&model));
            let back: MerkleMap<EntityId, u64> = crate::codec::decode("map", &bytes).unwrap();
            prop_assert_eq!(&back, &map);
            prop_assert_eq!(back.root(), root);
        }
    }

    #[test]
    fn the_root_depends_on_every_entry_and_on_nothing_else() {
        let map: MerkleMap<EntityId, u64> = (0..20).map(|n| (id(n), u64::from(n))).collect();
        let root = map.root();
        for n in 0..20 {
            let mut changed = map.clone();
            *changed.get_mut(&id(n)).unwrap() += 1;
            assert_ne!(changed.root(), root, "value of key {n}");
            let mut removed = map.clone();
            removed.remove(&id(n));
            assert_ne!(removed.root(), root, "removal of key {n}");
            // Put back, it is the same map again.
            removed.insert(id(n), u64::from(n));
            assert_eq!(removed.root(), root, "key {n} put back");
        }
        assert_ne!(MerkleMap::<EntityId, u64>::new().root(), root);
        // Several chunks: the test chunks are small.
        assert!(map.chunks.ends.len() > 3);
    }

    #[test]
    fn chunks_are_cut_where_the_keys_say() {
        let map: MerkleMap<EntityId, u64> = (0..10).map(|n| (id(n), 0)).collect();
        let ends: Vec<u8> = map.chunks.ends.keys().map(|k| k.0[31]).collect();
        let expected: Vec<u8> = (0..10u8).filter(|n| ends_chunk_at(u64::from(*n))).collect();
        assert_eq!(ends, expected);
    }
}
