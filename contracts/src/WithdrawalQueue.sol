// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Withdrawal requests of the fungible v2 contracts (native and ERC-20), as the real ones keep them.
/// @dev One entry is pushed per `unstake` and one per `unstakeMultiple` (for the total). `withdraw`
///      pays every matured non-zero entry and deletes it in place: a settled entry reads back as
///      (0, 0) and the array never shrinks. There is no length getter.
abstract contract WithdrawalQueue {
    struct WithdrawalRequest {
        uint256 amount;
        uint256 unlockTime;
    }

    /// @notice withdrawalRequests(staker, index) -> (amount, unlockTime); reverts past the end.
    mapping(address => WithdrawalRequest[]) public withdrawalRequests;
    /// @notice Time between an unstake request and the moment it can be withdrawn.
    uint256 public lockPeriod = 3 days;

    event UnstakeMultipleRequested(address indexed unstaker, uint256 indexed totalAmount, uint256 unlockTime);
    event Withdrawal(address indexed unstaker, uint256 indexed amount);

    /// @notice Pay out every matured request of the caller.
    function withdraw() external {
        WithdrawalRequest[] storage requests = withdrawalRequests[msg.sender];
        uint256 total = 0;
        for (uint256 i = 0; i < requests.length; i++) {
            if (block.timestamp >= requests[i].unlockTime && requests[i].amount > 0) {
                total += requests[i].amount;
                delete requests[i];
            }
        }
        require(total > 0, "nothing to withdraw");
        _pay(msg.sender, total);
        emit Withdrawal(msg.sender, total);
    }

    function _request(address account, uint256 amount) internal returns (uint256 unlockTime) {
        unlockTime = block.timestamp + lockPeriod;
        withdrawalRequests[account].push(WithdrawalRequest(amount, unlockTime));
    }

    function _pay(address to, uint256 amount) internal virtual;
}
