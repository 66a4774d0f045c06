"""The epoch Merkle tree matches OpenZeppelin's StandardMerkleTree, and its proofs verify like MerkleProof (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.epochs.merkle import build_tree, index_of, leaf_hash, proof, root, verify

# Expected vectors below were produced independently by OpenZeppelin's own library,
# @openzeppelin/merkle-tree 1.0.8 on node v20, with this script:
#
#   const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
#   const values = [ ...VALUES below, numbers as decimal strings... ];
#   for (const vals of [values, values.slice(0, 1), values.slice(0, 2)]) {
#     const tree = StandardMerkleTree.of(vals, ["uint256", "address", "string", "uint256"]);
#     console.log("n =", vals.length, "root", tree.root);
#     for (const [i, v] of tree.entries())
#       console.log(" value", i, "leaf", tree.leafHash(v), "proof", JSON.stringify(tree.getProof(i)));
#     if (vals.length === 5) console.log(" tree", JSON.stringify(tree.dump().tree));
#   }
VALUES = [
    (7, "0x1111111111111111111111111111111111111111", "klyETH", 10**18),
    (7, "0x2222222222222222222222222222222222222222", "klyETH", 2_500_000_000_000_000_001),
    (7, "0x1111111111111111111111111111111111111111", "USDT", 123_456_789),
    (7, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "TRX", 42),
    (8, "0xfFfFfFfFfFfFfFfFfFfFfFfFfFfFfFfFfFfFfFfF", "klyETH", 2**256 - 1),
]
OZ_LEAVES = [
    "41eeef16b70bbdc565eb6be6f5b664ddcefb5576cc9abdf3e773acb93661415b",
    "ea4dcb938da3140b62ed8f0e640128adafa78693985e93b5985779eb0e2f09d0",
    "32de8f345b5b9dc2d189287315e27158db1916da9f3db369b902bf4b2b3d4e81",
    "f0a21804c3bca6c7eddd354b132a82d2165b1a01c121f862b8e6f5980d42a9c8",
    "45337b4b9d8333b613eeb267e8ac8e053c49b1cc07447504a3fedd99d228319e",
]
OZ_ROOT_5 = "0705005469bba57937897ebda90929ed4cddce4b580df21bbbdd0387b91c8feb"
OZ_TREE_5 = [
    OZ_ROOT_5,
    "46b24ff17d6931ce05d933b7d49154b37320bc396614cf752557360597fadb52",
    "bdf720a2b7727b2d987a61c594d911dd4bf0fc8e1c9b10c4be953d17922904dd",
    "70ecbfa80823dac2ffcae6996fb4bca8ac67339f296be4e5493325d28695d858",
    "f0a21804c3bca6c7eddd354b132a82d2165b1a01c121f862b8e6f5980d42a9c8",
    "ea4dcb938da3140b62ed8f0e640128adafa78693985e93b5985779eb0e2f09d0",
    "45337b4b9d8333b613eeb267e8ac8e053c49b1cc07447504a3fedd99d228319e",
    "41eeef16b70bbdc565eb6be6f5b664ddcefb5576cc9abdf3e773acb93661415b",
    "32de8f345b5b9dc2d189287315e27158db1916da9f3db369b902bf4b2b3d4e81",
]
OZ_PROOFS_5 = [  # by value index, as tree.getProof(i) printed them
    [OZ_LEAVES[2], OZ_LEAVES[3], "bdf720a2b7727b2d987a61c594d911dd4bf0fc8e1c9b10c4be953d17922904dd"],
    [OZ_LEAVES[4], "46b24ff17d6931ce05d933b7d49154b37320bc396614cf752557360597fadb52"],
    [OZ_LEAVES[0], OZ_LEAVES[3], "bdf720a2b7727b2d987a61c594d911dd4bf0fc8e1c9b10c4be953d17922904dd"],
    [
        "70ecbfa80823dac2ffcae6996fb4bca8ac67339f296be4e5493325d28695d858",
        "bdf720a2b7727b2d987a61c594d911dd4bf0fc8e1c9b10c4be953d17922904dd",
    ],
    [OZ_LEAVES[1], "46b24ff17d6931ce05d933b7d49154b37320bc396614cf752557360597fadb52"],
]
OZ_ROOT_1 = OZ_LEAVES[0]
OZ_ROOT_2 = "145cb7a44f272dfb984e5718f08324c4161b96d13541ee20bb5db478071c7a75"


def hexes(xs):
    return [x.hex() for x in xs]


def test_leaf_hashes_match_openzeppelin():
    assert [leaf_hash(*v).hex() for v in VALUES] == OZ_LEAVES


def test_tree_layout_root_and_proofs_match_openzeppelin():
    leaves = [leaf_hash(*v) for v in VALUES]
    tree = build_tree(leaves)
    assert hexes(tree) == OZ_TREE_5
    assert root(tree).hex() == OZ_ROOT_5
    assert [hexes(proof(tree, index_of(tree, leaf))) for leaf in leaves] == OZ_PROOFS_5


def test_one_and_two_leaf_trees_match_openzeppelin():
    one = build_tree([leaf_hash(*VALUES[0])])
    assert root(one).hex() == OZ_ROOT_1 and proof(one, 0) == []
    two = build_tree([leaf_hash(*v) for v in VALUES[:2]])
    assert root(two).hex() == OZ_ROOT_2


def test_leaf_order_does_not_matter():
    leaves = [leaf_hash(*v) for v in VALUES]
    assert build_tree(leaves) == build_tree(list(reversed(leaves)))


def test_a_tampered_amount_or_proof_fails():
    leaves = [leaf_hash(*v) for v in VALUES]
    tree = build_tree(leaves)
    epoch, staker, asset, amount = VALUES[1]
    path = proof(tree, index_of(tree, leaves[1]))
    assert verify(root(tree), leaves[1], path)
    assert not verify(root(tree), leaf_hash(epoch, staker, asset, amount + 1), path)
    assert not verify(root(tree), leaf_hash(epoch + 1, staker, asset, amount), path)
    assert not verify(root(tree), leaves[1], path[:-1])
    assert not verify(root(tree), leaves[1], [path[0][::-1], *path[1:]])


def test_addresses_may_be_bytes_or_hex_in_any_case():
    raw = bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
    expected = leaf_hash(1, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "TRX", 5)
    assert leaf_hash(1, raw, "TRX", 5) == expected
    assert leaf_hash(1, "0xA0B86991C6218B36C1D19D4A2E9EB0CE3606EB48", "TRX", 5) == expected
    with pytest.raises(ValueError):
        leaf_hash(1, "0x1234", "TRX", 5)


def test_empty_tree_and_bad_indices_are_refused():
    with pytest.raises(ValueError):
        build_tree([])
    tree = build_tree([leaf_hash(*v) for v in VALUES])
    with pytest.raises(ValueError):
        proof(tree, 5)
    with pytest.raises(ValueError):
        index_of(tree, b"\0" * 32)


entries = st.tuples(
    st.integers(0, 2**64),
    st.binary(min_size=20, max_size=20),
    st.sampled_from(["klyETH", "USDT", "TRX", "ünïcode"]),
    st.integers(0, 2**256 - 1),
)


@given(st.lists(entries, min_size=1, max_size=40, unique=True))
def test_every_leaf_proof_verifies_against_the_root(values):
    leaves = [leaf_hash(*v) for v in values]
    tree = build_tree(leaves)
    assert len(tree) == 2 * len(leaves) - 1
    for leaf in leaves:
        assert verify(root(tree), leaf, proof(tree, index_of(tree, leaf)))
