// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {EntityProvider} from "./EntityProvider.sol";
import {Packed} from "./Packed.sol";

interface IERC20Minimal {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// Reserves, account collateral, cooperative settlement and disputes of xln entities.
///
/// Every digest checked here is domain separated by `domain()` =
/// keccak256(abi.encodePacked(uint256 chainid, address(this))). An account is identified by its
/// two entity ids ordered as (left, right) with left < right. Per account and token the chain
/// holds `collateral` and `ondelta`; `offdelta` lives off chain and only reaches the chain
/// through a dispute proof.
contract Depository {
    // ---------------------------------------------------------------- types

    struct ReserveTransfer {
        bytes32 to;
        uint32 tokenId;
        uint256 amount;
    }

    /// Reserve of the acting entity -> collateral of its account with `counterparty`.
    struct CollateralMove {
        bytes32 counterparty;
        uint32 tokenId;
        uint256 amount;
    }

    struct Withdrawal {
        uint32 tokenId;
        uint256 amount;
        address to;
    }

    /// Per-token change of a cooperative settlement; leftDiff + rightDiff + collateralDiff == 0.
    struct TokenDiff {
        uint32 tokenId;
        int256 leftDiff;
        int256 rightDiff;
        int256 collateralDiff;
        int256 ondeltaDiff;
    }

    /// A settlement as submitted by one of its two entities; `counterpartySigs` is the
    /// counterparty's quorum over `settlementDigest`.
    struct Settlement {
        bytes32 counterparty;
        TokenDiff[] diffs;
        bytes counterpartyBoard;
        bytes counterpartySigs;
    }

    struct TokenState {
        uint32 tokenId;
        uint128 collateral;
        int128 ondelta;
        int128 offdelta;
        uint128 leftCreditLimit;
        uint128 rightCreditLimit;
        uint128 leftHold;
        uint128 rightHold;
    }

    /// A bilateral account frame with the account state it commits to (tokens ascending by id).
    struct AccountFrame {
        uint64 height;
        uint64 timestamp;
        uint64 jHeight;
        bytes32 txsHash;
        bytes32 prevFrameHash;
        TokenState[] tokens;
        bytes32 extrasHash;
        bool byLeft;
    }

    /// A frame signed by `counterparty` (a quorum of its board over `accountFrameHash`).
    struct DisputeProof {
        bytes32 counterparty;
        AccountFrame frame;
        bytes counterpartyBoard;
        bytes counterpartySigs;
    }

    /// Operations of one entity, applied in field order (each list in its own order).
    struct Batch {
        Settlement[] settlements;
        CollateralMove[] collateralMoves;
        ReserveTransfer[] reserveTransfers;
        Withdrawal[] withdrawals;
        DisputeProof[] disputeStarts;
        DisputeProof[] disputeCounters;
    }

    struct AccountToken {
        uint128 collateral;
        int128 ondelta;
        int128 disputeOffdelta; // offdelta of the proof of the active dispute
        bool listed; // present in Account.tokenIds
    }

    struct Dispute {
        uint64 height; // zero: no active dispute (proofs always have height > 0)
        uint64 deadline; // last block in which the dispute can be countered
        bytes32 startedBy;
        bytes32 frameHash;
        bool byLeft; // whether the current proof's frame was proposed by LEFT
    }

    struct Account {
        uint256 settlementNonce;
        uint64 finalizedHeight; // height of the last finalized dispute; older proofs are void
        Dispute dispute;
        uint32[] tokenIds; // every token that ever had on-chain state or appeared in a proof
        mapping(uint32 tokenId => AccountToken) tokens;
    }

    // ---------------------------------------------------------------- state

    bytes32 public constant FRAME_TAG = keccak256("xln.account.frame.v1");
    bytes32 public constant STATE_TAG = keccak256("xln.account.state.v1");
    bytes32 public constant SETTLEMENT_TAG = keccak256("xln.settlement.v1");

    EntityProvider public immutable entityProvider;
    /// Blocks after a dispute starts during which it can be countered.
    uint64 public immutable disputeWindow;

    /// tokenAddresses[id - 1] is the ERC-20 of token id `id`.
    address[] public tokenAddresses;
    mapping(address token => uint32) public tokenIdOf;
    mapping(bytes32 entity => mapping(uint32 tokenId => uint256)) public reserves;
    /// Next nonce of each entity's batch digest.
    mapping(bytes32 entity => uint256) public entityNonces;
    mapping(bytes32 debtor => mapping(bytes32 creditor => mapping(uint32 tokenId => uint256))) public debts;
    mapping(bytes32 accountKey => Account) private _accounts;

    // ---------------------------------------------------------------- events

    event TokenRegistered(uint32 indexed tokenId, address indexed token);
    /// New absolute reserve after any change (alongside the event that says why).
    event ReserveUpdated(bytes32 indexed entity, uint32 indexed tokenId, uint256 reserve);
    /// New absolute collateral and ondelta after any change (alongside the event that says why).
    event AccountUpdated(
        bytes32 indexed left, bytes32 indexed right, uint32 indexed tokenId, uint256 collateral, int256 ondelta
    );
    event Deposited(bytes32 indexed entity, uint32 indexed tokenId, address indexed from, uint256 amount);
    event Withdrawn(bytes32 indexed entity, uint32 indexed tokenId, address indexed to, uint256 amount);
    event ReserveTransferred(bytes32 indexed from, bytes32 indexed to, uint32 indexed tokenId, uint256 amount);
    event CollateralAdded(
        bytes32 indexed entity, bytes32 indexed counterparty, uint32 indexed tokenId, uint256 amount
    );
    event Settled(bytes32 indexed left, bytes32 indexed right, uint256 nonce, TokenDiff[] diffs);
    event BatchProcessed(bytes32 indexed entity, uint256 nonce);
    event DisputeStarted(
        bytes32 indexed left,
        bytes32 indexed right,
        bytes32 indexed startedBy,
        uint64 height,
        bytes32 frameHash,
        uint64 deadline
    );
    event DisputeCountered(
        bytes32 indexed left, bytes32 indexed right, bytes32 indexed counteredBy, uint64 height, bytes32 frameHash
    );
    event DisputeFinalized(bytes32 indexed left, bytes32 indexed right, uint64 height, bytes32 frameHash);
    event DebtRecorded(
        bytes32 indexed debtor, bytes32 indexed creditor, uint32 indexed tokenId, uint256 amount, uint256 totalDebt
    );

    // ---------------------------------------------------------------- errors

    error InvalidDisputeWindow();
    error InvalidToken(address token);
    error TokenAlreadyRegistered(address token, uint32 tokenId);
    error UnknownToken(uint32 tokenId);
    error TokenTransferFailed(address token);
    error InvalidQuorum(bytes32 entity);
    error SameEntity(bytes32 entity);
    error EntitiesNotOrdered(bytes32 left, bytes32 right);
    error InsufficientReserve(bytes32 entity, uint32 tokenId, uint256 reserve, uint256 needed);
    error InsufficientCollateral(uint32 tokenId);
    error ValueOutOfRange(uint32 tokenId);
    error SettlementNotBalanced(uint32 tokenId);
    error AccountInDispute(bytes32 left, bytes32 right);
    error DisputeAlreadyActive(bytes32 left, bytes32 right);
    error NoActiveDispute(bytes32 left, bytes32 right);
    error DisputeWindowClosed(uint64 deadline);
    error DisputeWindowOpen(uint64 deadline);
    error StaleProof(uint64 height, uint64 mustExceed);
    error TokensNotAscending();

    constructor(EntityProvider entityProvider_, uint64 disputeWindow_) {
        if (disputeWindow_ == 0) revert InvalidDisputeWindow();
        entityProvider = entityProvider_;
        disputeWindow = disputeWindow_;
    }

    // ---------------------------------------------------------------- tokens and reserves

    /// Gives `token` the next token id (1, 2, ...). Anyone may register a token.
    function registerToken(address token) external returns (uint32 tokenId) {
        if (token.code.length == 0) revert InvalidToken(token);
        if (tokenIdOf[token] != 0) revert TokenAlreadyRegistered(token, tokenIdOf[token]);
        tokenAddresses.push(token);
        tokenId = uint32(tokenAddresses.length);
        tokenIdOf[token] = tokenId;
        emit TokenRegistered(tokenId, token);
    }

    function tokenCount() external view returns (uint256) {
        return tokenAddresses.length;
    }

    /// Pulls `amount` of a registered `token` from the caller (who must have approved it)
    /// into `entity`'s reserve. Anyone may deposit for any entity.
    function deposit(bytes32 entity, address token, uint256 amount) external {
        uint32 tokenId = tokenIdOf[token];
        if (tokenId == 0) revert InvalidToken(token);
        _callToken(token, abi.encodeCall(IERC20Minimal.transferFrom, (msg.sender, address(this), amount)));
        _creditReserve(entity, tokenId, amount);
        emit Deposited(entity, tokenId, msg.sender, amount);
    }

    // ---------------------------------------------------------------- entity-authorized operations

    /// Applies `batch` for `entity`, authorized by the entity's quorum over
    /// `batchDigest(entity, entityNonces[entity], batch)`.
    function processBatch(bytes32 entity, Batch calldata batch, bytes calldata encodedBoard, bytes calldata sigs)
        external
    {
        _processBatch(entity, batch, encodedBoard, sigs);
    }

    // The single-operation entry points below are batches of one: they are signed exactly like
    // processBatch with a batch whose only non-empty list holds that one operation.

    function withdraw(
        bytes32 entity,
        uint32 tokenId,
        uint256 amount,
        address to,
        bytes calldata encodedBoard,
        bytes calldata sigs
    ) external {
        Batch memory batch;
        batch.withdrawals = new Withdrawal[](1);
        batch.withdrawals[0] = Withdrawal(tokenId, amount, to);
        _processBatch(entity, batch, encodedBoard, sigs);
    }

    function transferReserve(
        bytes32 entity,
        bytes32 to,
        uint32 tokenId,
        uint256 amount,
        bytes calldata encodedBoard,
        bytes calldata sigs
    ) external {
        Batch memory batch;
        batch.reserveTransfers = new ReserveTransfer[](1);
        batch.reserveTransfers[0] = ReserveTransfer(to, tokenId, amount);
        _processBatch(entity, batch, encodedBoard, sigs);
    }

    function addCollateral(
        bytes32 entity,
        bytes32 counterparty,
        uint32 tokenId,
        uint256 amount,
        bytes calldata encodedBoard,
        bytes calldata sigs
    ) external {
        Batch memory batch;
        batch.collateralMoves = new CollateralMove[](1);
        batch.collateralMoves[0] = CollateralMove(counterparty, tokenId, amount);
        _processBatch(entity, batch, encodedBoard, sigs);
    }

    function startDispute(
        bytes32 entity,
        DisputeProof calldata proof,
        bytes calldata encodedBoard,
        bytes calldata sigs
    ) external {
        Batch memory batch;
        batch.disputeStarts = new DisputeProof[](1);
        batch.disputeStarts[0] = proof;
        _processBatch(entity, batch, encodedBoard, sigs);
    }

    function counterDispute(
        bytes32 entity,
        DisputeProof calldata proof,
        bytes calldata encodedBoard,
        bytes calldata sigs
    ) external {
        Batch memory batch;
        batch.disputeCounters = new DisputeProof[](1);
        batch.disputeCounters[0] = proof;
        _processBatch(entity, batch, encodedBoard, sigs);
    }

    // ---------------------------------------------------------------- open entry points

    /// Cooperative settlement of the account of `entity` and `settlement.counterparty`, signed by
    /// both entities' quorums over `settlementDigest(left, right, settlementNonce, diffs)`
    /// (`encodedBoard`/`sigs` are `entity`'s). Anyone may submit it.
    function settle(
        bytes32 entity,
        Settlement calldata settlement,
        bytes calldata encodedBoard,
        bytes calldata sigs
    ) external {
        _requireQuorum(entity, encodedBoard, _settlementDigestFor(entity, settlement), sigs);
        _settle(entity, settlement);
    }

    /// After the response window: splits each token's collateral by Δ = on-chain ondelta + the
    /// proof's offdelta, collects any credit shortfall from the debtor's reserve and records the
    /// rest as debt. Anyone may call it.
    function finalizeDispute(bytes32 left, bytes32 right) external {
        if (left >= right) revert EntitiesNotOrdered(left, right);
        Account storage account = _account(left, right);
        Dispute memory dispute = account.dispute;
        if (dispute.height == 0) revert NoActiveDispute(left, right);
        if (block.number <= dispute.deadline) revert DisputeWindowOpen(dispute.deadline);

        for (uint256 i; i < account.tokenIds.length; ++i) {
            uint32 tokenId = account.tokenIds[i];
            AccountToken storage t = account.tokens[tokenId];
            int256 delta = int256(t.ondelta) + int256(t.disputeOffdelta);
            int256 collateral = int256(uint256(t.collateral));
            int256 leftShare = delta < 0 ? int256(0) : (delta > collateral ? collateral : delta);

            t.disputeOffdelta = 0;
            _setAccountToken(left, right, tokenId, 0, 0);
            _creditReserve(left, tokenId, uint256(leftShare));
            _creditReserve(right, tokenId, uint256(collateral - leftShare));
            if (delta > collateral) {
                _collectCredit(right, left, tokenId, uint256(delta - collateral));
            } else if (delta < 0) {
                _collectCredit(left, right, tokenId, uint256(-delta));
            }
        }
        account.finalizedHeight = dispute.height;
        delete account.dispute;
        emit DisputeFinalized(left, right, dispute.height, dispute.frameHash);
    }

    // ---------------------------------------------------------------- digests and views

    function domain() public view returns (bytes32) {
        return keccak256(abi.encodePacked(block.chainid, address(this)));
    }

    /// keccak256(abi.encode(domain(), entity, nonce, batch)).
    function batchDigest(bytes32 entity, uint256 nonce, Batch memory batch) public view returns (bytes32) {
        return keccak256(abi.encode(domain(), entity, nonce, batch));
    }

    /// keccak256(abi.encode(SETTLEMENT_TAG, domain(), left, right, nonce, diffs)).
    function settlementDigest(bytes32 left, bytes32 right, uint256 nonce, TokenDiff[] memory diffs)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(SETTLEMENT_TAG, domain(), left, right, nonce, diffs));
    }

    /// keccak256(abi.encodePacked(STATE_TAG, left, right, uint32 tokens.length, for each token
    /// (uint32 tokenId, uint128 collateral, int128 ondelta, int128 offdelta, uint128 leftCreditLimit,
    /// uint128 rightCreditLimit, uint128 leftHold, uint128 rightHold), extrasHash)).
    function accountStateHash(bytes32 left, bytes32 right, TokenState[] memory tokens, bytes32 extrasHash)
        public
        pure
        returns (bytes32)
    {
        bytes[] memory parts = new bytes[](tokens.length + 2);
        parts[0] = abi.encodePacked(STATE_TAG, left, right, uint32(tokens.length));
        for (uint256 i; i < tokens.length; ++i) {
            TokenState memory t = tokens[i];
            parts[i + 1] = abi.encodePacked(
                t.tokenId,
                t.collateral,
                t.ondelta,
                t.offdelta,
                t.leftCreditLimit,
                t.rightCreditLimit,
                t.leftHold,
                t.rightHold
            );
        }
        parts[tokens.length + 1] = abi.encodePacked(extrasHash);
        return keccak256(Packed.concat(parts));
    }

    /// keccak256(abi.encodePacked(FRAME_TAG, domain(), left, right, uint64 height, uint64 timestamp,
    /// uint64 jHeight, txsHash, prevFrameHash, accountStateHash(...), bool byLeft)).
    function accountFrameHash(bytes32 left, bytes32 right, AccountFrame memory frame) public view returns (bytes32) {
        bytes32 stateHash = accountStateHash(left, right, frame.tokens, frame.extrasHash);
        return keccak256(
            bytes.concat(
                abi.encodePacked(FRAME_TAG, domain(), left, right, frame.height, frame.timestamp, frame.jHeight),
                abi.encodePacked(frame.txsHash, frame.prevFrameHash, stateHash, frame.byLeft)
            )
        );
    }

    function accountInfo(bytes32 left, bytes32 right)
        external
        view
        returns (uint256 settlementNonce, uint64 finalizedHeight, Dispute memory dispute, uint32[] memory tokenIds)
    {
        Account storage account = _account(left, right);
        return (account.settlementNonce, account.finalizedHeight, account.dispute, account.tokenIds);
    }

    /// On-chain collateral and ondelta of one token of account (left, right).
    function accountToken(bytes32 left, bytes32 right, uint32 tokenId)
        external
        view
        returns (uint128 collateral, int128 ondelta)
    {
        AccountToken storage t = _account(left, right).tokens[tokenId];
        return (t.collateral, t.ondelta);
    }

    // ---------------------------------------------------------------- internals

    function _processBatch(bytes32 entity, Batch memory batch, bytes memory encodedBoard, bytes memory sigs)
        private
    {
        uint256 nonce = entityNonces[entity];
        _requireQuorum(entity, encodedBoard, batchDigest(entity, nonce, batch), sigs);
        entityNonces[entity] = nonce + 1;
        emit BatchProcessed(entity, nonce);

        for (uint256 i; i < batch.settlements.length; ++i) {
            _settle(entity, batch.settlements[i]);
        }
        for (uint256 i; i < batch.collateralMoves.length; ++i) {
            _addCollateral(entity, batch.collateralMoves[i]);
        }
        for (uint256 i; i < batch.reserveTransfers.length; ++i) {
            ReserveTransfer memory t = batch.reserveTransfers[i];
            _requireToken(t.tokenId);
            _debitReserve(entity, t.tokenId, t.amount);
            _creditReserve(t.to, t.tokenId, t.amount);
            emit ReserveTransferred(entity, t.to, t.tokenId, t.amount);
        }
        for (uint256 i; i < batch.withdrawals.length; ++i) {
            Withdrawal memory w = batch.withdrawals[i];
            _requireToken(w.tokenId);
            _debitReserve(entity, w.tokenId, w.amount);
            address token = tokenAddresses[w.tokenId - 1];
            _callToken(token, abi.encodeCall(IERC20Minimal.transfer, (w.to, w.amount)));
            emit Withdrawn(entity, w.tokenId, w.to, w.amount);
        }
        for (uint256 i; i < batch.disputeStarts.length; ++i) {
            _startDispute(entity, batch.disputeStarts[i]);
        }
        for (uint256 i; i < batch.disputeCounters.length; ++i) {
            _counterDispute(entity, batch.disputeCounters[i]);
        }
    }

    /// The depositor keeps ownership of what it adds: collateral added by LEFT raises ondelta by
    /// the same amount, collateral added by RIGHT leaves ondelta unchanged.
    function _addCollateral(bytes32 entity, CollateralMove memory move) private {
        _requireToken(move.tokenId);
        (bytes32 left, bytes32 right) = _order(entity, move.counterparty);
        _requireNoDispute(left, right);
        if (move.amount > type(uint128).max) revert ValueOutOfRange(move.tokenId);
        int256 amount = int256(move.amount);
        AccountToken storage t = _account(left, right).tokens[move.tokenId];
        _debitReserve(entity, move.tokenId, move.amount);
        _setAccountToken(
            left,
            right,
            move.tokenId,
            int256(uint256(t.collateral)) + amount,
            entity == left ? int256(t.ondelta) + amount : int256(t.ondelta)
        );
        emit CollateralAdded(entity, move.counterparty, move.tokenId, move.amount);
    }

    /// Checks the counterparty's signature (the caller has authorized `entity`), applies the
    /// diffs and consumes the account's settlement nonce.
    function _settle(bytes32 entity, Settlement memory settlement) private {
        _requireQuorum(
            settlement.counterparty,
            settlement.counterpartyBoard,
            _settlementDigestFor(entity, settlement),
            settlement.counterpartySigs
        );
        (bytes32 left, bytes32 right) = _order(entity, settlement.counterparty);
        _requireNoDispute(left, right);
        Account storage account = _account(left, right);
        TokenDiff[] memory diffs = settlement.diffs;
        for (uint256 i; i < diffs.length; ++i) {
            TokenDiff memory d = diffs[i];
            _requireToken(d.tokenId);
            if (d.leftDiff + d.rightDiff + d.collateralDiff != 0) revert SettlementNotBalanced(d.tokenId);
            AccountToken storage t = account.tokens[d.tokenId];
            _setAccountToken(
                left,
                right,
                d.tokenId,
                int256(uint256(t.collateral)) + d.collateralDiff,
                int256(t.ondelta) + d.ondeltaDiff
            );
            _adjustReserve(left, d.tokenId, d.leftDiff);
            _adjustReserve(right, d.tokenId, d.rightDiff);
        }
        emit Settled(left, right, account.settlementNonce++, diffs);
    }

    function _settlementDigestFor(bytes32 entity, Settlement memory settlement) private view returns (bytes32) {
        (bytes32 left, bytes32 right) = _order(entity, settlement.counterparty);
        return settlementDigest(left, right, _account(left, right).settlementNonce, settlement.diffs);
    }

    function _startDispute(bytes32 entity, DisputeProof memory proof) private {
        (bytes32 left, bytes32 right) = _order(entity, proof.counterparty);
        Account storage account = _account(left, right);
        if (account.dispute.height != 0) revert DisputeAlreadyActive(left, right);
        bytes32 frameHash = _acceptProof(account, left, right, proof, account.finalizedHeight, false);
        uint64 deadline = uint64(block.number) + disputeWindow;
        account.dispute = Dispute(proof.frame.height, deadline, entity, frameHash, proof.frame.byLeft);
        emit DisputeStarted(left, right, entity, proof.frame.height, frameHash, deadline);
    }

    /// Either party may counter with a frame signed by the other one that is newer than the
    /// current proof, or at the same height proposed by LEFT where the current one was proposed
    /// by RIGHT: when both sides propose a height, LEFT's frame is the one that commits, so a
    /// RIGHT proposal at that height may be one that never did. The deadline does not move.
    function _counterDispute(bytes32 entity, DisputeProof memory proof) private {
        (bytes32 left, bytes32 right) = _order(entity, proof.counterparty);
        Account storage account = _account(left, right);
        Dispute storage dispute = account.dispute;
        if (dispute.height == 0) revert NoActiveDispute(left, right);
        if (block.number > dispute.deadline) revert DisputeWindowClosed(dispute.deadline);
        bytes32 frameHash = _acceptProof(account, left, right, proof, dispute.height, !dispute.byLeft);
        dispute.height = proof.frame.height;
        dispute.frameHash = frameHash;
        dispute.byLeft = proof.frame.byLeft;
        emit DisputeCountered(left, right, entity, proof.frame.height, frameHash);
    }

    /// Checks that the proof is newer than `mustExceed` (or, where `leftMayTie`, at that height and
    /// proposed by LEFT) and signed by the counterparty, and records its offdeltas (zero for
    /// account tokens absent from it). Returns its frame hash.
    function _acceptProof(
        Account storage account,
        bytes32 left,
        bytes32 right,
        DisputeProof memory proof,
        uint64 mustExceed,
        bool leftMayTie
    ) private returns (bytes32 frameHash) {
        uint64 height = proof.frame.height;
        bool newer = height > mustExceed || (leftMayTie && height == mustExceed && proof.frame.byLeft);
        if (!newer) revert StaleProof(height, mustExceed);
        frameHash = accountFrameHash(left, right, proof.frame);
        _requireQuorum(proof.counterparty, proof.counterpartyBoard, frameHash, proof.counterpartySigs);

        for (uint256 i; i < account.tokenIds.length; ++i) {
            account.tokens[account.tokenIds[i]].disputeOffdelta = 0;
        }
        TokenState[] memory tokens = proof.frame.tokens;
        for (uint256 i; i < tokens.length; ++i) {
            if (i > 0 && tokens[i].tokenId <= tokens[i - 1].tokenId) revert TokensNotAscending();
            _listToken(account, tokens[i].tokenId).disputeOffdelta = tokens[i].offdelta;
        }
    }

    /// Moves what `debtor` owes `creditor` from the debtor's reserve, as far as it goes, and
    /// records the remainder as debt.
    function _collectCredit(bytes32 debtor, bytes32 creditor, uint32 tokenId, uint256 owed) private {
        uint256 available = reserves[debtor][tokenId];
        uint256 paid = owed < available ? owed : available;
        _debitReserve(debtor, tokenId, paid);
        _creditReserve(creditor, tokenId, paid);
        uint256 unpaid = owed - paid;
        if (unpaid > 0) {
            uint256 total = debts[debtor][creditor][tokenId] + unpaid;
            debts[debtor][creditor][tokenId] = total;
            emit DebtRecorded(debtor, creditor, tokenId, unpaid, total);
        }
    }

    /// The one place where collateral and ondelta change: enforces collateral >= 0 and the
    /// u128/i128 ranges the off-chain state uses.
    function _setAccountToken(bytes32 left, bytes32 right, uint32 tokenId, int256 collateral, int256 ondelta)
        private
    {
        if (collateral < 0) revert InsufficientCollateral(tokenId);
        if (collateral > int256(uint256(type(uint128).max)) || ondelta < type(int128).min || ondelta > type(int128).max)
        {
            revert ValueOutOfRange(tokenId);
        }
        AccountToken storage t = _listToken(_account(left, right), tokenId);
        t.collateral = uint128(uint256(collateral));
        t.ondelta = int128(ondelta);
        emit AccountUpdated(left, right, tokenId, uint256(collateral), ondelta);
    }

    function _adjustReserve(bytes32 entity, uint32 tokenId, int256 diff) private {
        if (diff >= 0) {
            _creditReserve(entity, tokenId, uint256(diff));
        } else {
            _debitReserve(entity, tokenId, uint256(-diff));
        }
    }

    function _creditReserve(bytes32 entity, uint32 tokenId, uint256 amount) private {
        if (amount == 0) return;
        _setReserve(entity, tokenId, reserves[entity][tokenId] + amount);
    }

    function _debitReserve(bytes32 entity, uint32 tokenId, uint256 amount) private {
        if (amount == 0) return;
        uint256 reserve = reserves[entity][tokenId];
        if (reserve < amount) revert InsufficientReserve(entity, tokenId, reserve, amount);
        _setReserve(entity, tokenId, reserve - amount);
    }

    /// The one place where reserves change.
    function _setReserve(bytes32 entity, uint32 tokenId, uint256 reserve) private {
        reserves[entity][tokenId] = reserve;
        emit ReserveUpdated(entity, tokenId, reserve);
    }

    function _listToken(Account storage account, uint32 tokenId) private returns (AccountToken storage t) {
        t = account.tokens[tokenId];
        if (!t.listed) {
            t.listed = true;
            account.tokenIds.push(tokenId);
        }
    }

    function _requireQuorum(bytes32 entity, bytes memory encodedBoard, bytes32 digest, bytes memory sigs)
        private
        view
    {
        if (!entityProvider.verifyQuorum(entity, encodedBoard, digest, sigs)) revert InvalidQuorum(entity);
    }

    function _requireNoDispute(bytes32 left, bytes32 right) private view {
        if (_account(left, right).dispute.height != 0) revert AccountInDispute(left, right);
    }

    function _requireToken(uint32 tokenId) private view {
        if (tokenId == 0 || tokenId > tokenAddresses.length) revert UnknownToken(tokenId);
    }

    /// Calls an ERC-20 and accepts success with no return data (non-standard tokens) or `true`.
    function _callToken(address token, bytes memory data) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && !abi.decode(ret, (bool)))) revert TokenTransferFailed(token);
    }

    function _order(bytes32 entity, bytes32 counterparty) private pure returns (bytes32 left, bytes32 right) {
        if (entity == counterparty) revert SameEntity(entity);
        return entity < counterparty ? (entity, counterparty) : (counterparty, entity);
    }

    function _account(bytes32 left, bytes32 right) private view returns (Account storage) {
        return _accounts[keccak256(abi.encodePacked(left, right))];
    }
}
