// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

/// @title ERC-721 multistaking, version 1: the LST is an ERC-721 with the staked NFT's token id; the NFT
///        comes back at once on unstake.
/// @notice The pools are private sets of token ids: `getStakedTokens(pool)` lists them (no `stakingPools`).
contract Erc721StakingV1 is ERC721 {
    using EnumerableSet for EnumerableSet.UintSet;

    /// @notice The staked NFT collection.
    IERC721 public depositToken;

    mapping(address => EnumerableSet.UintSet) private _pools;

    event StakeOccured(address indexed staker, address indexed toPool, uint256 indexed tokenId);
    event UnstakeOccured(address indexed unstaker, address indexed fromPool, uint256 indexed tokenId);

    constructor(string memory name_, string memory symbol_, address depositToken_) ERC721(name_, symbol_) {
        depositToken = IERC721(depositToken_);
    }

    /// @notice Pull NFT `tokenId` (approved beforehand, owned by the caller) and stake it to `toPool`.
    function stake(address toPool, uint256 tokenId) external {
        require(depositToken.ownerOf(tokenId) == msg.sender, "not the NFT's owner");
        depositToken.transferFrom(msg.sender, address(this), tokenId);
        _pools[toPool].add(tokenId);
        _mint(msg.sender, tokenId);
        emit StakeOccured(msg.sender, toPool, tokenId);
    }

    /// @notice Burn LST `tokenId` (the caller must hold it) and return the NFT staked in `fromPool`.
    function unstake(address fromPool, uint256 tokenId) external {
        require(_pools[fromPool].contains(tokenId), "token not staked in this pool");
        require(ownerOf(tokenId) == msg.sender, "not the LST's holder");
        _burn(tokenId);
        _pools[fromPool].remove(tokenId);
        depositToken.transferFrom(address(this), msg.sender, tokenId);
        emit UnstakeOccured(msg.sender, fromPool, tokenId);
    }

    /// @notice The token ids staked in `pool`.
    function getStakedTokens(address pool) external view returns (uint256[] memory) {
        return _pools[pool].values();
    }
}
