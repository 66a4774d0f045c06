"""Chain sources: the only code that talks to a node or a feed."""
