"""Demonstrations: answers written, or responses rewritten, by annotators (pages and API)."""
