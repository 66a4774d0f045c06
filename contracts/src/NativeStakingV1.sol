// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Native-coin multistaking, version 1: address pools, immediate payout.
/// @notice Staking mints the liquid staking token (LST) 1:1; unstaking burns it from
///         the caller (any holder) and pays the native coin back at once.
contract NativeStakingV1 is ERC20 {
    /// @notice Native coin staked per pool (validator).
    mapping(address => uint256) public stakingPools;

    event StakeOccured(address indexed staker, address indexed toPool, uint256 indexed amount);
    event UnstakeOccured(address indexed unstaker, address indexed fromPool, uint256 indexed amount);

    constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) {}

    /// @notice Stake msg.value to `toPool`, minting the same amount of LST to the caller.
    function stake(address toPool) external payable {
        require(msg.value > 0, "zero amount");
        stakingPools[toPool] += msg.value;
        _mint(msg.sender, msg.value);
        emit StakeOccured(msg.sender, toPool, msg.value);
    }

    /// @notice Burn `amount` LST from the caller and withdraw it from `fromPool`.
    function unstake(address fromPool, uint256 amount) external {
        _unstake(fromPool, amount);
    }

    /// @notice Unstake from several pools in one call (one UnstakeOccured per pool).
    function unstakeMultiple(address[] calldata pools, uint256[] calldata amounts) external {
        require(pools.length == amounts.length, "length mismatch");
        for (uint256 i = 0; i < pools.length; i++) {
            _unstake(pools[i], amounts[i]);
        }
    }

    function _unstake(address fromPool, uint256 amount) private {
        require(stakingPools[fromPool] >= amount, "pool balance too low");
        stakingPools[fromPool] -= amount;
        _burn(msg.sender, amount);
        emit UnstakeOccured(msg.sender, fromPool, amount);
        (bool ok, ) = payable(msg.sender).call{value: amount}("");
        require(ok, "payout failed");
    }
}
