//! Boards of signers, quorum signatures and entity ids (PROTOCOL.md §1).

use crate::bytes::fixed_bytes;
use crate::codec::Packed;
use crate::crypto::{Address, Hash, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

fixed_bytes!(
    /// An entity's 32-byte id. A lazy entity's id is its board hash; a registered one's is
    /// its number from the EntityProvider contract.
    EntityId,
    32
);

impl EntityId {
    /// In an account the entity with the smaller id (as big-endian bytes) is LEFT.
    pub fn is_left_of(&self, other: &EntityId) -> bool {
        self < other
    }
}

/// The most members a board may have (the EntityProvider contract has the same bound).
pub const MAX_BOARD_MEMBERS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardMember {
    pub signer: Address,
    pub weight: u64,
}

/// A board: `0 < threshold <= sum(weights)`, distinct signers, positive weights.
/// The only way to get one is through [`Board::new`] (deserializing checks the same rules).
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "BoardParts")]
pub struct Board {
    threshold: u64,
    members: Vec<BoardMember>,
    /// Each member's public key once a signature has revealed it, so that later signatures
    /// are verified (~75 µs) instead of recovered (~200 µs). A cache: not part of the value.
    #[serde(skip)]
    keys: Vec<OnceLock<PublicKey>>,
}

impl PartialEq for Board {
    fn eq(&self, other: &Self) -> bool {
        self.threshold == other.threshold && self.members == other.members
    }
}

impl Eq for Board {}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board")
            .field("threshold", &self.threshold)
            .field("members", &self.members)
            .finish()
    }
}

#[derive(Deserialize)]
struct BoardParts {
    threshold: u64,
    members: Vec<BoardMember>,
}

impl TryFrom<BoardParts> for Board {
    type Error = BoardError;
    fn try_from(parts: BoardParts) -> Result<Self, BoardError> {
        Board::new(parts.threshold, parts.members)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    #[error("a board needs at least one member")]
    NoMembers,
    #[error("a board has at most {MAX_BOARD_MEMBERS} members, not {0}")]
    TooManyMembers(usize),
    #[error("the zero address cannot be a member")]
    ZeroSigner,
    #[error("member {0} has weight 0")]
    ZeroWeight(Address),
    #[error("member {0} is listed twice")]
    DuplicateMember(Address),
    #[error("threshold must be above 0")]
    ZeroThreshold,
    #[error("threshold {threshold} is more than the total weight {total}")]
    ThresholdAboveTotal { threshold: u64, total: u64 },
    #[error("total weight overflows")]
    WeightOverflow,
}

/// Signatures of board members over one digest; an entity's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QuorumSignature(pub Vec<Signature>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    #[error("signatures carry weight {got}, the board needs {threshold}")]
    NotEnoughWeight { got: u64, threshold: u64 },
    #[error("{count} signatures for a board of {members}")]
    TooManySignatures { count: usize, members: usize },
}

impl Board {
    pub fn new(threshold: u64, members: Vec<BoardMember>) -> Result<Self, BoardError> {
        if members.is_empty() {
            return Err(BoardError::NoMembers);
        }
        if members.len() > MAX_BOARD_MEMBERS {
            return Err(BoardError::TooManyMembers(members.len()));
        }
        if threshold == 0 {
            return Err(BoardError::ZeroThreshold);
        }
        let mut total: u64 = 0;
        for (i, member) in members.iter().enumerate() {
            if member.signer == Address::ZERO {
                return Err(BoardError::ZeroSigner);
            }
            if member.weight == 0 {
                return Err(BoardError::ZeroWeight(member.signer));
            }
            if members[..i].iter().any(|m| m.signer == member.signer) {
                return Err(BoardError::DuplicateMember(member.signer));
            }
            total = total
                .checked_add(member.weight)
                .ok_or(BoardError::WeightOverflow)?;
        }
        if threshold > total {
            return Err(BoardError::ThresholdAboveTotal { threshold, total });
        }
        let keys = members.iter().map(|_| OnceLock::new()).collect();
        Ok(Self {
            threshold,
            members,
            keys,
        })
    }

    /// A personal wallet's board: one signer, threshold 1.
    pub fn single(signer: Address) -> Self {
        Self {
            threshold: 1,
            members: vec![BoardMember { signer, weight: 1 }],
            keys: vec![OnceLock::new()],
        }
    }

    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    pub fn members(&self) -> &[BoardMember] {
        &self.members
    }

    /// The first member proposes entity frames (PROTOCOL.md §5).
    pub fn proposer(&self) -> Address {
        self.members[0].signer
    }

    pub fn weight_of(&self, signer: &Address) -> Option<u64> {
        self.members
            .iter()
            .find(|m| &m.signer == signer)
            .map(|m| m.weight)
    }

    /// `keccak256(abi.encodePacked(uint64 threshold, (address signer, uint64 weight)...))`,
    /// which the EntityProvider contract recomputes for lazy entities.
    pub fn hash(&self) -> Hash {
        let mut packed = Packed::new();
        packed.u64(self.threshold);
        for member in &self.members {
            packed.address(&member.signer.0).u64(member.weight);
        }
        packed.hash()
    }

    /// A lazy entity's id: its board hash.
    pub fn lazy_entity_id(&self) -> EntityId {
        EntityId(self.hash().0)
    }

    /// The weight behind `signatures` over `digest`: each distinct member counts once;
    /// malformed signatures, non-members and repeats count nothing.
    pub fn signed_weight(&self, digest: &Hash, signatures: &QuorumSignature) -> u64 {
        let mut counted = vec![false; self.members.len()];
        let mut weight: u64 = 0;
        for signature in signatures.0.iter().take(self.members.len()) {
            if let Some(index) = self.signer_index(digest, signature, &counted) {
                counted[index] = true;
                // Cannot overflow: the sum of all weights was checked in `new`.
                weight += self.members[index].weight;
            }
        }
        weight
    }

    /// Which not yet counted member made `signature`. On a board of one or two, a member
    /// whose key is known is tried first, by verification (cheaper than recovery); otherwise,
    /// and on larger boards, the key is recovered once and looked up.
    fn signer_index(
        &self,
        digest: &Hash,
        signature: &Signature,
        counted: &[bool],
    ) -> Option<usize> {
        let small = self.members.len() <= 2;
        let known = (0..self.members.len()).filter(|_| small).find(|&i| {
            !counted[i]
                && self.keys[i]
                    .get()
                    .is_some_and(|key| signature.verify(digest, key))
        });
        if known.is_some() {
            return known;
        }
        // v is only a hint (see `Signature::verify`): the other v is tried too, so that a
        // signature counts the same on every board.
        let mut other_v = *signature;
        other_v.0[64] ^= 27 ^ 28;
        let (index, key) = [signature, &other_v].into_iter().find_map(|candidate| {
            let key = candidate.recover_key(digest).ok()?;
            let index = self
                .members
                .iter()
                .position(|m| m.signer == key.address())?;
            Some((index, key))
        })?;
        if counted[index] {
            return None;
        }
        let _ = self.keys[index].set(key);
        Some(index)
    }

    /// The member whose signature over `digest` this is, if any.
    pub fn signer_of(&self, digest: &Hash, signature: &Signature) -> Option<Address> {
        let none_counted = vec![false; self.members.len()];
        self.signer_index(digest, signature, &none_counted)
            .map(|i| self.members[i].signer)
    }

    /// Checks that `signatures` over `digest` reach the threshold. More signatures than
    /// members are refused before any is checked, so what a list can cost is bounded.
    pub fn verify_quorum(
        &self,
        digest: &Hash,
        signatures: &QuorumSignature,
    ) -> Result<(), QuorumError> {
        if signatures.0.len() > self.members.len() {
            return Err(QuorumError::TooManySignatures {
                count: signatures.0.len(),
                members: self.members.len(),
            });
        }
        let got = self.signed_weight(digest, signatures);
        if got >= self.threshold {
            Ok(())
        } else {
            Err(QuorumError::NotEnoughWeight {
                got,
                threshold: self.threshold,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{SignerKey, keccak256};

    fn key(n: u8) -> SignerKey {
        SignerKey::from_bytes(&[n; 32]).unwrap()
    }

    fn member(n: u8, weight: u64) -> BoardMember {
        BoardMember {
            signer: key(n).address(),
            weight,
        }
    }

    #[test]
    fn board_rules_are_enforced() {
        assert_eq!(Board::new(1, vec![]), Err(BoardError::NoMembers));
        assert_eq!(
            Board::new(0, vec![member(1, 1)]),
            Err(BoardError::ZeroThreshold)
        );
        assert_eq!(
            Board::new(3, vec![member(1, 1), member(2, 1)]),
            Err(BoardError::ThresholdAboveTotal {
                threshold: 3,
                total: 2
            })
        );
        assert!(matches!(
            Board::new(1, vec![member(1, 1), member(1, 2)]),
            Err(BoardError::DuplicateMember(_))
        ));
        assert!(matches!(
            Board::new(1, vec![member(1, 0)]),
            Err(BoardError::ZeroWeight(_))
        ));
        let zero = BoardMember {
            signer: Address::ZERO,
            weight: 1,
        };
        assert_eq!(Board::new(1, vec![zero]), Err(BoardError::ZeroSigner));
        let many = (0..=MAX_BOARD_MEMBERS)
            .map(|i| BoardMember {
                signer: {
                    let mut address = [1u8; 20];
                    address[18..].copy_from_slice(&(i as u16).to_be_bytes());
                    Address(address)
                },
                weight: 1,
            })
            .collect();
        assert_eq!(Board::new(1, many), Err(BoardError::TooManyMembers(257)));
        assert_eq!(
            Board::new(1, vec![member(1, u64::MAX), member(2, 1)]),
            Err(BoardError::WeightOverflow)
        );
    }

    #[test]
    fn deserializing_an_invalid_board_fails() {
        let json = r#"{"threshold":5,"members":[{"signer":"0x0000000000000000000000000000000000000001","weight":1}]}"#;
        let err = serde_json::from_str::<Board>(json).unwrap_err();
        assert!(
            err.to_string().contains("threshold 5 is more than"),
            "{err}"
        );
    }

    #[test]
    fn lazy_id_is_the_board_hash_and_depends_on_every_field() {
        let a = Board::new(2, vec![member(1, 1), member(2, 1), member(3, 1)]).unwrap();
        assert_eq!(a.lazy_entity_id().0, a.hash().0);
        let b = Board::new(3, vec![member(1, 1), member(2, 1), member(3, 1)]).unwrap();
        let c = Board::new(2, vec![member(1, 1), member(2, 1), member(3, 2)]).unwrap();
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
    }

    #[test]
    fn quorum_counts_distinct_members_only() {
        // 3-of-4, equal weights.
        let board = Board::new(3, (1..=4).map(|n| member(n, 1)).collect()).unwrap();
        let digest = keccak256(b"frame");
        let sig = |n: u8| key(n).sign(&digest);

        let three = QuorumSignature(vec![sig(1), sig(2), sig(3)]);
        assert_eq!(board.verify_quorum(&digest, &three), Ok(()));

        let duplicated = QuorumSignature(vec![sig(1), sig(1), sig(2)]);
        assert_eq!(
            board.verify_quorum(&digest, &duplicated),
            Err(QuorumError::NotEnoughWeight {
                got: 2,
                threshold: 3
            })
        );

        let outsider = QuorumSignature(vec![sig(1), sig(2), sig(9)]);
        assert_eq!(board.signed_weight(&digest, &outsider), 2);

        let padded = QuorumSignature(vec![sig(1), sig(2), sig(3), sig(4), sig(9)]);
        assert_eq!(
            board.verify_quorum(&digest, &padded),
            Err(QuorumError::TooManySignatures {
                count: 5,
                members: 4
            })
        );

        let other_digest = QuorumSignature(vec![key(1).sign(&keccak256(b"x")), sig(2), sig(3)]);
        assert_eq!(board.signed_weight(&digest, &other_digest), 2);
    }

    #[test]
    fn weighted_board_sums_weights() {
        let board = Board::new(5, vec![member(1, 3), member(2, 2), member(3, 1)]).unwrap();
        let digest = keccak256(b"w");
        let s = |n: u8| key(n).sign(&digest);
        assert!(
            board
                .verify_quorum(&digest, &QuorumSignature(vec![s(1), s(2)]))
                .is_ok()
        );
        assert!(
            board
                .verify_quorum(&digest, &QuorumSignature(vec![s(2), s(3)]))
                .is_err()
        );
    }

    #[test]
    fn left_is_the_smaller_id() {
        let a = EntityId([0; 32]);
        let mut b = EntityId([0; 32]);
        b.0[0] = 1;
        assert!(a.is_left_of(&b));
        assert!(!b.is_left_of(&a));
    }
}
