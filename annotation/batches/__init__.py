"""Weekly batches: the freeze and its split, exports (as jobs) and imports, the batch figures,
and the admins' pages and API for them."""
