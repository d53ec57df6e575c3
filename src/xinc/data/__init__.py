"""Data: images, videos, panoptic datasets, optical flow, synthetic scenes.

- `xinc.data.frames`: frames of an image, a frame folder or a video file; the one crop/resize pipeline.
- `xinc.data.panoptic`: Cityscapes-VPS and VIPSeg clips (`load_panoptic_clip`, `load_panoptic_frame`),
  any video without labels (`load_video_clip`), `PanopticClip`, `Segment`, `Category`.
- `xinc.data.flow`: `compute_flow` (OpenCV DIS / Farneback, cached), `.npy`/`.flo` IO, colour wheel.
- `xinc.data.synth`: `generate_synthetic`, a textured street scene with exact labels and flow in either layout.
"""
