"""Analyses of canvases, one module per question (A1-A6 of the paper, plus corrected forms)."""
