"""Renderers: stored results to tables, files and charts. Never imports torch."""
