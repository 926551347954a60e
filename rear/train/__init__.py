"""Training: optimizer recipe, deterministic batches, checkpoints, the DDP-ready loop."""
