"""The sending engine: timing (APScheduler), dispatch, transports, message rendering.

It imports no textual: the dashboard hosts it on a thread of its own.
"""
