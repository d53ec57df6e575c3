"""xinc: explain implicit neural representations through their implicit neural canvases."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy top-level API: `xinc.explain` / `xinc.explain_stream` (imports torch on first use only)."""
    if name in ("explain", "explain_stream"):
        from xinc.canvas import explainer as ex

        return getattr(ex, name)
    raise AttributeError(f"module 'xinc' has no attribute {name!r}")
