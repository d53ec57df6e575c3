"""Contribution videos: data (`xinc.video.data`) is computed apart from drawing (`xinc.video.draw`) and
encoding (`xinc.video.encode`); `make_videos` writes them all."""

from xinc.video.config import VideoDirConfig, write_videos
from xinc.video.videos import VideoConfig, make_videos, write_video_dir

__all__ = ["VideoConfig", "VideoDirConfig", "make_videos", "write_video_dir", "write_videos"]
