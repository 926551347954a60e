"""The jobs that train: the generator (deterministic batches, checkpoints, the DDP-ready loop) and the conv VQ
tokenizer (tokenizer.py)."""
