// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

interface INativeStakingV1 {
    function stake(address toPool) external payable;
}

interface IErc20StakingV1 {
    function stake(address toPool, uint256 amount) external;
}

interface INativeStakingV2 {
    function stake(string calldata toPool) external payable;
    function unstake(string calldata fromPool, uint256 amount) external;
}

/// @title Calls staking contracts many times in one transaction (tests and benchmarks).
/// @notice The LST minted by these stakes is held by the batcher itself, and the
///         transaction's top-level calldata is the batcher's, not the staking contract's.
contract StakeBatcher {
    /// @notice Stake `amountEach` to every pool, `rounds` times (msg.value must match).
    function stakeManyNativeV1(address staking, address[] calldata pools, uint256 amountEach, uint256 rounds)
        external
        payable
    {
        require(msg.value == amountEach * pools.length * rounds, "wrong value");
        for (uint256 r = 0; r < rounds; r++) {
            for (uint256 i = 0; i < pools.length; i++) {
                INativeStakingV1(staking).stake{value: amountEach}(pools[i]);
            }
        }
    }

    /// @notice Stake `amountEach` of the batcher's own `token` to `pool`, `count` times.
    function stakeManyErc20V1(address staking, address token, address pool, uint256 amountEach, uint256 count)
        external
    {
        require(IERC20(token).approve(staking, amountEach * count), "approve failed");
        for (uint256 i = 0; i < count; i++) {
            IErc20StakingV1(staking).stake(pool, amountEach);
        }
    }

    /// @notice Forward native v2 stakes (msg.value must equal the sum of amounts).
    function stakeNativeV2(address staking, string[] calldata pools, uint256[] calldata amounts) external payable {
        require(pools.length == amounts.length, "length mismatch");
        uint256 total = 0;
        for (uint256 i = 0; i < pools.length; i++) {
            INativeStakingV2(staking).stake{value: amounts[i]}(pools[i]);
            total += amounts[i];
        }
        require(total == msg.value, "wrong value");
    }

    /// @notice Forward a native v2 unstake of LST held by the batcher.
    function unstakeNativeV2(address staking, string calldata pool, uint256 amount) external {
        INativeStakingV2(staking).unstake(pool, amount);
    }

    receive() external payable {}
}
