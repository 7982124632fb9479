"""Dialogues, turns, judgements, batches, exports and the annotator workspace (later issues)."""
