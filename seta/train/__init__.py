"""seta.train."""
