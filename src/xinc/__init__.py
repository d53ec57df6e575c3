"""xinc: explain implicit neural representations through their implicit neural canvases."""

__version__ = "0.1.0"
