"""The dependency resolution TOOLCHAIN.md warns about: web3 below 8 next to tronpy 0.6.2."""

from importlib.metadata import version


def test_tronpy_resolved_to_0_6_2_not_the_ancient_fallback():
    import tronpy.version

    assert tronpy.version.VERSION == "0.6.2"


def test_web3_is_7_and_eth_abi_is_5():
    assert version("web3").split(".")[0] == "7"
    assert version("eth-abi").split(".")[0] == "5"
