"""scnet (being written)."""
