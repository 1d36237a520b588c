"""seta.core."""
