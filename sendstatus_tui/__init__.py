"""sendstatus: a terminal Send Status console and the sending engine behind it."""

__version__ = "0.1.0"
