use super::*;
use xln_core::account::AccountTx;
use xln_core::board::Board;
use xln_core::crypto::SignerKey;
use xln_core::entity::EntityTx;
use xln_core::runtime::{Command, Runtime};

/// A runtime with two wallets, fed `count` inputs: opening, credit, then payments.
fn inputs(count: usize) -> (Vec<SignerKey>, Vec<RuntimeInput>) {
    let keys: Vec<SignerKey> = [61u8, 62]
        .iter()
        .map(|n| SignerKey::from_bytes(&[*n; 32]).unwrap())
        .collect();
    let boards: Vec<Board> = keys.iter().map(|k| Board::single(k.address())).collect();
    let ids: Vec<_> = boards.iter().map(|b| b.lazy_entity_id()).collect();
    let mut commands: Vec<Command> = boards
        .iter()
        .zip(&keys)
        .map(|(board, key)| Command::AddReplica {
            board: board.clone(),
            signer: key.address(),
            domain: Hash::ZERO,
        })
        .collect();
    commands.push(Command::Submit {
        entity: ids[0],
        txs: vec![
            EntityTx::OpenAccount {
                peer: ids[1],
                peer_board: boards[1].clone(),
            },
            EntityTx::Account {
                peer: ids[1],
                tx: AccountTx::SetCreditLimit {
                    token: 1,
                    amount: 1_000_000,
                },
            },
        ],
    });
    while commands.len() < count {
        commands.push(Command::Submit {
            entity: ids[1],
            txs: vec![EntityTx::Account {
                peer: ids[0],
                tx: AccountTx::DirectPayment {
                    token: 1,
                    amount: commands.len() as u128,
                },
            }],
        });
    }
    let inputs = commands
        .into_iter()
        .enumerate()
        .map(|(i, command)| RuntimeInput {
            timestamp: 1_000 + i as u64,
            commands: vec![command],
            ..RuntimeInput::default()
        })
        .collect();
    (keys, inputs)
}

/// Logs and applies every input; snapshots after the ones in `snapshot_after`. Returns the
/// state hash after each input.
fn run(store: &Store, count: usize, snapshot_after: &[u64]) -> (Vec<SignerKey>, Vec<Hash>) {
    let (keys, inputs) = inputs(count);
    let mut runtime = Runtime::new(keys.clone());
    let mut hashes = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        let seq = i as u64 + 1;
        store.append(seq, &input, &runtime.state().hash()).unwrap();
        runtime.apply(input);
        let hash = runtime.state().hash();
        hashes.push(hash);
        if snapshot_after.contains(&seq) {
            store.snapshot(seq, runtime.state()).unwrap();
        }
    }
    (keys, hashes)
}

/// Resumes from the store, replaying and checking every logged hash; returns the final hash.
fn resume(store: &Store, keys: &[SignerKey]) -> (Hash, Recovered) {
    let recovered = store.recover().unwrap();
    let mut runtime = Runtime::from_state(keys.to_vec(), recovered.state.clone());
    for logged in &recovered.replay {
        assert_eq!(
            runtime.state().hash(),
            logged.state_before,
            "input {}",
            logged.seq
        );
        runtime.apply(logged.input.clone());
    }
    (runtime.state().hash(), recovered)
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("xln.redb")).unwrap();
    (dir, store)
}

#[test]
fn replaying_the_log_reproduces_every_state_hash() {
    let (_dir, store) = temp_store();
    let (keys, hashes) = run(&store, 12, &[]);
    let (last, recovered) = resume(&store, &keys);
    assert_eq!(recovered.replay.len(), 12);
    assert_eq!(last, *hashes.last().unwrap());
}

#[test]
fn recovery_starts_from_the_latest_snapshot_and_the_log_is_compacted() {
    let (_dir, store) = temp_store();
    let (keys, hashes) = run(&store, 12, &[4, 8]);
    let (last, recovered) = resume(&store, &keys);
    assert_eq!(recovered.snapshot_seq, 8);
    assert_eq!(recovered.replay.len(), 4);
    assert_eq!(last, *hashes.last().unwrap());
    assert_eq!(recovered.state.hash(), hashes[7]);
    // Inputs the older snapshot (4) includes are gone; those after it remain.
    let txn = store.db.begin_read().unwrap();
    let wal = txn.open_table(WAL).unwrap();
    assert_eq!(wal.first().unwrap().unwrap().0.value(), 5);
}

#[test]
fn a_damaged_snapshot_falls_back_to_the_older_one() {
    let (_dir, store) = temp_store();
    let (keys, hashes) = run(&store, 12, &[4, 8]);
    store.put_raw(
        SNAPSHOTS,
        8,
        b"\x00 not a snapshot at all, and far too short to be one",
    );
    let (last, recovered) = resume(&store, &keys);
    assert_eq!(recovered.snapshot_seq, 4);
    assert_eq!(recovered.replay.len(), 8);
    assert_eq!(last, *hashes.last().unwrap());
    assert_eq!(recovered.warnings.len(), 1, "{:?}", recovered.warnings);
}

#[test]
fn a_torn_tail_is_cut_at_the_last_complete_input() {
    let (_dir, store) = temp_store();
    let (keys, hashes) = run(&store, 6, &[]);
    store.put_raw(WAL, 7, &[0xff; 40]);
    let (last, recovered) = resume(&store, &keys);
    assert_eq!(recovered.replay.len(), 6);
    assert_eq!(last, hashes[5]);
    assert!(
        recovered.warnings[0].contains("input 7"),
        "{:?}",
        recovered.warnings
    );
    assert_eq!(recovered.torn_from, Some(7));
    store.truncate_from(7).unwrap();
    assert!(store.recover().unwrap().warnings.is_empty());
    // The next input goes on after the cut.
    let input = RuntimeInput::default();
    store.append(7, &input, &Hash::ZERO).unwrap();
    assert!(matches!(
        store.append(7, &input, &Hash::ZERO),
        Err(StoreError::OutOfOrder { seq: 7, last: 7 })
    ));
}

#[test]
fn a_database_from_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xln.redb");
    Store::open(&path).unwrap().set_schema(SCHEMA_VERSION + 1);
    let error = Store::open(&path).err().expect("refused");
    assert!(matches!(error, StoreError::NewerSchema { found } if found == SCHEMA_VERSION + 1));
    assert!(error.to_string().contains("use a newer xln"));
}

#[test]
fn a_database_from_an_older_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xln.redb");
    Store::open(&path).unwrap().set_schema(SCHEMA_VERSION - 1);
    let error = Store::open(&path).err().expect("refused");
    assert!(matches!(error, StoreError::OlderSchema { found } if found == SCHEMA_VERSION - 1));
    assert!(error.to_string().contains("no migration"), "{error}");
    // Refused again: the version was not rewritten by the first attempt.
    assert!(matches!(
        Store::open(&path),
        Err(StoreError::OlderSchema { .. })
    ));
}
