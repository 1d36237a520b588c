"""seta.data."""
