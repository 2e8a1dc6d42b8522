//! Onion payloads for multi-hop payments (PROTOCOL.md §7): each hop's instructions are
//! encrypted to that hop alone, so a hop learns its previous hop (who locked to it), its next
//! hop and its own amounts, and nothing else of the route.
//!
//! A layer is `ephemeral public key (33 bytes) ‖ ChaCha20-Poly1305(instruction)`, keyed by
//! keccak of the ECDH secret between the ephemeral key and the hop's key. Every layer has its
//! own ephemeral key (derived by the sender from its random seed), so the zero nonce is never
//! used twice with one key.

use crate::board::EntityId;
use crate::codec::{Packed, decode, encode, tag};
use crate::crypto::{PublicKey, SignerKey, keccak256};
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce};
use serde::{Deserialize, Serialize};

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

fn layer_key(shared: &[u8; 32], ephemeral: &PublicKey, recipient: &PublicKey) -> Key {
    let digest = Packed::new()
        .bytes32(&tag("xln.onion.v1").0)
        .bytes32(shared)
        .bytes33(&ephemeral.to_bytes())
        .bytes33(&recipient.to_bytes())
        .hash();
    Key::from(digest.0)
}

/// Encrypts `instruction` to `recipient` with the one-time key `ephemeral_secret`.
pub fn seal(
    recipient: &PublicKey,
    instruction: &HopInstruction,
    ephemeral_secret: &[u8; 32],
) -> Result<Vec<u8>, OnionError> {
    let ephemeral = SignerKey::from_bytes(ephemeral_secret).map_err(|_| OnionError::BadSeed)?;
    let ephemeral_public = ephemeral.public_key();
    let key = layer_key(
        &ephemeral.shared_secret(recipient),
        &ephemeral_public,
        recipient,
    );
    let ciphertext = ChaCha20Poly1305::new(&key)
        .encrypt(&Nonce::default(), encode(instruction).as_slice())
        .map_err(|_| OnionError::Undecryptable)?;
    let mut layer = Vec::with_capacity(KEY_BYTES + ciphertext.len());
    layer.extend_from_slice(&ephemeral_public.to_bytes());
    layer.extend_from_slice(&ciphertext);
    Ok(layer)
}

/// Decrypts the layer meant for the holder of `key`.
pub fn open(key: &SignerKey, layer: &[u8]) -> Result<HopInstruction, OnionError> {
    if layer.len() < KEY_BYTES + TAG_BYTES {
        return Err(OnionError::TooShort);
    }
    let (ephemeral, ciphertext) = layer.split_at(KEY_BYTES);
    let ephemeral: [u8; KEY_BYTES] = ephemeral.try_into().map_err(|_| OnionError::TooShort)?;
    let ephemeral = PublicKey::from_bytes(&ephemeral).map_err(|_| OnionError::BadEphemeralKey)?;
    let symmetric = layer_key(
        &key.shared_secret(&ephemeral),
        &ephemeral,
        &key.public_key(),
    );
    let plaintext = ChaCha20Poly1305::new(&symmetric)
        .decrypt(&Nonce::default(), ciphertext)
        .map_err(|_| OnionError::Undecryptable)?;
    decode("hop instruction", &plaintext).map_err(|_| OnionError::Malformed)
}

/// The one-time key of layer `index`, derived from the sender's random seed.
pub fn ephemeral_secret(seed: &[u8; 32], index: usize) -> [u8; 32] {
    let mut input = Vec::with_capacity(40);
    input.extend_from_slice(seed);
    input.extend_from_slice(&(index as u64).to_be_bytes());
    keccak256(&input).0
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn each_layer_opens_only_for_its_hop() {
        let (hop, receiver, stranger) = (key(1), key(2), key(3));
        let last = HopInstruction::Final {
            preimage: Preimage([9; 32]),
            amount: 990,
        };
        let inner = seal(
            &receiver.public_key(),
            &last,
            &ephemeral_secret(&[7; 32], 1),
        )
        .unwrap();
        let outer = seal(
            &hop.public_key(),
            &forward(inner.clone()),
            &ephemeral_secret(&[7; 32], 0),
        )
        .unwrap();

        assert_eq!(open(&hop, &outer).unwrap(), forward(inner.clone()));
        assert_eq!(open(&receiver, &inner).unwrap(), last);
        assert_eq!(open(&stranger, &outer), Err(OnionError::Undecryptable));
        assert_eq!(open(&receiver, &outer), Err(OnionError::Undecryptable));
        // The hop sees the inner layer only as ciphertext.
        assert_eq!(open(&hop, &inner), Err(OnionError::Undecryptable));
    }

    #[test]
    fn damaged_layers_are_refused() {
        let hop = key(1);
        let layer = seal(&hop.public_key(), &forward(vec![]), &[5; 32]).unwrap();
        assert_eq!(open(&hop, &layer[..20]), Err(OnionError::TooShort));
        let mut flipped = layer.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(open(&hop, &flipped), Err(OnionError::Undecryptable));
        let mut bad_key = layer.clone();
        bad_key[0] = 9;
        assert_eq!(open(&hop, &bad_key), Err(OnionError::BadEphemeralKey));
        assert_eq!(
            seal(&hop.public_key(), &forward(vec![]), &[0; 32]),
            Err(OnionError::BadSeed)
        );
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
