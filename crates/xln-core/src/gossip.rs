//! Signed entity profiles and their gossip (PROTOCOL.md §9).
//!
//! Each entity publishes a [`Profile`]: who it is, where to reach it, what it charges for
//! forwarding and what its accounts can carry. Its board signs the profile; a [`ProfileStore`]
//! keeps the newest valid profile per entity and is a CRDT (a join-semilattice): merging is
//! commutative, associative and idempotent, so stores converge whatever order gossip arrives in.
//!
//! Validity never depends on what a store holds (only on the profile, its signature and the
//! receiver's clock), and among valid profiles of one entity the store keeps the greatest by
//! [`SignedProfile::cmp_precedence`]. That is what makes the merge a join.

use crate::account::MAX_CLOCK_SKEW_MS;
use crate::board::{Board, EntityId, QuorumError, QuorumSignature};
use crate::codec::{Packed, hash_of, tag};
use crate::crypto::{Hash, PublicKey};
use crate::delta::TokenId;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Most accounts (peer and token pairs) one profile may list: bounds the work and memory one
/// gossip message can cost (about 70 bytes each encoded).
pub const MAX_PROFILE_ACCOUNTS: usize = 4_096;
/// Longest display name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest endpoint (e.g. a websocket URL), in bytes of UTF-8.
pub const MAX_ENDPOINT_BYTES: usize = 256;
/// Fees are in parts per million of the forwarded amount: more than 100% is refused.
pub const MAX_FEE_PPM: u32 = 1_000_000;

/// What an entity says about one of its accounts in one token, from its own side: how much it
/// can send to `peer` (`out_capacity`) and receive from it (`in_capacity`), see PROTOCOL.md §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileAccount {
    pub peer: EntityId,
    pub token: TokenId,
    pub out_capacity: u128,
    pub in_capacity: u128,
}

/// An entity's public description, as it publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub entity_id: EntityId,
    /// The entity's board, which signs the profile. Its hash must be `entity_id`: only lazy
    /// entities can be checked without the chain (a registered entity's board lives there).
    pub board: Board,
    /// The key onion layers for this entity are sealed to (its proposer's signer key).
    pub onion_key: PublicKey,
    pub name: String,
    pub endpoint: String,
    pub is_hub: bool,
    /// Forwarding fee: `fee_base + forwarded * fee_ppm / 1_000_000` (see `routing`).
    pub fee_base: u128,
    pub fee_ppm: u32,
    pub accounts: Vec<ProfileAccount>,
    /// When the entity made this version, in milliseconds since the Unix epoch.
    pub updated_at: u64,
}

/// A profile with its board's signatures over [`Profile::digest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedProfile {
    pub profile: Profile,
    pub signature: QuorumSignature,
}

/// Why a profile was dropped. A dropped profile changes nothing in the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("name is {len} bytes, at most {MAX_NAME_BYTES} allowed")]
    NameTooLong { len: usize },
    #[error("endpoint is {len} bytes, at most {MAX_ENDPOINT_BYTES} allowed")]
    EndpointTooLong { len: usize },
    #[error("{count} accounts listed, at most {MAX_PROFILE_ACCOUNTS} allowed")]
    TooManyAccounts { count: usize },
    #[error("fee of {fee_ppm} ppm is above {MAX_FEE_PPM}")]
    FeeTooHigh { fee_ppm: u32 },
    #[error("an account with itself is listed")]
    AccountWithItself,
    #[error("account with {peer} in token {token} is listed twice")]
    DuplicateAccount { peer: EntityId, token: TokenId },
    #[error("the board hashes to {board_id}, not to the entity id {entity_id}")]
    WrongBoard {
        entity_id: EntityId,
        board_id: EntityId,
    },
    #[error("updated at {updated_at} ms, beyond our clock {now_ms} ms plus the allowed skew")]
    FromTheFuture { updated_at: u64, now_ms: u64 },
    #[error("the profile carries no signature")]
    Unsigned,
    #[error("signature check failed: {0}")]
    BadSignature(#[from] QuorumError),
    #[error("stale: updated at {got} ms, the profile held was updated at {held} ms")]
    Stale { held: u64, got: u64 },
}

/// What a successful merge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// First profile of this entity.
    Added,
    /// Replaced an older profile of this entity.
    Updated,
    /// Exactly this signed profile was already held.
    AlreadyHeld,
}

/// Counts from merging many profiles, e.g. a peer's gossip batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeSummary {
    pub added: usize,
    pub updated: usize,
    pub already_held: usize,
    /// Dropped: invalid, forged, stale or from the future.
    pub dropped: usize,
}

impl Profile {
    /// The digest the board signs: `keccak256(PROFILE_TAG ‖ keccak256(canonical encoding))`.
    pub fn digest(&self) -> Hash {
        Packed::new()
            .bytes32(&tag("xln.profile.v1").0)
            .bytes32(&hash_of(self).0)
            .hash()
    }

    /// The checks that need neither a signature nor a clock: sizes, fee, accounts, and that
    /// the board is the entity's.
    pub fn check_well_formed(&self) -> Result<(), ProfileError> {
        if self.name.len() > MAX_NAME_BYTES {
            return Err(ProfileError::NameTooLong {
                len: self.name.len(),
            });
        }
        if self.endpoint.len() > MAX_ENDPOINT_BYTES {
            return Err(ProfileError::EndpointTooLong {
                len: self.endpoint.len(),
            });
        }
        if self.accounts.len() > MAX_PROFILE_ACCOUNTS {
            return Err(ProfileError::TooManyAccounts {
                count: self.accounts.len(),
            });
        }
        if self.fee_ppm > MAX_FEE_PPM {
            return Err(ProfileError::FeeTooHigh {
                fee_ppm: self.fee_ppm,
            });
        }
        let mut seen = BTreeSet::new();
        for account in &self.accounts {
            if account.peer == self.entity_id {
                return Err(ProfileError::AccountWithItself);
            }
            if !seen.insert((account.peer, account.token)) {
                return Err(ProfileError::DuplicateAccount {
                    peer: account.peer,
                    token: account.token,
                });
            }
        }
        let board_id = self.board.lazy_entity_id();
        if board_id != self.entity_id {
            return Err(ProfileError::WrongBoard {
                entity_id: self.entity_id,
                board_id,
            });
        }
        Ok(())
    }
}

impl SignedProfile {
    pub fn entity_id(&self) -> EntityId {
        self.profile.entity_id
    }

    /// Which of two profiles of one entity wins (the greater): the later `updated_at`, then,
    /// for equal times, the greater hash of the whole signed profile. Any two different signed
    /// profiles compare different, so the winner never depends on arrival order.
    pub fn cmp_precedence(&self, other: &SignedProfile) -> Ordering {
        self.profile
            .updated_at
            .cmp(&other.profile.updated_at)
            .then_with(|| hash_of(self).cmp(&hash_of(other)))
    }

    /// Everything [`ProfileStore::merge`] checks on the profile itself, signature included.
    pub fn verify(&self, now_ms: u64) -> Result<(), ProfileError> {
        self.check_unsigned_parts(now_ms)?;
        self.check_signature()
    }

    /// All checks but the signature, the only expensive one.
    fn check_unsigned_parts(&self, now_ms: u64) -> Result<(), ProfileError> {
        self.profile.check_well_formed()?;
        if self.profile.updated_at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(ProfileError::FromTheFuture {
                updated_at: self.profile.updated_at,
                now_ms,
            });
        }
        Ok(())
    }

    fn check_signature(&self) -> Result<(), ProfileError> {
        if self.signature.0.is_empty() {
            return Err(ProfileError::Unsigned);
        }
        self.profile
            .board
            .verify_quorum(&self.profile.digest(), &self.signature)?;
        Ok(())
    }
}

/// The newest valid profile of each entity we have heard of.
///
/// Only [`ProfileStore::merge`] adds to it, so everything it holds passed the signature check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileStore {
    profiles: BTreeMap<EntityId, SignedProfile>,
}

/// Whether merging re-checks signatures: a profile coming from another store already passed.
#[derive(Clone, Copy)]
enum SignatureCheck {
    Verify,
    AlreadyVerified,
}

impl ProfileStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    pub fn get(&self, entity: &EntityId) -> Option<&SignedProfile> {
        self.profiles.get(entity)
    }

    /// The signed profiles in entity id order, e.g. to relay them.
    pub fn iter(&self) -> impl Iterator<Item = &SignedProfile> {
        self.profiles.values()
    }

    /// The profiles in entity id order, e.g. to build a routing graph.
    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values().map(|signed| &signed.profile)
    }

    /// Keeps `signed` if it is valid and wins over the profile held for its entity (last
    /// writer wins, see [`SignedProfile::cmp_precedence`]). `now_ms` is the receiver's clock,
    /// which bounds how far in the future `updated_at` may be. On error nothing changes.
    pub fn merge(
        &mut self,
        signed: SignedProfile,
        now_ms: u64,
    ) -> Result<MergeOutcome, ProfileError> {
        self.merge_checked(signed, now_ms, SignatureCheck::Verify)
    }

    /// Merges every profile of a peer's batch; the invalid and stale ones are counted and
    /// dropped.
    pub fn merge_batch(
        &mut self,
        profiles: impl IntoIterator<Item = SignedProfile>,
        now_ms: u64,
    ) -> MergeSummary {
        let mut summary = MergeSummary::default();
        for signed in profiles {
            summary.count(self.merge(signed, now_ms));
        }
        summary
    }

    /// Merges another store into this one (the CRDT join), e.g. to relay what a peer holds.
    /// Its signatures were checked when they entered it and are not checked again; the clock
    /// bound is, against our clock.
    pub fn merge_all(&mut self, other: &ProfileStore, now_ms: u64) -> MergeSummary {
        let mut summary = MergeSummary::default();
        for signed in other.iter() {
            summary.count(self.merge_checked(
                signed.clone(),
                now_ms,
                SignatureCheck::AlreadyVerified,
            ));
        }
        summary
    }

    /// The one place where a profile enters the store. The cheap checks come first so that a
    /// stale or malformed profile costs no signature verification.
    fn merge_checked(
        &mut self,
        signed: SignedProfile,
        now_ms: u64,
        signature_check: SignatureCheck,
    ) -> Result<MergeOutcome, ProfileError> {
        signed.check_unsigned_parts(now_ms)?;
        let held = self.profiles.get(&signed.entity_id());
        if let Some(held) = held {
            if *held == signed {
                return Ok(MergeOutcome::AlreadyHeld);
            }
            if held.cmp_precedence(&signed) == Ordering::Greater {
                return Err(ProfileError::Stale {
                    held: held.profile.updated_at,
                    got: signed.profile.updated_at,
                });
            }
        }
        let outcome = if held.is_some() {
            MergeOutcome::Updated
        } else {
            MergeOutcome::Added
        };
        if let SignatureCheck::Verify = signature_check {
            signed.check_signature()?;
        }
        self.profiles.insert(signed.entity_id(), signed);
        Ok(outcome)
    }
}

impl MergeSummary {
    fn count(&mut self, result: Result<MergeOutcome, ProfileError>) {
        match result {
            Ok(MergeOutcome::Added) => self.added += 1,
            Ok(MergeOutcome::Updated) => self.updated += 1,
            Ok(MergeOutcome::AlreadyHeld) => self.already_held += 1,
            Err(_) => self.dropped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::BoardMember;
    use crate::codec::{decode, encode};
    use crate::crypto::SignerKey;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000_000;

    fn key(n: u8) -> SignerKey {
        SignerKey::from_bytes(&[n; 32]).unwrap()
    }

    fn single_board(n: u8) -> Board {
        Board::single(key(n).address())
    }

    fn profile_of(board: Board, updated_at: u64) -> Profile {
        Profile {
            entity_id: board.lazy_entity_id(),
            board,
            onion_key: key(1).public_key(),
            name: "hub".into(),
            endpoint: "wss://hub.example:8443".into(),
            is_hub: true,
            fee_base: 10,
            fee_ppm: 500,
            accounts: vec![ProfileAccount {
                peer: EntityId([7; 32]),
                token: 1,
                out_capacity: 1_000,
                in_capacity: 2_000,
            }],
            updated_at,
        }
    }

    fn sign(profile: Profile, keys: &[u8]) -> SignedProfile {
        let digest = profile.digest();
        let signature = QuorumSignature(keys.iter().map(|&n| key(n).sign(&digest)).collect());
        SignedProfile { profile, signature }
    }

    /// A profile of the single-signer entity `n`, signed by its key.
    fn signed(n: u8, updated_at: u64) -> SignedProfile {
        sign(profile_of(single_board(n), updated_at), &[n])
    }

    fn store_of(profiles: &[SignedProfile]) -> ProfileStore {
        let mut store = ProfileStore::new();
        for p in profiles {
            store.merge(p.clone(), NOW).unwrap();
        }
        store
    }

    #[test]
    fn a_valid_profile_is_added_then_replaced_by_a_newer_one() {
        let mut store = ProfileStore::new();
        assert_eq!(store.merge(signed(1, 100), NOW), Ok(MergeOutcome::Added));
        assert_eq!(store.merge(signed(1, 200), NOW), Ok(MergeOutcome::Updated));
        assert_eq!(
            store.merge(signed(1, 200), NOW),
            Ok(MergeOutcome::AlreadyHeld)
        );
        let id = single_board(1).lazy_entity_id();
        assert_eq!(store.get(&id).unwrap().profile.updated_at, 200);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_stale_profile_is_dropped_and_changes_nothing() {
        let mut store = store_of(&[signed(1, 200)]);
        let before = store.clone();
        assert_eq!(
            store.merge(signed(1, 100), NOW),
            Err(ProfileError::Stale {
                held: 200,
                got: 100
            })
        );
        assert_eq!(store, before);
    }

    #[test]
    fn a_forged_profile_is_dropped_and_changes_nothing() {
        let mut store = store_of(&[signed(1, 100)]);
        let before = store.clone();
        // Signed by a key that is not on the entity's board.
        let forged = sign(profile_of(single_board(1), 200), &[2]);
        assert!(matches!(
            store.merge(forged, NOW),
            Err(ProfileError::BadSignature(_))
        ));
        // A genuine signature over different content.
        let mut tampered = signed(1, 200);
        tampered.profile.fee_ppm = 0;
        assert!(matches!(
            store.merge(tampered, NOW),
            Err(ProfileError::BadSignature(_))
        ));
        let unsigned = SignedProfile {
            profile: profile_of(single_board(1), 300),
            signature: QuorumSignature::default(),
        };
        assert_eq!(store.merge(unsigned, NOW), Err(ProfileError::Unsigned));
        assert_eq!(store, before);
    }

    #[test]
    fn a_profile_whose_board_is_not_the_entitys_is_dropped() {
        let mut store = store_of(&[signed(1, 100)]);
        let before = store.clone();
        // The attacker signs properly with its own board but claims entity 1's id.
        let mut profile = profile_of(single_board(2), 200);
        profile.entity_id = single_board(1).lazy_entity_id();
        let result = store.merge(sign(profile, &[2]), NOW);
        assert!(matches!(result, Err(ProfileError::WrongBoard { .. })));
        assert_eq!(store, before);
    }

    #[test]
    fn a_profile_from_beyond_the_clock_skew_is_dropped() {
        let mut store = ProfileStore::new();
        let too_late = NOW + MAX_CLOCK_SKEW_MS + 1;
        assert_eq!(
            store.merge(signed(1, too_late), NOW),
            Err(ProfileError::FromTheFuture {
                updated_at: too_late,
                now_ms: NOW
            })
        );
        assert!(store.is_empty());
        assert_eq!(
            store.merge(signed(1, NOW + MAX_CLOCK_SKEW_MS), NOW),
            Ok(MergeOutcome::Added)
        );
    }

    #[test]
    fn malformed_profiles_are_dropped() {
        type Spoil = Box<dyn Fn(&mut Profile)>;
        let cases: Vec<(Spoil, ProfileError)> = vec![
            (
                Box::new(|p| p.name = "n".repeat(MAX_NAME_BYTES + 1)),
                ProfileError::NameTooLong {
                    len: MAX_NAME_BYTES + 1,
                },
            ),
            (
                Box::new(|p| p.endpoint = "e".repeat(MAX_ENDPOINT_BYTES + 1)),
                ProfileError::EndpointTooLong {
                    len: MAX_ENDPOINT_BYTES + 1,
                },
            ),
            (
                Box::new(|p| {
                    p.accounts = (0..=MAX_PROFILE_ACCOUNTS as u32)
                        .map(|token| ProfileAccount {
                            peer: EntityId([7; 32]),
                            token,
                            out_capacity: 0,
                            in_capacity: 0,
                        })
                        .collect()
                }),
                ProfileError::TooManyAccounts {
                    count: MAX_PROFILE_ACCOUNTS + 1,
                },
            ),
            (
                Box::new(|p| p.fee_ppm = MAX_FEE_PPM + 1),
                ProfileError::FeeTooHigh {
                    fee_ppm: MAX_FEE_PPM + 1,
                },
            ),
            (
                Box::new(|p| {
                    let own = p.entity_id;
                    p.accounts[0].peer = own;
                }),
                ProfileError::AccountWithItself,
            ),
            (
                Box::new(|p| {
                    let again = p.accounts[0];
                    p.accounts.push(again);
                }),
                ProfileError::DuplicateAccount {
                    peer: EntityId([7; 32]),
                    token: 1,
                },
            ),
        ];
        for (spoil, expected) in cases {
            let mut profile = profile_of(single_board(1), 100);
            spoil(&mut profile);
            let mut store = ProfileStore::new();
            assert_eq!(store.merge(sign(profile, &[1]), NOW), Err(expected));
            assert!(store.is_empty());
        }
        // Exactly at the bounds is fine.
        let mut profile = profile_of(single_board(1), 100);
        profile.name = "n".repeat(MAX_NAME_BYTES);
        profile.endpoint = "e".repeat(MAX_ENDPOINT_BYTES);
        profile.fee_ppm = MAX_FEE_PPM;
        assert!(ProfileStore::new().merge(sign(profile, &[1]), NOW).is_ok());
    }

    #[test]
    fn a_multi_signer_board_needs_its_quorum() {
        let members = (1..=3)
            .map(|n| BoardMember {
                signer: key(n).address(),
                weight: 1,
            })
            .collect();
        let board = Board::new(2, members).unwrap();
        let mut store = ProfileStore::new();
        let one = sign(profile_of(board.clone(), 100), &[3]);
        assert!(matches!(
            store.merge(one, NOW),
            Err(ProfileError::BadSignature(QuorumError::NotEnoughWeight {
                got: 1,
                threshold: 2
            }))
        ));
        let two = sign(profile_of(board, 100), &[1, 3]);
        assert_eq!(store.merge(two, NOW), Ok(MergeOutcome::Added));
    }

    #[test]
    fn equal_timestamps_resolve_the_same_in_either_order() {
        let a = signed(1, 100);
        let mut b_profile = profile_of(single_board(1), 100);
        b_profile.name = "other".into();
        let b = sign(b_profile, &[1]);
        let ab = store_of_lenient(&[a.clone(), b.clone()]);
        let ba = store_of_lenient(&[b.clone(), a.clone()]);
        assert_eq!(ab, ba);
        let winner = if a.cmp_precedence(&b) == Ordering::Greater {
            a
        } else {
            b
        };
        assert_eq!(ab.get(&winner.entity_id()), Some(&winner));
    }

    #[test]
    fn a_signed_profile_survives_encoding_with_its_signature_valid() {
        let original = signed(1, 100);
        let decoded: SignedProfile = decode("profile", &encode(&original)).unwrap();
        assert_eq!(decoded, original);
        assert_eq!(decoded.profile.digest(), original.profile.digest());
        assert_eq!(decoded.verify(NOW), Ok(()));
    }

    #[test]
    fn a_batch_counts_what_it_did() {
        let mut store = store_of(&[signed(1, 200)]);
        let forged = sign(profile_of(single_board(3), 100), &[4]);
        let summary = store.merge_batch(
            vec![signed(1, 100), signed(1, 300), signed(2, 100), forged],
            NOW,
        );
        assert_eq!(
            summary,
            MergeSummary {
                added: 1,
                updated: 1,
                already_held: 0,
                dropped: 2
            }
        );
    }

    #[test]
    fn a_hub_relays_what_its_peers_published() {
        // Wallets 1 and 2 publish to the hub; wallet 3 learns both from the hub alone.
        let mut hub = store_of(&[signed(1, 100), signed(2, 100)]);
        let mut wallet = store_of(&[signed(3, 100)]);
        let summary = wallet.merge_all(&hub, NOW);
        assert_eq!((summary.added, summary.dropped), (2, 0));
        assert_eq!(wallet.len(), 3);

        // Wallet 1 publishes anew; a wallet that relays the old version back changes nothing.
        hub.merge(signed(1, 200), NOW).unwrap();
        let stale_relay = store_of(&[signed(1, 100)]);
        hub.merge_all(&stale_relay, NOW);
        wallet.merge_all(&hub, NOW);
        let id = single_board(1).lazy_entity_id();
        assert_eq!(wallet.get(&id).unwrap().profile.updated_at, 200);
    }

    /// Merges in order, ignoring rejections (which must change nothing).
    fn store_of_lenient(profiles: &[SignedProfile]) -> ProfileStore {
        let mut store = ProfileStore::new();
        store.merge_batch(profiles.iter().cloned(), NOW);
        store
    }

    fn join(a: &ProfileStore, b: &ProfileStore) -> ProfileStore {
        let mut joined = a.clone();
        joined.merge_all(b, NOW);
        joined
    }

    /// How a generated profile is signed.
    #[derive(Debug, Clone, Copy)]
    enum Signing {
        Genuine,
        ByAnotherKey,
        WithAnotherBoard,
    }

    /// A small pool: 3 entities, few timestamps (so ties happen), a few contents, and some
    /// forged ones mixed in.
    fn arbitrary_profile() -> impl Strategy<Value = SignedProfile> {
        (
            1u8..=3,
            0u64..4,
            0u32..3,
            prop_oneof![
                6 => Just(Signing::Genuine),
                1 => Just(Signing::ByAnotherKey),
                1 => Just(Signing::WithAnotherBoard),
            ],
        )
            .prop_map(|(entity, updated_at, fee_ppm, signing)| {
                let mut profile = profile_of(single_board(entity), updated_at);
                profile.fee_ppm = fee_ppm;
                match signing {
                    Signing::Genuine => sign(profile, &[entity]),
                    Signing::ByAnotherKey => sign(profile, &[entity + 10]),
                    Signing::WithAnotherBoard => {
                        profile.board = single_board(entity + 10);
                        sign(profile, &[entity + 10])
                    }
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn merge_is_commutative_associative_and_idempotent(
            profiles in proptest::collection::vec(arbitrary_profile(), 0..12),
            groups in proptest::collection::vec(0usize..3, 12),
        ) {
            let group = |g: usize| -> Vec<SignedProfile> {
                profiles
                    .iter()
                    .zip(&groups)
                    .filter(|(_, i)| **i == g)
                    .map(|(p, _)| p.clone())
                    .collect()
            };
            let (a, b, c) = (
                store_of_lenient(&group(0)),
                store_of_lenient(&group(1)),
                store_of_lenient(&group(2)),
            );
            prop_assert_eq!(join(&a, &b), join(&b, &a));
            prop_assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
            prop_assert_eq!(&join(&a, &a), &a);

            // Order of arrival does not matter either.
            let in_order = store_of_lenient(&profiles);
            let mut reversed = profiles.clone();
            reversed.reverse();
            prop_assert_eq!(&store_of_lenient(&reversed), &in_order);
            prop_assert_eq!(&join(&join(&a, &b), &c), &in_order);

            // Forged profiles change nothing: the result is as if only genuine ones came.
            let genuine: Vec<_> = profiles
                .iter()
                .filter(|p| p.verify(NOW).is_ok())
                .cloned()
                .collect();
            prop_assert_eq!(&store_of_lenient(&genuine), &in_order);
            // And the store holds the greatest genuine profile of each entity.
            for held in in_order.iter() {
                let best = genuine
                    .iter()
                    .filter(|p| p.entity_id() == held.entity_id())
                    .max_by(|x, y| x.cmp_precedence(y));
                prop_assert_eq!(Some(held), best);
            }
        }
    }
}
