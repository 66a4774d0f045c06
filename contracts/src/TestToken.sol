// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title Plain 18-decimal ERC-20 that anyone can mint (tests only).
contract TestToken is ERC20 {
    constructor() ERC20("Test Token", "TKN") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
