//! The logic of the cargo-fuzz targets in `fuzz/` (see `FUZZING.md`), kept here so that the
//! regular test suite runs it too: `replay` feeds every file of the committed corpora through
//! the same functions, on stable, in `cargo test -p xln-core`.
//!
//! Each target takes arbitrary bytes and panics only when it finds a bug: a panic in the code
//! under test, or a broken property that the target checks. Compiled for the unit tests and
//! with the `fuzzing` feature (which the fuzz crate enables); nothing else uses it.

mod account_consistency;
mod onion_payload;
mod peer_message;
#[cfg(test)]
mod replay;

pub use account_consistency::account_consistency;
pub use onion_payload::onion_payload;
pub use peer_message::peer_message;

/// Starting points for a target's corpus (see `replay`), by target name.
pub fn seeds(target: &str) -> Option<Vec<Vec<u8>>> {
    match target {
        "peer_message" => Some(peer_message::seeds()),
        "onion_payload" => Some(onion_payload::seeds()),
        "account_consistency" => Some(account_consistency::seeds()),
        _ => None,
    }
}

/// The fuzz input read as a sequence of small choices. Past the end every read gives 0, so
/// any input is a complete program.
pub(crate) struct Choices<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Choices<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// The next byte, if any is left.
    pub(crate) fn next(&mut self) -> Option<u8> {
        let byte = self.data.get(self.pos).copied();
        self.pos += usize::from(byte.is_some());
        byte
    }

    /// The next byte, 0 past the end.
    pub(crate) fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
}
