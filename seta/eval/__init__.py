"""seta.eval."""
