//! Persistence in redb (ARCHITECTURE.md, store): the write-ahead log of runtime inputs and
//! snapshots of the runtime state.
//!
//! The contract with the node: an input is appended, with the hash of the state it is applied
//! to, before any output it caused leaves the process. Recovery is the latest snapshot that
//! checks out, plus the inputs after it, each of which must meet its recorded hash.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use xln_core::codec::{decode, encode};
use xln_core::crypto::{Hash, keccak256};
use xln_core::runtime::{RuntimeInput, RuntimeState};

/// Every table, in one place.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Input number → hash of the state it is applied to (32 bytes; zero: not recorded) ‖ the
/// input (postcard).
const WAL: TableDefinition<u64, &[u8]> = TableDefinition::new("wal");
/// Number of the last input it includes → keccak of the state (32 bytes) ‖ the state (postcard).
const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

const SCHEMA_KEY: &str = "schema_version";
/// The layout of the tables above and of the state and inputs in them. A database of another
/// version is refused: there is no migration yet, and reading an older layout as the new one
/// would take its snapshots for damaged ones. 3: settlements, swap orders and netting changed
/// the account and entity state. 4: each replica of a board keeps its last committed frames
/// for members that fell behind. 5: a settlement proposal carries no signature of the proposer
/// (`AccountTx::SettlementPropose`, `PendingSettlement`, `EntityTx::ProposeSettlement` lost
/// their signature field): only the acceptor signs, and the proposer submits. 6: a netting
/// agreement names its proposal and the loop's hashlock. 7: the entity holds back a taker's swap
/// resolve until its makers' legs committed (`EntityState::swap_legs`). 8: a swap resolve names
/// the offer's terms. 9: each replica of a board keeps the chain requests its committed frames
/// made, and the batch nonce each was co-signed at. 10: the entity state hash commits to its
/// payments by a Merkle root. 11: the order of finished payments by a Merkle root, disputes as
/// entity transactions (`EntityTx::Dispute`, `ChainRequest::StartDispute`), state snapshots
/// between board members, and the WAL records the state an input is applied to, not the one
/// it led to.
pub const SCHEMA_VERSION: u64 = 11;
/// Snapshots kept: an older one to fall back on if the newest does not check out.
const KEPT_SNAPSHOTS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(String),
    #[error(
        "the database has schema version {found}, newer than the {SCHEMA_VERSION} this xln \
         understands: use a newer xln"
    )]
    NewerSchema { found: u64 },
    #[error(
        "the database has schema version {found}, written by an older xln; this one ({SCHEMA_VERSION}) \
         has no migration for it: keep using the older xln, or start from a new data dir"
    )]
    OlderSchema { found: u64 },
    #[error("input {seq} does not follow the last stored input {last}")]
    OutOfOrder { seq: u64, last: u64 },
}

fn db_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Database(error.to_string())
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An input to replay, and the hash of the state it was applied to ([`Hash::ZERO`]: not
/// recorded): replay checks it before applying the input, so each recorded hash checks the
/// replay of every input before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedInput {
    pub seq: u64,
    pub input: RuntimeInput,
    pub state_before: Hash,
}

/// What start-up resumes from.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The snapshot's state (empty without one) and the number of its last input.
    pub state: RuntimeState,
    pub snapshot_seq: u64,
    pub replay: Vec<LoggedInput>,
    /// What was found damaged and skipped: for the node to log as warnings.
    pub warnings: Vec<String>,
    /// The first damaged input of a torn tail, which `truncate_from` removes.
    pub torn_from: Option<u64>,
}

pub struct Store {
    db: Database,
    path: std::path::PathBuf,
}

impl Store {
    /// Opens (or creates) the database and checks its schema version.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(db_error)?;
        let txn = db.begin_write().map_err(db_error)?;
        {
            let mut meta = txn.open_table(META).map_err(db_error)?;
            let found = meta.get(SCHEMA_KEY).map_err(db_error)?.map(|v| v.value());
            match found {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema { found });
                }
                Some(found) if found < SCHEMA_VERSION => {
                    return Err(StoreError::OlderSchema { found });
                }
                Some(_) => {}
                None => {
                    meta.insert(SCHEMA_KEY, SCHEMA_VERSION).map_err(db_error)?;
                }
            }
            txn.open_table(WAL).map_err(db_error)?;
            txn.open_table(SNAPSHOTS).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
        })
    }

    /// Durably appends input `seq` (the next after the last) and the hash of the state it is
    /// applied to.
    pub fn append(&self, seq: u64, input: &RuntimeInput, state_before: &Hash) -> Result<()> {
        self.append_batch(&[(seq, input, *state_before)])
            .map(|_| ())
    }

    /// Durably appends several inputs in one write transaction (one sync to disk): the node's
    /// group commit. A state hash of [`Hash::ZERO`] means "not recorded": the node records the
    /// state before the first input of a batch only. The hash before an input, not after it,
    /// so that the node can log the inputs while it applies them.
    /// Returns the bytes logged, which the node counts to decide when to snapshot.
    pub fn append_batch(&self, entries: &[(u64, &RuntimeInput, Hash)]) -> Result<u64> {
        let mut logged: u64 = 0;
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut wal = txn.open_table(WAL).map_err(db_error)?;
            let mut last = wal
                .last()
                .map_err(db_error)?
                .map(|(k, _)| k.value())
                .unwrap_or(0);
            for (seq, input, state_before) in entries {
                if *seq <= last {
                    return Err(StoreError::OutOfOrder { seq: *seq, last });
                }
                let mut value = state_before.0.to_vec();
                value.extend(encode(*input));
                wal.insert(*seq, value.as_slice()).map_err(db_error)?;
                logged += value.len() as u64;
                last = *seq;
            }
        }
        txn.commit().map_err(db_error)?;
        Ok(logged)
    }

    /// The number of the last input in the log (0: none).
    pub fn last_seq(&self) -> Result<u64> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let wal = txn.open_table(WAL).map_err(db_error)?;
        let snapshots = txn.open_table(SNAPSHOTS).map_err(db_error)?;
        let last_input = wal.last().map_err(db_error)?.map(|(k, _)| k.value());
        let last_snapshot = snapshots.last().map_err(db_error)?.map(|(k, _)| k.value());
        Ok(last_input.max(last_snapshot).unwrap_or(0))
    }

    /// Size of the database file in bytes (for the status and metrics).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Stores the state after input `seq`, keeps the last two snapshots and drops the inputs
    /// the older of them already includes.
    pub fn snapshot(&self, seq: u64, state: &RuntimeState) -> Result<()> {
        let bytes = encode(state);
        let mut value = keccak256(&bytes).0.to_vec();
        value.extend(bytes);
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut snapshots = txn.open_table(SNAPSHOTS).map_err(db_error)?;
            snapshots.insert(seq, value.as_slice()).map_err(db_error)?;
            let kept: Vec<u64> = snapshots
                .iter()
                .map_err(db_error)?
                .rev()
                .filter_map(|entry| entry.ok().map(|(k, _)| k.value()))
                .collect();
            for old in kept.iter().skip(KEPT_SNAPSHOTS) {
                snapshots.remove(*old).map_err(db_error)?;
            }
            if let Some(oldest_kept) = kept.iter().take(KEPT_SNAPSHOTS).next_back() {
                let mut wal = txn.open_table(WAL).map_err(db_error)?;
                wal.retain(|k, _| k > *oldest_kept).map_err(db_error)?;
            }
        }
        txn.commit().map_err(db_error)
    }

    /// The newest snapshot that checks out and the inputs after it, up to the first damaged
    /// one (a torn tail: it and what follows are dropped, with a warning).
    pub fn recover(&self) -> Result<Recovered> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let snapshots = txn.open_table(SNAPSHOTS).map_err(db_error)?;
        let wal = txn.open_table(WAL).map_err(db_error)?;
        let mut recovered = Recovered::default();
        let candidates: Vec<(u64, Vec<u8>)> = snapshots
            .iter()
            .map_err(db_error)?
            .rev()
            .filter_map(|entry| entry.ok().map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect();
        let first_logged = wal.first().map_err(db_error)?.map(|(k, _)| k.value());
        for (seq, value) in candidates {
            match load_snapshot(&value) {
                // Usable only if the log still holds every input after it.
                Some(state) if first_logged.is_none_or(|first| first <= seq + 1) => {
                    recovered.state = state;
                    recovered.snapshot_seq = seq;
                    break;
                }
                Some(_) => recovered
                    .warnings
                    .push(format!("snapshot {seq}: the inputs after it are gone")),
                None => recovered
                    .warnings
                    .push(format!("snapshot {seq} is damaged; trying an older one")),
            }
        }
        for entry in wal.range(recovered.snapshot_seq + 1..).map_err(db_error)? {
            let (key, value) = entry.map_err(db_error)?;
            let seq = key.value();
            match load_input(value.value()) {
                Some((state_before, input)) => recovered.replay.push(LoggedInput {
                    seq,
                    input,
                    state_before,
                }),
                None => {
                    recovered.warnings.push(format!(
                        "input {seq} is damaged: the log is cut there (a torn write)"
                    ));
                    recovered.torn_from = Some(seq);
                    break;
                }
            }
        }
        Ok(recovered)
    }

    /// Removes inputs from `seq` on: what `recover` reported as a torn tail.
    pub fn truncate_from(&self, seq: u64) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut wal = txn.open_table(WAL).map_err(db_error)?;
            wal.retain(|k, _| k < seq).map_err(db_error)?;
        }
        txn.commit().map_err(db_error)
    }

    #[cfg(test)]
    fn put_raw(&self, table: TableDefinition<u64, &[u8]>, key: u64, value: &[u8]) {
        let txn = self.db.begin_write().unwrap();
        txn.open_table(table).unwrap().insert(key, value).unwrap();
        txn.commit().unwrap();
    }

    #[cfg(test)]
    fn set_schema(&self, version: u64) {
        let txn = self.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_KEY, version)
            .unwrap();
        txn.commit().unwrap();
    }
}

fn load_snapshot(value: &[u8]) -> Option<RuntimeState> {
    let (hash, bytes) = value.split_at_checked(32)?;
    if keccak256(bytes).0 != *hash {
        return None;
    }
    decode("snapshot", bytes).ok()
}

fn load_input(value: &[u8]) -> Option<(Hash, RuntimeInput)> {
    let (hash, bytes) = value.split_at_checked(32)?;
    let hash = Hash(hash.try_into().ok()?);
    Some((hash, decode("logged input", bytes).ok()?))
}

#[cfg(test)]
mod tests;
