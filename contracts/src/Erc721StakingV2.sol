// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";

/// @title ERC-721 multistaking, version 2: unstaking requests the NFT back after a 3-day lock; `withdraw`
///        returns every matured NFT with one `Withdrawal(unstaker, tokenId)` each.
/// @notice Like the real contract, `withdraw` skips entries whose token id is 0: a request for NFT 0
///         can never be withdrawn. No `unstakeMultiple`.
contract Erc721StakingV2 is ERC721 {
    using EnumerableSet for EnumerableSet.UintSet;

    struct WithdrawalRequest {
        uint256 tokenId;
        uint256 unlockTime;
    }

    /// @notice The staked NFT collection.
    IERC721 public depositToken;
    /// @notice withdrawalRequests(staker, index) -> (tokenId, unlockTime); settled entries read (0, 0).
    mapping(address => WithdrawalRequest[]) public withdrawalRequests;
    /// @notice Time between an unstake request and the moment the NFT can be withdrawn.
    uint256 public lockPeriod = 3 days;

    mapping(address => EnumerableSet.UintSet) private _pools;

    event StakeOccured(address indexed staker, address indexed toPool, uint256 indexed tokenId);
    event UnstakeRequested(address indexed unstaker, address indexed fromPool, uint256 indexed tokenId, uint256 unlockTime);
    event Withdrawal(address indexed unstaker, uint256 indexed tokenId);

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

    /// @notice Burn LST `tokenId` (the caller must hold it) and request the NFT back after the lock.
    function unstake(address fromPool, uint256 tokenId) external {
        require(_pools[fromPool].contains(tokenId), "token not staked in this pool");
        require(ownerOf(tokenId) == msg.sender, "not the LST's holder");
        _burn(tokenId);
        _pools[fromPool].remove(tokenId);
        uint256 unlockTime = block.timestamp + lockPeriod;
        withdrawalRequests[msg.sender].push(WithdrawalRequest(tokenId, unlockTime));
        emit UnstakeRequested(msg.sender, fromPool, tokenId, unlockTime);
    }

    /// @notice Return every matured NFT of the caller (token id 0 is skipped, as in the real contract).
    function withdraw() external {
        WithdrawalRequest[] storage requests = withdrawalRequests[msg.sender];
        uint256 returned = 0;
        for (uint256 i = 0; i < requests.length; i++) {
            uint256 tokenId = requests[i].tokenId;
            if (block.timestamp >= requests[i].unlockTime && tokenId != 0) {
                depositToken.transferFrom(address(this), msg.sender, tokenId);
                returned++;
                emit Withdrawal(msg.sender, tokenId);
                delete requests[i];
            }
        }
        require(returned > 0, "nothing to withdraw");
    }

    /// @notice The token ids staked in `pool`.
    function getStakedTokens(address pool) external view returns (uint256[] memory) {
        return _pools[pool].values();
    }
}
