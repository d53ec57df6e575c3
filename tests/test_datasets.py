"""The dataset registry: one reader per module, the single source of dataset names, sizes and first frames."""

from __future__ import annotations

import dataclasses

import pytest

from xinc.data import datasets
from xinc.data.datasets import DATASETS, dataset_names, get_dataset, register_dataset
from xinc.data.panoptic import list_videos, load_panoptic_clip
from xinc.data.synth import NATIVE_SIZE, generate_synthetic
from xinc.errors import XincError


def test_registered_readers_and_their_facts():
    assert dataset_names()[:2] == ("cityscapes-vps", "vipseg")
    city, vip = get_dataset("cityscapes-vps"), get_dataset("vipseg")
    assert (city.first_annotated, city.native_size, city.clip_length, len(city.categories)) == (4, (1024, 2048), 30,
                                                                                              19)
    assert (vip.first_annotated, vip.native_size, len(vip.categories)) == (0, (720, 1280), 124)
    assert NATIVE_SIZE == {"cityscapes-vps": (1024, 2048), "vipseg": (720, 1280)}  # the generator reads the registry
    with pytest.raises(XincError, match="choose one of cityscapes-vps, vipseg"):
        get_dataset("kitti-step")


def test_a_new_dataset_is_one_registration(tmp_path):
    """A reader registered at run time is listed and loads clips through the shared panoptic code."""
    root = tmp_path / "data"
    generate_synthetic(root, "cityscapes-vps", seed=3, frames=5, size=(32, 64), flo=False)
    base = get_dataset("cityscapes-vps")
    register_dataset(dataclasses.replace(base, name="my-city", title="my copy"))
    try:
        assert "my-city" in dataset_names()
        assert list_videos("my-city", root) == list_videos("cityscapes-vps", root)
        clip = load_panoptic_clip("my-city", root, "0001", size=(16, 32))
        ref = load_panoptic_clip("cityscapes-vps", root, "0001", size=(16, 32))
        assert clip.dataset == "my-city" and clip.annotated == ref.annotated == [4]
        assert (clip.frames == ref.frames).all()
    finally:
        DATASETS.pop("my-city", None)
    assert "my-city" not in datasets.discover()
