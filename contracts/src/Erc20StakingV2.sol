// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {WithdrawalQueue} from "./WithdrawalQueue.sol";

/// @title ERC-20 multistaking, version 2: address pools, 3-day unstake lock.
contract Erc20StakingV2 is ERC20, WithdrawalQueue {
    using SafeERC20 for IERC20;

    /// @notice The staked token.
    IERC20 public depositToken;
    /// @notice Tokens staked per pool (validator).
    mapping(address => uint256) public stakingPools;

    event StakeOccured(address indexed staker, address indexed toPool, uint256 indexed amount);
    event UnstakeRequested(address indexed unstaker, address indexed fromPool, uint256 indexed amount, uint256 unlockTime);

    constructor(string memory name_, string memory symbol_, address depositToken_) ERC20(name_, symbol_) {
        depositToken = IERC20(depositToken_);
    }

    /// @notice Pull `amount` tokens (approved beforehand) and stake them to `toPool`.
    function stake(address toPool, uint256 amount) external {
        require(amount > 0, "zero amount");
        depositToken.safeTransferFrom(msg.sender, address(this), amount);
        stakingPools[toPool] += amount;
        _mint(msg.sender, amount);
        emit StakeOccured(msg.sender, toPool, amount);
    }

    /// @notice Burn `amount` LST and request its withdrawal from `fromPool` after the lock period.
    function unstake(address fromPool, uint256 amount) external {
        _unstake(fromPool, amount, _request(msg.sender, amount));
    }

    /// @notice Request unstakes from several pools; also emits one aggregate event.
    function unstakeMultiple(address[] calldata pools, uint256[] calldata amounts) external {
        require(pools.length == amounts.length, "length mismatch");
        uint256 total = 0;
        for (uint256 i = 0; i < amounts.length; i++) {
            total += amounts[i];
        }
        uint256 unlockTime = _request(msg.sender, total);
        for (uint256 i = 0; i < pools.length; i++) {
            _unstake(pools[i], amounts[i], unlockTime);
        }
        emit UnstakeMultipleRequested(msg.sender, total, unlockTime);
    }

    function _unstake(address fromPool, uint256 amount, uint256 unlockTime) private {
        require(stakingPools[fromPool] >= amount, "pool balance too low");
        stakingPools[fromPool] -= amount;
        _burn(msg.sender, amount);
        emit UnstakeRequested(msg.sender, fromPool, amount, unlockTime);
    }

    function _pay(address to, uint256 amount) internal override {
        depositToken.safeTransfer(to, amount);
    }
}
