"""seta.models."""
