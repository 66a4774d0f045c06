"""OpenZeppelin StandardMerkleTree over (uint256 epoch, address staker, string asset, uint256 amount) leaves.

The tree is the OZ array layout: leaves sorted by hash and stored at the end of the array in
reverse order, node i's children at 2i+1 and 2i+2, inner node = keccak256 of the sorted pair,
root at index 0. Proofs verify with OZ `MerkleProof.verify`.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_abi import encode
from eth_hash.auto import keccak

LEAF_TYPES = ("uint256", "address", "string", "uint256")


def _address(staker: str | bytes) -> bytes:
    """20 address bytes from raw bytes or 40 hex digits (with or without 0x; EVM, or TRON's 20-byte body)."""
    if isinstance(staker, bytes):
        raw = staker
    else:
        digits = staker[2:] if staker[:2].lower() == "0x" else staker
        raw = bytes.fromhex(digits) if len(digits) == 40 else b""
    if len(raw) != 20:
        raise ValueError(f"staker must be a 20-byte address, got {staker!r}")
    return raw


def leaf_hash(epoch: int, staker: str | bytes, asset: str, amount: int) -> bytes:
    """keccak256(bytes.concat(keccak256(abi.encode(epoch, staker, asset, amount))))."""
    return keccak(keccak(encode(list(LEAF_TYPES), [epoch, _address(staker), asset, amount])))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OZ commutative node hash: keccak256 of the two 32-byte nodes, smaller first."""
    return keccak(a + b if a <= b else b + a)


def build_tree(leaves: Sequence[bytes]) -> tuple[bytes, ...]:
    """The OZ tree array over `leaves` (leaf hashes in any order)."""
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    if any(len(leaf) != 32 for leaf in leaves):
        raise ValueError("Merkle leaves must be 32-byte hashes")
    ordered = sorted(leaves)
    tree: list[bytes] = [b""] * (2 * len(ordered) - 1)
    for i, leaf in enumerate(ordered):
        tree[len(tree) - 1 - i] = leaf
    for i in range(len(tree) - 1 - len(ordered), -1, -1):
        tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
    return tuple(tree)


def root(tree: Sequence[bytes]) -> bytes:
    """The tree's root."""
    return tree[0]


def index_of(tree: Sequence[bytes], leaf: bytes) -> int:
    """The leaf index (0 = smallest hash) of `leaf`, for `proof`."""
    n = (len(tree) + 1) // 2
    for i in range(n):
        if tree[len(tree) - 1 - i] == leaf:
            return i
    raise ValueError(f"leaf 0x{leaf.hex()} is not in the tree")


def proof(tree: Sequence[bytes], leaf_index: int) -> list[bytes]:
    """Sibling hashes from leaf `leaf_index` (in hash order, as `index_of` gives) up to the root."""
    n = (len(tree) + 1) // 2
    if not 0 <= leaf_index < n:
        raise ValueError(f"leaf index {leaf_index} out of range 0..{n - 1}")
    i = len(tree) - 1 - leaf_index
    path = []
    while i > 0:
        path.append(tree[i + 1 if i % 2 else i - 1])
        i = (i - 1) // 2
    return path


def verify(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """OZ `MerkleProof.verify`: fold the proof over the leaf with `hash_pair` and compare to the root."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root
