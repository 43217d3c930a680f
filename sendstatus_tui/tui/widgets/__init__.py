"""Reusable widgets: the panes' tables."""
