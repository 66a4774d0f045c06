// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {WithdrawalQueue} from "./WithdrawalQueue.sol";

/// @title Native-coin multistaking, version 2: string pools, 3-day unstake lock.
contract NativeStakingV2 is ERC20, WithdrawalQueue {
    /// @notice Native coin staked per pool (validator id).
    mapping(string => uint256) public stakingPools;

    event StakeOccured(address indexed staker, string indexed toPool, uint256 indexed amount);
    event UnstakeRequested(address indexed unstaker, string indexed fromPool, uint256 indexed amount, uint256 unlockTime);

    constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) {}

    /// @notice Stake msg.value to `toPool`, minting the same amount of LST to the caller.
    function stake(string calldata toPool) external payable {
        require(msg.value > 0, "zero amount");
        stakingPools[toPool] += msg.value;
        _mint(msg.sender, msg.value);
        emit StakeOccured(msg.sender, toPool, msg.value);
    }

    /// @notice Burn `amount` LST and request its withdrawal from `fromPool` after the lock period.
    function unstake(string calldata fromPool, uint256 amount) external {
        _unstake(fromPool, amount, _request(msg.sender, amount));
    }

    /// @notice Request unstakes from several pools; also emits one aggregate event.
    function unstakeMultiple(string[] calldata pools, uint256[] calldata amounts) external {
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

    function _unstake(string calldata fromPool, uint256 amount, uint256 unlockTime) private {
        require(stakingPools[fromPool] >= amount, "pool balance too low");
        stakingPools[fromPool] -= amount;
        _burn(msg.sender, amount);
        emit UnstakeRequested(msg.sender, fromPool, amount, unlockTime);
    }

    function _pay(address to, uint256 amount) internal override {
        (bool ok, ) = payable(to).call{value: amount}("");
        require(ok, "payout failed");
    }
}
