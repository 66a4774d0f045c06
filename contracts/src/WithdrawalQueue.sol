// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Pending withdrawals with a fixed lock, shared by the v2 staking contracts.
/// @dev Requests of one account are appended with non-decreasing unlock times, so the
///      matured ones always form a prefix of the account's queue.
abstract contract WithdrawalQueue {
    /// @notice Time between an unstake request and the moment it can be withdrawn.
    uint256 public constant LOCK = 3 days;

    struct Request {
        uint256 amount;
        uint256 unlockTime;
    }

    mapping(address => Request[]) private _requests;
    mapping(address => uint256) private _next;

    event UnstakeMultipleRequested(address indexed unstaker, uint256 indexed totalAmount, uint256 unlockTime);
    event Withdrawal(address indexed unstaker, uint256 indexed amount);

    /// @notice Pay out every matured request of the caller.
    function withdraw() external {
        Request[] storage queue = _requests[msg.sender];
        uint256 i = _next[msg.sender];
        uint256 total = 0;
        while (i < queue.length && queue[i].unlockTime <= block.timestamp) {
            total += queue[i].amount;
            delete queue[i];
            i++;
        }
        require(total > 0, "nothing to withdraw");
        _next[msg.sender] = i;
        emit Withdrawal(msg.sender, total);
        _pay(msg.sender, total);
    }

    /// @notice Amount the account has requested and not yet withdrawn (matured or not).
    function pendingOf(address account) external view returns (uint256 total) {
        Request[] storage queue = _requests[account];
        for (uint256 i = _next[account]; i < queue.length; i++) {
            total += queue[i].amount;
        }
    }

    function _request(address account, uint256 amount) internal returns (uint256 unlockTime) {
        unlockTime = block.timestamp + LOCK;
        _requests[account].push(Request(amount, unlockTime));
    }

    function _pay(address to, uint256 amount) internal virtual;
}
