"""Points programs computed from stake and activity (pure)."""
