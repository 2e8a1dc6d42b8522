//! Signer keys, Ethereum addresses and 65-byte recoverable signatures over keccak digests,
//! exactly as the contracts check them with `ecrecover` (PROTOCOL.md §1).

use crate::bytes::fixed_bytes;
use k256::ecdsa::{RecoveryId, Signature as EcdsaSignature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};

fixed_bytes!(
    /// A 32-byte keccak-256 digest.
    Hash,
    32
);
fixed_bytes!(
    /// An Ethereum address: the last 20 bytes of the keccak of the uncompressed public key.
    Address,
    20
);
fixed_bytes!(
    /// A recoverable ECDSA signature `r ‖ s ‖ v` with `v ∈ {27, 28}` and low `s`.
    Signature,
    65
);

/// keccak-256 of `data`.
pub fn keccak256(data: &[u8]) -> Hash {
    Hash(Keccak256::digest(data).into())
}

/// Why a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("not a valid secp256k1 private key")]
    InvalidPrivateKey,
    #[error("not a valid secp256k1 public key")]
    InvalidPublicKey,
    #[error("malformed signature: {0}")]
    MalformedSignature(&'static str),
    #[error("signature does not recover to a public key")]
    Unrecoverable,
}

/// A signer's private key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct SignerKey {
    key: SigningKey,
    address: Address,
}

impl SignerKey {
    /// A key from 32 secret bytes (which the caller got from its random source or a key file).
    pub fn from_bytes(secret: &[u8; 32]) -> Result<Self, CryptoError> {
        let key = SigningKey::from_slice(secret).map_err(|_| CryptoError::InvalidPrivateKey)?;
        let address = address_of(key.verifying_key());
        Ok(Self { key, address })
    }

    /// The 32 secret bytes, for writing the key file. Never log them.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes().into()
    }

    pub fn address(&self) -> Address {
        self.address
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.key.verifying_key())
    }

    /// The x coordinate of the ECDH shared point with `peer`.
    pub(crate) fn shared_secret(&self, peer: &PublicKey) -> [u8; 32] {
        let shared = k256::ecdh::diffie_hellman(
            self.key.as_nonzero_scalar(),
            peer.verifying_key().as_affine(),
        );
        let mut out = [0u8; 32];
        out.copy_from_slice(shared.raw_secret_bytes());
        out
    }

    /// Signs a 32-byte digest. RFC 6979 makes this deterministic: no randomness needed.
    pub fn sign(&self, digest: &Hash) -> Signature {
        // Signing a 32-byte prehash with a valid key cannot fail; k256 returns low-s.
        let (sig, recovery) = self
            .key
            .sign_prehash_recoverable(&digest.0)
            .unwrap_or_else(|_| unreachable!("signing a 32-byte digest with a valid key"));
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recovery.to_byte();
        Signature(out)
    }
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerKey({}, secret hidden)", self.address)
    }
}

/// A signer's public key: verifies its signatures without recovering the key each time
/// (recovery costs about three times a verification), and receives onion payloads.
/// Encoded as 33 bytes, SEC1 compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn address(&self) -> Address {
        address_of(&self.0)
    }

    pub fn to_bytes(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out.copy_from_slice(self.0.to_encoded_point(true).as_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8; 33]) -> Result<Self, CryptoError> {
        VerifyingKey::from_sec1_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| CryptoError::InvalidPublicKey)
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::bytes::serialize(&self.to_bytes(), s)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes: [u8; 33] = crate::bytes::deserialize(d)?;
        PublicKey::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

impl Signature {
    fn parts(&self) -> Result<(EcdsaSignature, RecoveryId), CryptoError> {
        let sig = EcdsaSignature::from_slice(&self.0[..64])
            .map_err(|_| CryptoError::MalformedSignature("r or s out of range"))?;
        if sig.normalize_s().is_some() {
            return Err(CryptoError::MalformedSignature("high s"));
        }
        let recovery = match self.0[64] {
            v @ (27 | 28) => RecoveryId::from_byte(v - 27),
            _ => None,
        }
        .ok_or(CryptoError::MalformedSignature("v must be 27 or 28"))?;
        Ok((sig, recovery))
    }

    /// The public key that made this signature over `digest`. Rejects what `ecrecover`
    /// callers must reject too: high `s`, a `v` other than 27/28, zero `r` or `s`.
    pub fn recover_key(&self, digest: &Hash) -> Result<PublicKey, CryptoError> {
        let (sig, recovery) = self.parts()?;
        VerifyingKey::recover_from_prehash(&digest.0, &sig, recovery)
            .map(PublicKey)
            .map_err(|_| CryptoError::Unrecoverable)
    }

    /// The address whose key made this signature over `digest`.
    pub fn recover(&self, digest: &Hash) -> Result<Address, CryptoError> {
        self.recover_key(digest).map(|key| key.address())
    }

    /// Whether `key` made this signature over `digest`. `v` must be 27 or 28 but is not
    /// checked against the key: it is only a recovery hint, and whoever hands the signature
    /// to `ecrecover` derives the right one (see [`Signature::with_recovery_for`]).
    pub fn verify(&self, digest: &Hash, key: &PublicKey) -> bool {
        use k256::ecdsa::signature::hazmat::PrehashVerifier;
        self.parts()
            .is_ok_and(|(sig, _)| key.0.verify_prehash(&digest.0, &sig).is_ok())
    }

    /// This signature with the `v` under which it recovers to `signer`, if there is one.
    pub fn with_recovery_for(&self, digest: &Hash, signer: &Address) -> Option<Signature> {
        [27u8, 28].into_iter().find_map(|v| {
            let mut candidate = *self;
            candidate.0[64] = v;
            (candidate.recover(digest).ok()? == *signer).then_some(candidate)
        })
    }
}

fn address_of(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    // Uncompressed SEC1: 0x04 ‖ x ‖ y; the address hashes x ‖ y.
    let hash = keccak256(&point.as_bytes()[1..]);
    let mut address = [0u8; 20];
    address.copy_from_slice(&hash.0[12..]);
    Address(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    // anvil's and hardhat's first dev account: a public test vector.
    const ANVIL_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const ANVIL_ADDRESS_0: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

    fn anvil_key() -> SignerKey {
        SignerKey::from_bytes(&crate::bytes::parse_hex(ANVIL_KEY_0).unwrap()).unwrap()
    }

    #[test]
    fn keccak_of_empty_input_is_the_known_constant() {
        assert_eq!(
            keccak256(b"").to_string(),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    #[test]
    fn known_private_key_gives_its_known_address() {
        assert_eq!(anvil_key().address().to_string(), ANVIL_ADDRESS_0);
    }

    #[test]
    fn signature_recovers_to_the_signer_and_not_for_another_digest() {
        let key = anvil_key();
        let digest = keccak256(b"xln");
        let sig = key.sign(&digest);
        assert!(matches!(sig.0[64], 27 | 28));
        assert_eq!(sig.recover(&digest).unwrap(), key.address());
        assert_ne!(sig.recover(&keccak256(b"other")).unwrap(), key.address());
    }

    #[test]
    fn verification_with_a_known_key_agrees_with_recovery() {
        let key = anvil_key();
        let digest = keccak256(b"xln");
        let sig = key.sign(&digest);
        let public = sig.recover_key(&digest).unwrap();
        assert_eq!(public.address(), key.address());
        assert!(sig.verify(&digest, &public));
        assert!(!sig.verify(&keccak256(b"other"), &public));
        let other = SignerKey::from_bytes(&[5; 32]).unwrap().sign(&digest);
        assert!(!other.verify(&digest, &public));

        // A flipped v still verifies against the key, and the right v can be derived back.
        let mut flipped = sig;
        flipped.0[64] = if sig.0[64] == 27 { 28 } else { 27 };
        assert!(flipped.verify(&digest, &public));
        assert_ne!(flipped.recover(&digest).ok(), Some(key.address()));
        assert_eq!(
            flipped.with_recovery_for(&digest, &key.address()),
            Some(sig)
        );
    }

    #[test]
    fn signing_is_deterministic() {
        let key = anvil_key();
        let digest = keccak256(b"same");
        assert_eq!(key.sign(&digest), key.sign(&digest));
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let key = anvil_key();
        let digest = keccak256(b"xln");
        let good = key.sign(&digest);

        let mut bad_v = good;
        bad_v.0[64] = 29;
        assert_eq!(
            bad_v.recover(&digest),
            Err(CryptoError::MalformedSignature("v must be 27 or 28"))
        );

        let mut zero = good;
        zero.0[..32].fill(0);
        assert!(zero.recover(&digest).is_err());

        // The same signature with s' = n - s (high s) is malleable and refused.
        let sig = EcdsaSignature::from_slice(&good.0[..64]).unwrap();
        let (r, s) = sig.split_scalars();
        let high = EcdsaSignature::from_scalars(r, -*s).unwrap();
        let mut high_s = good;
        high_s.0[..64].copy_from_slice(&high.to_bytes());
        assert_eq!(
            high_s.recover(&digest),
            Err(CryptoError::MalformedSignature("high s"))
        );
    }

    #[test]
    fn zero_key_is_refused() {
        assert_eq!(
            SignerKey::from_bytes(&[0u8; 32]).unwrap_err(),
            CryptoError::InvalidPrivateKey
        );
    }
}
