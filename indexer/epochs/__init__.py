"""Reward epochs: fixed time windows, time-weighted reward splits and their Merkle trees (pure)."""
