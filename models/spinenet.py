"""spinenet (being written)."""
