"""Training helpers shared by families (EMA)."""
