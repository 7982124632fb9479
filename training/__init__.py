"""Training runs, checkpoints and the researchers' dashboard (later issues)."""
