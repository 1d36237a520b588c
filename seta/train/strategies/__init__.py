"""seta.train.strategies."""
