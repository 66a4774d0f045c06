// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// @title Checks the indexer's epoch allocations on chain (test helper for reward epochs).
/// @notice The owner publishes each closed epoch's Merkle root once; anyone can check a
///         (staker, asset, amount) leaf against it with an OpenZeppelin StandardMerkleTree proof.
contract MerkleClaim {
    address public immutable owner;
    /// @notice Merkle root per epoch (zero: not published).
    mapping(uint256 => bytes32) public roots;

    event RootSet(uint256 indexed epoch, bytes32 root);

    constructor() {
        owner = msg.sender;
    }

    /// @notice Publish `epoch`'s root; a root is final once set.
    function setRoot(uint256 epoch, bytes32 root) external {
        require(msg.sender == owner, "not owner");
        require(root != bytes32(0), "zero root");
        require(roots[epoch] == bytes32(0), "root already set");
        roots[epoch] = root;
        emit RootSet(epoch, root);
    }

    /// @notice The StandardMerkleTree leaf of (epoch, staker, asset, amount).
    function leaf(uint256 epoch, address staker, string memory asset, uint256 amount) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(epoch, staker, asset, amount))));
    }

    /// @notice Whether `proof` shows `staker` was allocated `amount` of `asset` in `epoch`.
    function claimable(uint256 epoch, address staker, string memory asset, uint256 amount, bytes32[] memory proof)
        external
        view
        returns (bool)
    {
        bytes32 root = roots[epoch];
        return root != bytes32(0) && MerkleProof.verify(proof, root, leaf(epoch, staker, asset, amount));
    }
}
