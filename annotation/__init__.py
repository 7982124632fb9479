"""The domain of judgements: the annotator's workspace (dialogues, turns, pairs judged on the
8-point scale, safety labels), weekly batches with their freeze, exports and imports, quality
(overlap review, gold items, agreement, simulated annotators) and demonstrations."""
