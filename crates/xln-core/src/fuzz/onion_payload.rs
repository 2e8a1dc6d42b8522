//! `onion_payload`: what a hop does with the onion layer of an incoming lock, which any peer
//! can fill with any bytes. `onion::open` must return an error, never panic, and its cache
//! must never change a result.
//!
//! The first byte picks the mode, the rest is its data:
//! - 0: the data is the layer, opened with a fixed key and hashlock (what a peer can send);
//! - 1: the data is a plaintext, sealed correctly to the fixed key: reaches the decoding of
//!   what decrypts, which the AEAD hides from mode 0;
//! - 2: the data is a `HopInstruction` (postcard): sealed, it must open to itself, and not
//!   with another key or hashlock, nor once damaged at a position the next bytes pick.

use crate::codec::{decode, encode};
use crate::crypto::{Hash, SignerKey, keccak256};
use crate::onion::{self, HopInstruction, OnionCache, OnionError};
use std::sync::OnceLock;

struct Keys {
    ours: SignerKey,
    other: SignerKey,
    hashlock: Hash,
    other_hashlock: Hash,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        ours: SignerKey::from_bytes(&[0x11; 32]).unwrap_or_else(|_| unreachable!("valid key")),
        other: SignerKey::from_bytes(&[0x22; 32]).unwrap_or_else(|_| unreachable!("valid key")),
        hashlock: keccak256(b"xln fuzz hashlock"),
        other_hashlock: keccak256(b"xln fuzz other hashlock"),
    })
}

/// The ephemeral secret of the layers this target seals.
const EPHEMERAL: [u8; 32] = [0x33; 32];

pub fn onion_payload(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = open_checked(rest);
        }
        1 => sealed_plaintext(rest),
        _ => sealed_instruction(rest),
    }
}

/// Opens `layer` with a fresh cache, then twice with one cache (the second time the ECDH
/// secret comes from it): the three results must agree.
fn open_checked(layer: &[u8]) -> Result<HopInstruction, OnionError> {
    let k = keys();
    let fresh = onion::open(&k.ours, layer, &k.hashlock, &mut OnionCache::default());
    let mut cache = OnionCache::default();
    let first = onion::open(&k.ours, layer, &k.hashlock, &mut cache);
    let cached = onion::open(&k.ours, layer, &k.hashlock, &mut cache);
    assert_eq!(fresh, first, "open depends on the cache");
    assert_eq!(first, cached, "a cached ECDH secret changed the result");
    first
}

fn sealed_plaintext(plaintext: &[u8]) {
    let k = keys();
    let layer = onion::seal_bytes(
        &k.ours.public_key(),
        plaintext,
        &EPHEMERAL,
        &k.hashlock,
        &mut OnionCache::default(),
    )
    .unwrap_or_else(|e| panic!("sealing with a valid key failed: {e}"));
    match open_checked(&layer) {
        Ok(instruction) => {
            // What decoded must be an instruction that seals and opens to itself.
            assert_eq!(
                decode::<HopInstruction>("instruction", &encode(&instruction)).as_ref(),
                Ok(&instruction),
                "an instruction does not survive its encoding"
            );
            roundtrip(&instruction, 0);
        }
        Err(OnionError::Malformed) => {}
        Err(e) => panic!("a correctly sealed layer failed to open: {e}"),
    }
}

fn sealed_instruction(data: &[u8]) {
    let Some((&damage_at, rest)) = data.split_first() else {
        return;
    };
    if let Ok(instruction) = decode::<HopInstruction>("instruction", rest) {
        roundtrip(&instruction, damage_at);
    }
}

/// Seals `instruction` to our key: it opens to itself, and is refused with the wrong key, the
/// wrong hashlock, when cut short, or with the byte at `damage_at` changed.
fn roundtrip(instruction: &HopInstruction, damage_at: u8) {
    let k = keys();
    let mut cache = OnionCache::default();
    let layer = onion::seal(
        &k.ours.public_key(),
        instruction,
        &EPHEMERAL,
        &k.hashlock,
        &mut cache,
    )
    .unwrap_or_else(|e| panic!("sealing with a valid key failed: {e}"));
    assert_eq!(
        open_checked(&layer).as_ref(),
        Ok(instruction),
        "a sealed instruction does not open to itself"
    );
    let wrong_key = onion::open(&k.other, &layer, &k.hashlock, &mut OnionCache::default());
    assert_eq!(
        wrong_key,
        Err(OnionError::Undecryptable),
        "opened with another key"
    );
    let wrong_lock = onion::open(&k.ours, &layer, &k.other_hashlock, &mut cache);
    assert_eq!(
        wrong_lock,
        Err(OnionError::Undecryptable),
        "opened with another hashlock"
    );
    let cut = layer.len().saturating_sub(usize::from(damage_at) + 1);
    assert!(
        open_checked(&layer[..cut]).is_err(),
        "a layer cut to {cut} bytes opened"
    );
    let mut damaged = layer.clone();
    let at = usize::from(damage_at) % damaged.len();
    damaged[at] ^= 0x01;
    assert!(
        open_checked(&damaged).is_err(),
        "a layer damaged at byte {at} opened"
    );
}

/// Starting points for the corpus: layers as the sender seals them, their plaintexts and
/// instructions.
pub(crate) fn seeds() -> Vec<Vec<u8>> {
    let k = keys();
    let forward = HopInstruction::Forward {
        next: crate::board::EntityId([7; 32]),
        amount: 1_000,
        expires_at_ms: 1_090_000,
        reveal_before_j_height: 30,
        payload: vec![0xab; 64],
    };
    let last = HopInstruction::Final {
        preimage: onion::Preimage([9; 32]),
        amount: 1_000,
    };
    let mut seeds = Vec::new();
    for instruction in [&forward, &last] {
        let layer = onion::seal(
            &k.ours.public_key(),
            instruction,
            &EPHEMERAL,
            &k.hashlock,
            &mut OnionCache::default(),
        )
        .unwrap_or_else(|e| panic!("sealing failed: {e}"));
        seeds.push([&[0u8][..], &layer].concat());
        seeds.push([&[1u8][..], &encode(instruction)].concat());
        seeds.push([&[2u8, 40][..], &encode(instruction)].concat());
    }
    seeds
}
