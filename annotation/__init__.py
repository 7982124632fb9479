"""The domain of judgements, one app in four topic sub-packages: ``workspace`` (dialogues, turns,
pairs judged on the 8-point scale, safety labels, the overlap-review queue, simulated
annotators), ``batches`` (weekly batches with their freeze, exports and imports), ``quality``
(agreement, the quality report, review and gold pages) and ``demonstrations``."""
