// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Packed} from "./Packed.sol";

/// Entities and their boards.
///
/// A board is `threshold` plus weighted members. It is passed around ABI-encoded as
/// `abi.encode(uint64 threshold, address[] members, uint64[] weights)` and identified by its
/// packed hash `keccak256(abi.encodePacked(uint64 threshold, address m0, uint64 w0, ...))`.
/// A lazy entity's id is its board hash; a registered entity's id is `bytes32(number)` and its
/// board hash is stored here, so its board can be rotated.
contract EntityProvider {
    struct Board {
        uint64 threshold;
        address[] members;
        uint64[] weights;
    }

    /// Bounded so that used members fit in one uint256 bitmap while counting a quorum.
    uint256 public constant MAX_BOARD_MEMBERS = 256;
    bytes32 public constant ROTATION_TAG = keccak256("xln.board.rotation.v1");
    /// secp256k1n / 2: signatures with a larger s are the malleable twin and are not accepted.
    uint256 private constant SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /// Number of registered entities; the last one registered has id bytes32(entityCount).
    uint256 public entityCount;
    /// Board hash of each registered entity (zero for ids that are not registered).
    mapping(bytes32 entityId => bytes32) public boardHashOf;
    /// Next nonce for a board rotation of each registered entity.
    mapping(bytes32 entityId => uint256) public rotationNonce;

    event EntityRegistered(bytes32 indexed entityId, uint256 number, bytes32 boardHash, bytes encodedBoard);
    event BoardRotated(
        bytes32 indexed entityId, bytes32 oldBoardHash, bytes32 newBoardHash, uint256 nonce, bytes encodedBoard
    );

    error InvalidBoard();
    error EntityNotRegistered(bytes32 entityId);
    error InvalidQuorum(bytes32 entityId);

    /// Registers a new numbered entity controlled by `encodedBoard`. Anyone may register.
    function registerEntity(bytes calldata encodedBoard) external returns (bytes32 entityId) {
        bytes32 hash = _validBoardHash(encodedBoard);
        uint256 number = ++entityCount;
        entityId = bytes32(number);
        boardHashOf[entityId] = hash;
        emit EntityRegistered(entityId, number, hash, encodedBoard);
    }

    /// Replaces the board of a registered entity, authorized by a quorum of its current board
    /// over `rotationDigest(entityId, hash of newBoard, rotationNonce[entityId])`.
    function rotateBoard(
        bytes32 entityId,
        bytes calldata newBoard,
        bytes calldata currentBoard,
        bytes calldata sigs
    ) external {
        bytes32 oldHash = boardHashOf[entityId];
        if (oldHash == 0) revert EntityNotRegistered(entityId);
        bytes32 newHash = _validBoardHash(newBoard);
        uint256 nonce = rotationNonce[entityId];
        if (!verifyQuorum(entityId, currentBoard, rotationDigest(entityId, newHash, nonce), sigs)) {
            revert InvalidQuorum(entityId);
        }
        boardHashOf[entityId] = newHash;
        rotationNonce[entityId] = nonce + 1;
        emit BoardRotated(entityId, oldHash, newHash, nonce, newBoard);
    }

    /// True when `sigs` (concatenated 65-byte r||s||v signatures over `digest`) come from distinct
    /// members of `encodedBoard` whose weights reach its threshold, and that board is the entity's
    /// (lazy: its hash is the id; registered: its hash is the stored one). Signatures that are
    /// malformed or recover to a non-member or an already counted member add nothing.
    /// Reverts only if `encodedBoard` is not ABI-decodable.
    function verifyQuorum(bytes32 entityId, bytes calldata encodedBoard, bytes32 digest, bytes calldata sigs)
        public
        view
        returns (bool)
    {
        Board memory board = decodeBoard(encodedBoard);
        if (!isValidBoard(board) || boardHash(board) != currentBoardHash(entityId)) return false;
        if (sigs.length % 65 != 0) return false;

        uint256 counted; // bitmap of member indexes already counted
        uint256 weight;
        for (uint256 offset; offset < sigs.length; offset += 65) {
            address signer = recoverSigner(digest, sigs[offset:offset + 65]);
            if (signer == address(0)) continue;
            for (uint256 i; i < board.members.length; ++i) {
                if (board.members[i] != signer) continue;
                if (counted & (1 << i) == 0) {
                    counted |= 1 << i;
                    weight += board.weights[i];
                }
                break;
            }
            if (weight >= board.threshold) return true;
        }
        return false;
    }

    /// The board hash an entity's board must have: the id itself for a lazy entity.
    function currentBoardHash(bytes32 entityId) public view returns (bytes32) {
        bytes32 stored = boardHashOf[entityId];
        return stored == 0 ? entityId : stored;
    }

    function decodeBoard(bytes calldata encodedBoard) public pure returns (Board memory board) {
        (board.threshold, board.members, board.weights) = abi.decode(encodedBoard, (uint64, address[], uint64[]));
    }

    /// 1..MAX_BOARD_MEMBERS distinct non-zero members, one weight each, 0 < threshold <= sum(weights).
    function isValidBoard(Board memory board) public pure returns (bool) {
        uint256 n = board.members.length;
        if (n == 0 || n > MAX_BOARD_MEMBERS || board.weights.length != n || board.threshold == 0) return false;
        uint256 total;
        for (uint256 i; i < n; ++i) {
            if (board.members[i] == address(0)) return false;
            for (uint256 j; j < i; ++j) {
                if (board.members[j] == board.members[i]) return false;
            }
            total += board.weights[i];
        }
        return total >= board.threshold;
    }

    /// keccak256(abi.encodePacked(uint64 threshold, address m0, uint64 w0, address m1, uint64 w1, ...)).
    function boardHash(Board memory board) public pure returns (bytes32) {
        bytes[] memory parts = new bytes[](board.members.length + 1);
        parts[0] = abi.encodePacked(board.threshold);
        for (uint256 i; i < board.members.length; ++i) {
            parts[i + 1] = abi.encodePacked(board.members[i], board.weights[i]);
        }
        return keccak256(Packed.concat(parts));
    }

    /// Domain of digests checked by this contract (board rotations):
    /// keccak256(abi.encodePacked(uint256 chainid, address(this))).
    function domain() public view returns (bytes32) {
        return keccak256(abi.encodePacked(block.chainid, address(this)));
    }

    /// keccak256(abi.encodePacked(ROTATION_TAG, domain(), entityId, newBoardHash, uint256 nonce)).
    function rotationDigest(bytes32 entityId, bytes32 newBoardHash, uint256 nonce) public view returns (bytes32) {
        return keccak256(abi.encodePacked(ROTATION_TAG, domain(), entityId, newBoardHash, nonce));
    }

    /// Signer of a 65-byte r||s||v signature over `digest` (no EIP-191 prefix), or address(0)
    /// if the signature is malformed: wrong length, v not 27/28, s in the upper half, or no recovery.
    function recoverSigner(bytes32 digest, bytes calldata sig) public pure returns (address) {
        if (sig.length != 65) return address(0);
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        if ((v != 27 && v != 28) || uint256(s) > SECP256K1_HALF_N) return address(0);
        return ecrecover(digest, v, r, s);
    }

    function _validBoardHash(bytes calldata encodedBoard) private pure returns (bytes32) {
        Board memory board = decodeBoard(encodedBoard);
        if (!isValidBoard(board)) revert InvalidBoard();
        return boardHash(board);
    }
}
