// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title ERC-20 multistaking, version 1: address pools, immediate payout.
contract Erc20StakingV1 is ERC20 {
    using SafeERC20 for IERC20;

    /// @notice The staked token.
    IERC20 public depositToken;
    /// @notice Tokens staked per pool (validator).
    mapping(address => uint256) public stakingPools;

    event StakeOccured(address indexed staker, address indexed toPool, uint256 indexed amount);
    event UnstakeOccured(address indexed unstaker, address indexed fromPool, uint256 indexed amount);

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

    /// @notice Burn `amount` LST from the caller and return the tokens from `fromPool`.
    function unstake(address fromPool, uint256 amount) external {
        _unstake(fromPool, amount);
    }

    /// @notice Unstake from several pools in one call (one UnstakeOccured per pool); reverts for a zero total.
    function unstakeMultiple(address[] calldata pools, uint256[] calldata amounts) external {
        require(pools.length == amounts.length, "length mismatch");
        uint256 total = 0;
        for (uint256 i = 0; i < pools.length; i++) {
            _unstake(pools[i], amounts[i]);
            total += amounts[i];
        }
        require(total > 0, "nothing to unstake");
    }

    function _unstake(address fromPool, uint256 amount) private {
        require(stakingPools[fromPool] >= amount, "pool balance too low");
        stakingPools[fromPool] -= amount;
        _burn(msg.sender, amount);
        emit UnstakeOccured(msg.sender, fromPool, amount);
        depositToken.safeTransfer(msg.sender, amount);
    }
}
