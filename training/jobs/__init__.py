"""Training jobs: pure Python and torch/transformers/TRL, no Django import (see ARCHITECTURE.md)."""
