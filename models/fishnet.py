"""fishnet (being written)."""
