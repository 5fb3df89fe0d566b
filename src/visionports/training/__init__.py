"""Training helpers shared by families: EMA, process-group helpers, and the fine-tuning driver."""
