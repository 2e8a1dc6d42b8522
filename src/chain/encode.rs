//! Conversions between the core's types and the contracts' ABI types, and the digests the
//! contracts check, built exactly as `contracts/README.md` fixes them.

use super::bindings::Depository;
use super::error::{ChainError, Result};
use alloy::primitives::{Address, B256, Bytes, I256, U256, keccak256};
use alloy::sol_types::SolValue;
use xln_core::account::{AccountKey, AccountState, DisputeProof, FrameHeader};
use xln_core::board::{Board, EntityId, QuorumSignature};
use xln_core::collections::VecMap;
use xln_core::crypto::{self, Hash};
use xln_core::delta::{Delta, TokenId};
use xln_core::entity::DisputeStart;

pub const SETTLEMENT_TAG: &str = "xln.settlement.v1";
pub const ROTATION_TAG: &str = "xln.board.rotation.v1";

pub fn b256(hash: &Hash) -> B256 {
    B256::from(hash.0)
}

pub fn hash(value: &B256) -> Hash {
    Hash(value.0)
}

pub fn entity_b256(id: &EntityId) -> B256 {
    B256::from(id.0)
}

pub fn entity_id(value: &B256) -> EntityId {
    EntityId(value.0)
}

pub fn address(value: &crypto::Address) -> Address {
    Address::from(value.0)
}

pub fn core_address(value: &Address) -> crypto::Address {
    crypto::Address(value.0.0)
}

/// `domain = keccak256(abi.encodePacked(uint256 chainid, address verifyingContract))`.
pub fn domain(chain_id: u64, verifying_contract: Address) -> Hash {
    let mut packed = [0u8; 52];
    packed[..32].copy_from_slice(&U256::from(chain_id).to_be_bytes::<32>());
    packed[32..].copy_from_slice(verifying_contract.as_slice());
    Hash(keccak256(packed).0)
}

/// The board as the contracts take it: `abi.encode(uint64 threshold, address[] members,
/// uint64[] weights)`.
pub fn encode_board(board: &Board) -> Bytes {
    let members: Vec<Address> = board.members().iter().map(|m| address(&m.signer)).collect();
    let weights: Vec<u64> = board.members().iter().map(|m| m.weight).collect();
    (board.threshold(), members, weights)
        .abi_encode_params()
        .into()
}

/// The quorum as the contracts take it: 65-byte signatures concatenated, each with the `v`
/// under which `ecrecover` gives its member. The core accepts a signature whose `v` is only a
/// hint (it verifies against the member's key); the chain recovers with it, so it is fixed
/// here. Signatures that recover to no member are dropped: they would count for nothing.
pub fn chain_signatures(board: &Board, digest: &Hash, quorum: &QuorumSignature) -> Bytes {
    let mut out = Vec::with_capacity(quorum.0.len() * 65);
    for signature in &quorum.0 {
        let fixed = board
            .members()
            .iter()
            .find_map(|m| signature.with_recovery_for(digest, &m.signer));
        if let Some(fixed) = fixed {
            out.extend_from_slice(&fixed.0);
        }
    }
    out.into()
}

/// Signs `digest` with each key, as one quorum.
pub fn sign_quorum(keys: &[xln_core::crypto::SignerKey], digest: &Hash) -> QuorumSignature {
    QuorumSignature(keys.iter().map(|k| k.sign(digest)).collect())
}

/// The per-token states of an account, ascending by token id, as a dispute proof carries them.
pub fn token_states(deltas: &VecMap<TokenId, Delta>) -> Vec<Depository::TokenState> {
    deltas
        .iter()
        .map(|(token, d)| Depository::TokenState {
            tokenId: *token,
            collateral: d.collateral,
            ondelta: d.ondelta,
            offdelta: d.offdelta,
            leftCreditLimit: d.left_credit_limit,
            rightCreditLimit: d.right_credit_limit,
            leftHold: d.left_hold,
            rightHold: d.right_hold,
        })
        .collect()
}

/// The frame a dispute proof carries: the header plus the state it commits to. Refuses a state
/// whose hash is not the header's (the contract would compute another frame hash, and the
/// signature would not verify).
pub fn account_frame(
    header: &FrameHeader,
    state: &AccountState,
) -> Result<Depository::AccountFrame> {
    if state.hash() != header.state_hash {
        return Err(ChainError::BadProof("state hash differs from the frame's"));
    }
    Ok(frame_of(header, &state.deltas, &state.extras_hash()))
}

fn frame_of(
    header: &FrameHeader,
    deltas: &VecMap<TokenId, Delta>,
    extras_hash: &Hash,
) -> Depository::AccountFrame {
    Depository::AccountFrame {
        height: header.height,
        timestamp: header.timestamp,
        jHeight: header.j_height,
        txsHash: b256(&header.txs_hash),
        prevFrameHash: b256(&header.prev_frame_hash),
        tokens: token_states(deltas),
        extrasHash: b256(extras_hash),
        byLeft: header.by_left,
    }
}

/// A dispute proof for the chain: the counterparty's signed frame (taken from the core's
/// [`DisputeProof`] and the account state at that frame), with the counterparty's board.
pub fn dispute_proof(
    key: &AccountKey,
    counterparty: &EntityId,
    counterparty_board: &Board,
    proof: &DisputeProof,
    state: &AccountState,
) -> Result<Depository::DisputeProof> {
    if (state.left, state.right) != (key.left, key.right) {
        return Err(ChainError::BadProof("state is of another account"));
    }
    if *counterparty != key.left && *counterparty != key.right {
        return Err(ChainError::BadProof("counterparty is not in the account"));
    }
    let frame = account_frame(&proof.header, state)?;
    Ok(signed_proof(
        key,
        counterparty,
        counterparty_board,
        proof,
        frame,
    ))
}

/// The dispute proof of a start the core made from its committed account (its deltas and
/// extras are those the frame commits to, see `EntityState::dispute_start`).
pub fn start_proof(start: &DisputeStart) -> Depository::DisputeProof {
    let frame = frame_of(&start.proof.header, &start.deltas, &start.extras_hash);
    signed_proof(
        &start.key,
        &start.peer,
        &start.peer_board,
        &start.proof,
        frame,
    )
}

fn signed_proof(
    key: &AccountKey,
    counterparty: &EntityId,
    counterparty_board: &Board,
    proof: &DisputeProof,
    frame: Depository::AccountFrame,
) -> Depository::DisputeProof {
    let digest = proof.header.hash(key);
    Depository::DisputeProof {
        counterparty: entity_b256(counterparty),
        frame,
        counterpartyBoard: encode_board(counterparty_board),
        counterpartySigs: chain_signatures(counterparty_board, &digest, &proof.peer_signature),
    }
}

/// One token's change in a cooperative settlement, from LEFT's side: the core's type, which
/// the account's two sides agree on.
pub use xln_core::account::TokenDiff;

/// An i128 as int256 (sign-extended; always fits).
pub fn i256(value: i128) -> I256 {
    let mut bytes = if value < 0 { [0xff; 32] } else { [0; 32] };
    bytes[16..].copy_from_slice(&value.to_be_bytes());
    I256::from_be_bytes(bytes)
}

impl From<&TokenDiff> for Depository::TokenDiff {
    fn from(d: &TokenDiff) -> Self {
        Depository::TokenDiff {
            tokenId: d.token,
            leftDiff: i256(d.left_diff),
            rightDiff: i256(d.right_diff),
            collateralDiff: i256(d.collateral_diff),
            ondeltaDiff: i256(d.ondelta_diff),
        }
    }
}

pub fn abi_diffs(diffs: &[TokenDiff]) -> Vec<Depository::TokenDiff> {
    diffs.iter().map(Depository::TokenDiff::from).collect()
}

/// `keccak256(abi.encode(SETTLEMENT_TAG, domain, left, right, nonce, diffs))`.
pub fn settlement_digest(
    domain: &Hash,
    left: &EntityId,
    right: &EntityId,
    nonce: U256,
    diffs: &[Depository::TokenDiff],
) -> Hash {
    let encoded = (
        keccak256(SETTLEMENT_TAG),
        b256(domain),
        entity_b256(left),
        entity_b256(right),
        nonce,
        diffs.to_vec(),
    )
        .abi_encode_params();
    Hash(keccak256(encoded).0)
}

/// `keccak256(abi.encode(domain, entity, nonce, batch))`.
pub fn batch_digest(
    domain: &Hash,
    entity: &EntityId,
    nonce: U256,
    batch: &Depository::Batch,
) -> Hash {
    let encoded = (b256(domain), entity_b256(entity), nonce, batch.clone()).abi_encode_params();
    Hash(keccak256(encoded).0)
}

/// `keccak256(abi.encodePacked(ROTATION_TAG, domain(EntityProvider), entityId, newBoardHash,
/// uint256 nonce))`.
pub fn rotation_digest(
    ep_domain: &Hash,
    entity: &EntityId,
    new_board: &Board,
    nonce: U256,
) -> Hash {
    let mut packed = Vec::with_capacity(160);
    packed.extend_from_slice(keccak256(ROTATION_TAG).as_slice());
    packed.extend_from_slice(&ep_domain.0);
    packed.extend_from_slice(&entity.0);
    packed.extend_from_slice(&new_board.hash().0);
    packed.extend_from_slice(&nonce.to_be_bytes::<32>());
    Hash(keccak256(packed).0)
}

/// The ordered pair (left, right) of two entity ids.
pub fn order(a: EntityId, b: EntityId) -> (EntityId, EntityId) {
    if a.is_left_of(&b) { (a, b) } else { (b, a) }
}
