// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";

/// @title ERC-721 multistaking: the LST is an ERC-721 with the staked NFT's tokenId.
contract Erc721Staking is ERC721 {
    /// @notice The staked NFT collection.
    IERC721 public immutable nft;
    /// @notice Number of NFTs staked per pool (validator).
    mapping(address => uint256) public stakingPools;
    /// @notice Pool each staked tokenId was staked to.
    mapping(uint256 => address) public poolOf;

    event StakeOccured(address indexed staker, address indexed toPool, uint256 indexed tokenId);
    event UnstakeOccured(address indexed unstaker, address indexed fromPool, uint256 indexed tokenId);

    constructor(IERC721 nft_, string memory name_, string memory symbol_) ERC721(name_, symbol_) {
        nft = nft_;
    }

    /// @notice Pull NFT `tokenId` (approved beforehand) and stake it to `toPool`.
    function stake(address toPool, uint256 tokenId) external {
        nft.transferFrom(msg.sender, address(this), tokenId);
        poolOf[tokenId] = toPool;
        stakingPools[toPool] += 1;
        _mint(msg.sender, tokenId);
        emit StakeOccured(msg.sender, toPool, tokenId);
    }

    /// @notice Burn LST `tokenId` (caller must hold it) and return the NFT from `fromPool`.
    function unstake(address fromPool, uint256 tokenId) external {
        require(ownerOf(tokenId) == msg.sender, "not the holder");
        require(poolOf[tokenId] == fromPool, "wrong pool");
        delete poolOf[tokenId];
        stakingPools[fromPool] -= 1;
        _burn(tokenId);
        emit UnstakeOccured(msg.sender, fromPool, tokenId);
        nft.transferFrom(address(this), msg.sender, tokenId);
    }
}
