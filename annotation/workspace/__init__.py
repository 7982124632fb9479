"""The annotator's workspace: dialogues, turns judged on the 8-point scale (pages and API calling
the same services), the judgement rules, overlap review's queue, and the simulated annotators
that drive it over HTTP."""
