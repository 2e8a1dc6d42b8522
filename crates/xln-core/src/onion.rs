//! Onion payloads for multi-hop payments (PROTOCOL.md §7): each hop's instructions are
//! encrypted to that hop alone, so a hop learns its previous hop (who locked to it), its next
//! hop and its own amounts, and nothing else of the route.
//!
//! A layer is `ephemeral public key (33 bytes) ‖ ChaCha20-Poly1305(instruction)`, keyed by
//! keccak of the ECDH secret between the ephemeral key and the hop's key, the two public keys
//! and the payment's hashlock. The sender derives one ephemeral key per hop from its session
//! seed, so that both ends can keep the ECDH secret of a (session, hop) pair and a layer then
//! costs an AEAD instead of a scalar multiplication. The hashlock (unique per payment, and a
//! hop appears once per route) makes every layer key distinct, so the zero nonce is never used
//! twice with one key. A hop can tell that two payments came through the same session; the
//! node rotates its session seed to bound that.

use crate::board::EntityId;
use crate::codec::{Packed, decode, encode, tag};
use crate::crypto::{Hash, PublicKey, SignerKey};
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A payment's secret before it is revealed. Its `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preimage(pub [u8; 32]);

impl std::fmt::Debug for Preimage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Preimage(hidden)")
    }
}

/// What one hop is told to do with the lock it received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HopInstruction {
    /// Lock `amount` on the account with `next`, expiring at the given time and height, and
    /// hand it `payload` (the next layer).
    Forward {
        next: EntityId,
        amount: u128,
        expires_at_ms: u64,
        reveal_before_j_height: u64,
        payload: Vec<u8>,
    },
    /// You are the receiver: reveal `preimage` if the lock carries `amount`.
    Final { preimage: Preimage, amount: u128 },
    /// Like `Forward`, for the netting cycle `cycle` (PROTOCOL.md §10): the hop forwards the
    /// whole amount, with no fee, and only if it agreed to that cycle with these hops and this
    /// amount (see `entity::NettingAgreement`).
    NettingForward {
        cycle: Hash,
        next: EntityId,
        amount: u128,
        expires_at_ms: u64,
        reveal_before_j_height: u64,
        payload: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnionError {
    #[error("onion layer is too short")]
    TooShort,
    #[error("onion layer does not carry a valid public key")]
    BadEphemeralKey,
    #[error("onion layer does not decrypt with our key")]
    Undecryptable,
    #[error("onion layer decrypts to something that is not an instruction")]
    Malformed,
    #[error("the sender's seed gives no valid ephemeral key")]
    BadSeed,
}

const KEY_BYTES: usize = 33;
const TAG_BYTES: usize = 16;
/// Entries a cache keeps before it starts over.
const CACHE_LIMIT: usize = 16_384;

/// (ephemeral secret, recipient key) → (ephemeral public key, ECDH secret).
type SealingCache = BTreeMap<([u8; 32], [u8; 33]), ([u8; 33], [u8; 32])>;

/// ECDH secrets already computed: by (ephemeral secret, recipient) for sealing, by ephemeral
/// public key for opening. A cache, not state: it never changes a result, so it compares equal
/// to any other and is never serialized.
#[derive(Clone, Default)]
pub struct OnionCache {
    sealing: SealingCache,
    opening: BTreeMap<[u8; 33], [u8; 32]>,
}

impl PartialEq for OnionCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for OnionCache {}

impl std::fmt::Debug for OnionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OnionCache({} + {})",
            self.sealing.len(),
            self.opening.len()
        )
    }
}

impl OnionCache {
    fn bound(&mut self) {
        if self.sealing.len() > CACHE_LIMIT {
            self.sealing.clear();
        }
        if self.opening.len() > CACHE_LIMIT {
            self.opening.clear();
        }
    }
}

fn layer_key(
    shared: &[u8; 32],
    ephemeral: &[u8; 33],
    recipient: &[u8; 33],
    hashlock: &Hash,
) -> Key {
    let digest = Packed::new()
        .bytes32(&tag("xln.onion.v1").0)
        .bytes32(shared)
        .bytes33(ephemeral)
        .bytes33(recipient)
        .bytes32(&hashlock.0)
        .hash();
    Key::from(digest.0)
}

/// Encrypts `instruction` to `recipient` for the payment `hashlock`, with the ephemeral key
/// `ephemeral_secret` (see [`session_secret`]).
pub fn seal(
    recipient: &PublicKey,
    instruction: &HopInstruction,
    ephemeral_secret: &[u8; 32],
    hashlock: &Hash,
    cache: &mut OnionCache,
) -> Result<Vec<u8>, OnionError> {
    seal_bytes(
        recipient,
        &encode(instruction),
        ephemeral_secret,
        hashlock,
        cache,
    )
}

/// [`seal`] of any plaintext; the fuzz target uses it to reach what [`open`] does with
/// plaintexts that are not instructions.
pub(crate) fn seal_bytes(
    recipient: &PublicKey,
    plaintext: &[u8],
    ephemeral_secret: &[u8; 32],
    hashlock: &Hash,
    cache: &mut OnionCache,
) -> Result<Vec<u8>, OnionError> {
    let recipient_bytes = recipient.to_bytes();
    let cache_key = (*ephemeral_secret, recipient_bytes);
    let (ephemeral_public, shared) = match cache.sealing.get(&cache_key) {
        Some(known) => *known,
        None => {
            let ephemeral =
                SignerKey::from_bytes(ephemeral_secret).map_err(|_| OnionError::BadSeed)?;
            let computed = (
                ephemeral.public_key().to_bytes(),
                ephemeral.shared_secret(recipient),
            );
            cache.bound();
            cache.sealing.insert(cache_key, computed);
            computed
        }
    };
    let key = layer_key(&shared, &ephemeral_public, &recipient_bytes, hashlock);
    let ciphertext = ChaCha20Poly1305::new(&key)
        .encrypt(&Nonce::default(), plaintext)
        .map_err(|_| OnionError::Undecryptable)?;
    let mut layer = Vec::with_capacity(KEY_BYTES + ciphertext.len());
    layer.extend_from_slice(&ephemeral_public);
    layer.extend_from_slice(&ciphertext);
    Ok(layer)
}

/// Decrypts the layer meant for the holder of `key`, for the payment `hashlock`.
pub fn open(
    key: &SignerKey,
    layer: &[u8],
    hashlock: &Hash,
    cache: &mut OnionCache,
) -> Result<HopInstruction, OnionError> {
    if layer.len() < KEY_BYTES + TAG_BYTES {
        return Err(OnionError::TooShort);
    }
    let (ephemeral, ciphertext) = layer.split_at(KEY_BYTES);
    let ephemeral: [u8; KEY_BYTES] = ephemeral.try_into().map_err(|_| OnionError::TooShort)?;
    let shared = match cache.opening.get(&ephemeral) {
        Some(shared) => *shared,
        None => {
            let public =
                PublicKey::from_bytes(&ephemeral).map_err(|_| OnionError::BadEphemeralKey)?;
            let shared = key.shared_secret(&public);
            cache.bound();
            cache.opening.insert(ephemeral, shared);
            shared
        }
    };
    let symmetric = layer_key(&shared, &ephemeral, &key.public_key().to_bytes(), hashlock);
    let plaintext = ChaCha20Poly1305::new(&symmetric)
        .decrypt(&Nonce::default(), ciphertext)
        .map_err(|_| OnionError::Undecryptable)?;
    decode("hop instruction", &plaintext).map_err(|_| OnionError::Malformed)
}

/// The ephemeral secret for layers sealed to `recipient` in the session `seed`.
pub fn session_secret(seed: &[u8; 32], recipient: &PublicKey) -> [u8; 32] {
    Packed::new()
        .bytes32(&tag("xln.onion.session.v1").0)
        .bytes32(seed)
        .bytes33(&recipient.to_bytes())
        .hash()
        .0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keccak256;

    fn key(n: u8) -> SignerKey {
        SignerKey::from_bytes(&[n; 32]).unwrap()
    }

    fn forward(payload: Vec<u8>) -> HopInstruction {
        HopInstruction::Forward {
            next: EntityId([4; 32]),
            amount: 990,
            expires_at_ms: 5_000,
            reveal_before_j_height: 50,
            payload,
        }
    }

    fn sealed(to: &SignerKey, instruction: &HopInstruction, hashlock: &Hash) -> Vec<u8> {
        let secret = session_secret(&[7; 32], &to.public_key());
        let mut cache = OnionCache::default();
        seal(&to.public_key(), instruction, &secret, hashlock, &mut cache).unwrap()
    }

    fn opened(
        key: &SignerKey,
        layer: &[u8],
        hashlock: &Hash,
    ) -> Result<HopInstruction, OnionError> {
        open(key, layer, hashlock, &mut OnionCache::default())
    }

    #[test]
    fn each_layer_opens_only_for_its_hop_and_payment() {
        let (hop, receiver, stranger) = (key(1), key(2), key(3));
        let hashlock = keccak256(b"payment");
        let last = HopInstruction::Final {
            preimage: Preimage([9; 32]),
            amount: 990,
        };
        let inner = sealed(&receiver, &last, &hashlock);
        let outer = sealed(&hop, &forward(inner.clone()), &hashlock);

        assert_eq!(
            opened(&hop, &outer, &hashlock).unwrap(),
            forward(inner.clone())
        );
        assert_eq!(opened(&receiver, &inner, &hashlock).unwrap(), last);
        assert_eq!(
            opened(&stranger, &outer, &hashlock),
            Err(OnionError::Undecryptable)
        );
        assert_eq!(
            opened(&receiver, &outer, &hashlock),
            Err(OnionError::Undecryptable)
        );
        // The hop sees the inner layer only as ciphertext.
        assert_eq!(
            opened(&hop, &inner, &hashlock),
            Err(OnionError::Undecryptable)
        );
        // A layer is bound to its payment.
        let other = keccak256(b"other payment");
        assert_eq!(opened(&hop, &outer, &other), Err(OnionError::Undecryptable));
    }

    #[test]
    fn cached_secrets_give_the_same_layers_as_fresh_ones() {
        let hop = key(1);
        let hashlock = keccak256(b"p");
        let secret = session_secret(&[7; 32], &hop.public_key());
        let mut cache = OnionCache::default();
        let first = seal(
            &hop.public_key(),
            &forward(vec![]),
            &secret,
            &hashlock,
            &mut cache,
        )
        .unwrap();
        let again = seal(
            &hop.public_key(),
            &forward(vec![]),
            &secret,
            &hashlock,
            &mut cache,
        )
        .unwrap();
        assert_eq!(first, again);
        assert_eq!(first, sealed(&hop, &forward(vec![]), &hashlock));
        let mut opening = OnionCache::default();
        for _ in 0..2 {
            assert_eq!(
                open(&hop, &first, &hashlock, &mut opening).unwrap(),
                forward(vec![])
            );
        }
    }

    #[test]
    fn damaged_layers_are_refused() {
        let hop = key(1);
        let hashlock = keccak256(b"p");
        let layer = sealed(&hop, &forward(vec![]), &hashlock);
        assert_eq!(
            opened(&hop, &layer[..20], &hashlock),
            Err(OnionError::TooShort)
        );
        let mut flipped = layer.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(
            opened(&hop, &flipped, &hashlock),
            Err(OnionError::Undecryptable)
        );
        let mut bad_key = layer.clone();
        bad_key[0] = 9;
        assert_eq!(
            opened(&hop, &bad_key, &hashlock),
            Err(OnionError::BadEphemeralKey)
        );
        let mut cache = OnionCache::default();
        let no_key = seal(
            &hop.public_key(),
            &forward(vec![]),
            &[0; 32],
            &hashlock,
            &mut cache,
        );
        assert_eq!(no_key, Err(OnionError::BadSeed));
    }

    #[test]
    fn preimages_stay_out_of_debug_output() {
        let last = HopInstruction::Final {
            preimage: Preimage([0xab; 32]),
            amount: 1,
        };
        let text = format!("{last:?}");
        assert!(
            !text.contains("171") && !text.to_lowercase().contains("abab"),
            "{text}"
        );
    }
}
