"""The canvas engine: contribution rules per layer kind, chunked computation, streaming reductions."""
