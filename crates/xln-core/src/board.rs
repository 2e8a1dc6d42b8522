//! Boards of signers, quorum signatures and entity ids (PROTOCOL.md §1).

use crate::bytes::fixed_bytes;
use crate::codec::Packed;
use crate::crypto::{Address, Hash, Signature};
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardMember {
    pub signer: Address,
    pub weight: u64,
}

/// A board: `0 < threshold <= sum(weights)`, distinct signers, positive weights.
/// The only way to get one is through [`Board::new`] (deserializing checks the same rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BoardParts")]
pub struct Board {
    threshold: u64,
    members: Vec<BoardMember>,
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
}

impl Board {
    pub fn new(threshold: u64, members: Vec<BoardMember>) -> Result<Self, BoardError> {
        if members.is_empty() {
            return Err(BoardError::NoMembers);
        }
        if threshold == 0 {
            return Err(BoardError::ZeroThreshold);
        }
        let mut total: u64 = 0;
        for (i, member) in members.iter().enumerate() {
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
        Ok(Self { threshold, members })
    }

    /// A personal wallet's board: one signer, threshold 1.
    pub fn single(signer: Address) -> Self {
        Self {
            threshold: 1,
            members: vec![BoardMember { signer, weight: 1 }],
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
        let mut seen: Vec<Address> = Vec::with_capacity(signatures.0.len());
        let mut weight: u64 = 0;
        for signature in &signatures.0 {
            let Ok(signer) = signature.recover(digest) else {
                continue;
            };
            if seen.contains(&signer) {
                continue;
            }
            if let Some(w) = self.weight_of(&signer) {
                seen.push(signer);
                // Cannot overflow: the sum of all weights was checked in `new`.
                weight += w;
            }
        }
        weight
    }

    /// Checks that `signatures` over `digest` reach the threshold.
    pub fn verify_quorum(
        &self,
        digest: &Hash,
        signatures: &QuorumSignature,
    ) -> Result<(), QuorumError> {
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
