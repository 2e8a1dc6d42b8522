//! Committed account frames per second between two in-process peers, with real k256
//! signatures: each iteration is one frame of N payments proposed, replayed, countersigned and
//! committed on both sides.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use xln_core::account::{Account, AccountMessage, AccountTx, Clock, Reply};
use xln_core::board::{Board, QuorumSignature};
use xln_core::crypto::{Hash, SignerKey};

const TOKEN: u32 = 1;

struct Side {
    key: SignerKey,
    board: Board,
    account: Account,
}

impl Side {
    fn sign(&self, reply: Reply) -> AccountMessage {
        reply
            .sign(self.account.me(), self.account.peer(), |h| {
                QuorumSignature(vec![self.key.sign(h)])
            })
            .expect("a reply to send")
    }
}

fn pair() -> (Side, Side) {
    let make = |n: u8| {
        let key = SignerKey::from_bytes(&[n; 32]).unwrap();
        let board = Board::single(key.address());
        (key, board)
    };
    let (ka, ba) = make(1);
    let (kb, bb) = make(2);
    let (ia, ib) = (ba.lazy_entity_id(), bb.lazy_entity_id());
    let a = Side {
        account: Account::new(Hash::ZERO, ia, ib).unwrap(),
        key: ka,
        board: ba,
    };
    let b = Side {
        account: Account::new(Hash::ZERO, ib, ia).unwrap(),
        key: kb,
        board: bb,
    };
    (a, b)
}

/// One frame from `payer` to `payee`, to commitment on both sides.
fn frame(payer: &mut Side, payee: &mut Side, txs: &[AccountTx], clock: Clock) {
    for tx in txs {
        payer.account.enqueue(tx.clone());
    }
    let reply = payer.account.flush(clock).reply;
    let proposal = payer.sign(reply);
    let step = payee
        .account
        .receive(&proposal, &payer.board, clock)
        .unwrap();
    let ack = payee.sign(step.reply);
    payer.account.receive(&ack, &payee.board, clock).unwrap();
}

fn bench_frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("account_frames");
    for per_frame in [1usize, 100, 1_000] {
        let (mut payer, mut payee) = pair();
        let clock = Clock {
            timestamp: 1,
            j_height: 1,
        };
        // The payee extends enough credit for every payment the benchmark makes.
        let credit = [AccountTx::SetCreditLimit {
            token: TOKEN,
            amount: u64::MAX as u128,
        }];
        frame(&mut payee, &mut payer, &credit, clock);
        let payments = vec![
            AccountTx::DirectPayment {
                token: TOKEN,
                amount: 1
            };
            per_frame
        ];
        group.throughput(Throughput::Elements(per_frame as u64));
        group.bench_with_input(
            BenchmarkId::new("payments_per_frame", per_frame),
            &payments,
            |b, payments| b.iter(|| frame(&mut payer, &mut payee, payments, clock)),
        );
    }
    group.finish();
}

criterion_group!(benches, bench_frames);
criterion_main!(benches);
