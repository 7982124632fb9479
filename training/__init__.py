"""Researchers' runs and checkpoints: reward models, SFT, rejection sampling, PPO, Ghost Attention
and model-based evaluations launched from the dashboard, the API or the command line, run on the
GPU workers, and served back to annotators as policy variants. training/jobs/ holds the jobs
themselves, with no Django import."""
