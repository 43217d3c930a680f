"""The domain: mailings, their states and rules, the sequential queue and the store.

Nothing here imports textual or apscheduler (an import-linter contract keeps it so).
"""
