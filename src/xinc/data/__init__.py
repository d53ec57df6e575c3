"""Data: images, videos, panoptic datasets, optical flow, synthetic scenes."""
