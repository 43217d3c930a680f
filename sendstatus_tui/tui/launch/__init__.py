"""How the command line opens the dashboard: with or without an engine, or on the demo."""
