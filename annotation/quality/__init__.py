"""Data quality: agreement statistics, the quality report, and the pages and API of overlap review
and gold items."""
