//! The WAL appender: a thread of its own that appends a turn's inputs to the store and syncs
//! them to disk while the writer applies the same inputs.
//!
//! Persist before send asks that an input be on disk before any of its outputs leaves, not
//! before it is applied. So the writer hands the turn's inputs over here first, applies them
//! meanwhile, and sends the outputs only once [`PendingAppend::wait`] returned: the disk sync
//! (the larger part of a turn) overlaps the turn's work instead of following it.

use crate::store::{self, Store};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use xln_core::crypto::Hash;
use xln_core::runtime::RuntimeInput;

/// Inputs to log: (number, input, hash of the state it is applied to or [`Hash::ZERO`]).
pub(super) type Entries = Vec<(u64, RuntimeInput, Hash)>;

pub(super) struct WalAppender {
    jobs: Option<mpsc::Sender<Entries>>,
    /// Each append's result, named by its last input's number.
    done: mpsc::Receiver<(u64, store::Result<u64>)>,
    thread: Option<JoinHandle<()>>,
}

/// An append under way (of inputs up to `last_seq`): the bytes logged once it is on disk.
#[must_use = "outputs may leave only once the append is on disk"]
pub(super) struct PendingAppend<'a> {
    wal: &'a WalAppender,
    last_seq: u64,
}

impl WalAppender {
    pub fn start(store: Arc<Store>) -> std::io::Result<Self> {
        let (jobs, job_rx) = mpsc::channel::<Entries>();
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("xln-wal".into())
            .spawn(move || {
                for entries in job_rx {
                    let last_seq = entries.last().map_or(0, |(seq, _, _)| *seq);
                    let borrowed: Vec<(u64, &RuntimeInput, Hash)> = entries
                        .iter()
                        .map(|(seq, input, state_before)| (*seq, input, *state_before))
                        .collect();
                    let result = store.append_batch(&borrowed);
                    if done_tx.send((last_seq, result)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Starts appending `entries` (not empty) in one transaction.
    pub fn append(&mut self, entries: Entries) -> PendingAppend<'_> {
        let last_seq = entries.last().map_or(0, |(seq, _, _)| *seq);
        if let Some(jobs) = &self.jobs {
            // A stopped thread answers nothing; `wait` reports it.
            let _ = jobs.send(entries);
        }
        PendingAppend {
            wal: self,
            last_seq,
        }
    }
}

impl PendingAppend<'_> {
    /// Blocks until the append is on disk; the bytes it logged. The results of earlier appends
    /// nobody waited for (an unwinding turn) are passed over: only this one's counts.
    pub fn wait(self) -> anyhow::Result<u64> {
        loop {
            match self.wal.done.recv() {
                Ok((seq, _)) if seq < self.last_seq => continue,
                Ok((_, result)) => {
                    return result.map_err(|e| anyhow::anyhow!("writing the WAL: {e}"));
                }
                Err(_) => anyhow::bail!("writing the WAL: the appender thread stopped"),
            }
        }
    }
}

impl Drop for WalAppender {
    fn drop(&mut self) {
        // Closing the job channel ends the thread's loop.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_land_in_order_and_a_refused_one_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("xln.redb")).unwrap());
        let mut wal = WalAppender::start(store.clone()).unwrap();
        let input = RuntimeInput::default();
        let pending = wal.append(vec![
            (1, input.clone(), Hash([7; 32])),
            (2, input.clone(), Hash::ZERO),
        ]);
        assert!(pending.wait().unwrap() > 0);
        // Out of order: refused by the store, and the error comes back through `wait`.
        let error = wal
            .append(vec![(2, input.clone(), Hash::ZERO)])
            .wait()
            .unwrap_err();
        assert!(error.to_string().contains("writing the WAL"), "{error:#}");
        // An append nobody waited for (refused here) does not answer for the next one.
        let _unwaited = wal.append(vec![(1, input.clone(), Hash::ZERO)]);
        assert!(
            wal.append(vec![(3, input.clone(), Hash::ZERO)])
                .wait()
                .is_ok()
        );
        drop(wal);
        let replay = store.recover().unwrap().replay;
        let logged: Vec<(u64, Hash)> = replay.iter().map(|l| (l.seq, l.state_before)).collect();
        assert_eq!(
            logged,
            vec![(1, Hash([7; 32])), (2, Hash::ZERO), (3, Hash::ZERO)]
        );
    }
}
