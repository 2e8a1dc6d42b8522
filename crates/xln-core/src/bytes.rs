//! Fixed-size byte strings (hashes, addresses, signatures, ids) with one set of conversions:
//! `0x`-hex in text and human-readable serde formats, raw bytes in binary ones.

use serde::de::{Error as _, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Why a hex string did not parse into a fixed-size value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("not hex: {0}")]
    NotHex(String),
    #[error("expected {expected} bytes, got {got}")]
    WrongLength { expected: usize, got: usize },
}

/// Parses `0x`-prefixed (or bare) hex into exactly `N` bytes.
pub fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let bytes = hex::decode(digits).map_err(|e| HexError::NotHex(e.to_string()))?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| HexError::WrongLength { expected: N, got })
}

pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&format!("0x{}", hex::encode(bytes)))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    struct FixedVisitor<const N: usize>;
    impl<const N: usize> Visitor<'_> for FixedVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{N} bytes or a 0x-hex string of them")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<[u8; N], E> {
            parse_hex(text).map_err(E::custom)
        }
        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<[u8; N], E> {
            bytes
                .try_into()
                .map_err(|_| E::invalid_length(bytes.len(), &self))
        }
    }
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(FixedVisitor::<N>)
    } else {
        deserializer
            .deserialize_bytes(FixedVisitor::<N>)
            .map_err(D::Error::custom)
    }
}

/// Declares a `Copy` newtype over `[u8; N]` with hex `Display`/`Debug`/`FromStr` and serde.
macro_rules! fixed_bytes {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;
            pub const ZERO: Self = Self([0u8; $len]);

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// The first and last bytes, for places where the whole value does not fit.
            pub fn short(&self) -> String {
                let hex = hex::encode(self.0);
                format!("0x{}…{}", &hex[..4], &hex[hex.len() - 4..])
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::ZERO
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "0x{}", hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::bytes::HexError;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::bytes::parse_hex(text).map(Self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::bytes::serialize(&self.0, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::bytes::deserialize(d).map(Self)
            }
        }
    };
}
pub(crate) use fixed_bytes;
