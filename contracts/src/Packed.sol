// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// Concatenation of byte strings in a single allocation. Board and account-state hashes are
/// taken over packed encodings with one chunk per member or token; `bytes.concat` in a loop would
/// copy the growing buffer every time (quadratic memory cost).
library Packed {
    function concat(bytes[] memory parts) internal pure returns (bytes memory out) {
        uint256 total;
        for (uint256 i; i < parts.length; ++i) {
            total += parts[i].length;
        }
        out = new bytes(total);
        uint256 offset;
        for (uint256 i; i < parts.length; ++i) {
            bytes memory part = parts[i];
            assembly ("memory-safe") {
                mcopy(add(add(out, 32), offset), add(part, 32), mload(part))
            }
            offset += part.length;
        }
    }
}
