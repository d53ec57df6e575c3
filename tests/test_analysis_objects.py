"""A3 objects over time on constructed canvases and label maps (answers known by hand)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xinc.analysis import run
from xinc.analysis.objects import (
    OTHER,
    UNLABELLED,
    normalise_per_neuron,
    objects_from_canvases,
    sample_neurons,
    things_stuff,
    variant_cells,
)
from xinc.analysis.registry import AnalysisContext
from xinc.data.categories import Category
from xinc.data.panoptic import PanopticClip, Segment
from xinc.report.plots import draw


def _ids(H=8, W=12):
    ids = torch.zeros(H, W, dtype=torch.int64)  # rows 0-1 unlabelled
    ids[2:5] = 11  # stuff "road_surface"
    ids[5:, :6] = 22  # thing "_car"
    ids[5:, 6:] = 33  # thing "person"
    return ids


SEGS = [Segment(11, 1, "road_surface", False, 0, (0, 0, 0, 0)), Segment(22, 2, "_car", True, 0, (0, 0, 0, 0)),
        Segment(33, 3, "person", True, 0, (0, 0, 0, 0))]


def _canvas(T=2):
    ids = _ids()
    maps = torch.zeros(T, 3, 8, 12)
    maps[:, 0] = -(ids == 22).float()  # neuron 0 lives only inside the car (signed: |C| counts)
    maps[:, 1] = 2.0  # neuron 1 is the same everywhere
    maps[0, 2] = (ids == 0).float() * 4  # neuron 2: unlabelled area in frame 0, the person in frame 1
    maps[1, 2] = (ids == 33).float() * 4
    return maps, ids


def test_neuron_inside_one_segment():
    maps, ids = _canvas()
    values, cells = objects_from_canvases(maps, [ids, ids], [SEGS, SEGS], chunk=2)
    names = [c.name for c in cells]
    assert names[:5] == [UNLABELLED, "road_surface", "_car", "person", OTHER]
    car = [i for i, c in enumerate(cells) if c.name == "_car"]
    rest = [i for i, c in enumerate(cells) if c.name in ("road_surface", "person", UNLABELLED)]
    assert np.allclose(values[0, car], 1.0) and np.allclose(values[0, rest], 0.0)
    other = [i for i, c in enumerate(cells) if c.kind == "other"]
    # the original's "other" = union of all segments: car area / labelled area
    assert np.allclose(values[0, other], (ids == 22).sum().item() / (ids != 0).sum().item())
    assert np.allclose(values[1], 2.0)
    areas = {c.name: c.area for c in cells[:4]}
    assert areas == {UNLABELLED: 24, "road_surface": 36, "_car": 18, "person": 18}


def test_normalisation_and_unlabelled_is_really_unlabelled():
    maps, ids = _canvas()
    values, cells = objects_from_canvases(maps, [ids, ids], [SEGS, SEGS])
    mask = variant_cells(cells, "linear")
    assert not any(c.kind == "other" for c, m in zip(cells, mask) if m)
    norm = normalise_per_neuron(values[:, mask])
    kept = [c for c, m in zip(cells, mask) if m]
    assert norm.min() >= 0 and norm.max() <= 1
    assert np.all(norm[1] == 0)  # a constant neuron has no preference
    unl = [i for i, c in enumerate(kept) if c.kind == "unlabelled"]
    assert norm[2, unl[0]] == 1.0 and norm[2, unl[1]] == 0.0  # frame 0 unlabelled area, frame 1 not
    ts = things_stuff(norm, kept)["summary"]
    assert ts["cells"] == {"things": 4, "stuff": 2, "unlabelled": 2}
    # neuron 0: things mean 0.5 (car 1, person 0) > stuff 0; neuron 2: things 0.25 > stuff 0 -> 2/3 prefer things
    assert ts["fraction_neurons_prefer_things"] == pytest.approx(2 / 3)
    faithful = variant_cells(cells, "paper")
    assert [c.kind for c, m in zip(cells, faithful) if m].count("other") == 2


def test_seeded_sampling_skips_dead_neurons():
    values = np.zeros((50, 4))
    values[::3] = 1.0
    a = sample_neurons(values, 5, seed=7)
    assert np.array_equal(a, sample_neurons(values, 5, seed=7)) and np.all(a % 3 == 0)
    assert not np.array_equal(a, sample_neurons(values, 5, seed=8))


def test_run_many_categories_with_underscores(tmp_path):
    H, W, T, n_cat = 12, 30, 2, 25
    ids = torch.zeros(H, W, dtype=torch.int64)
    segs, cats = [], {}
    for c in range(n_cat):  # 25 vertical stripes, one category each (more than any fixed palette)
        ids[:, c + 2] = 100 + c
        name = f"_cat_{c}_with_underscores" if c % 2 else f"cat_{c}"
        cats[c] = Category(c, name, c % 3 == 0)
        segs.append(Segment(100 + c, c, name, c % 3 == 0, H, (c + 2, 0, 1, H)))
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(T, 7, H, W, generator=g)
    img = torch.rand(T, 3, H, W, generator=g)
    clip = PanopticClip(frames=img, annotated=[0, 1], ids={0: ids, 1: ids}, segments={0: segs, 1: segs},
                        categories=cats, vanished=[], dataset="test", video="v")
    ctx = AnalysisContext(model=None, model_dir=tmp_path, layers=["blockX"], frames=[0, 1], images=img,
                          out=tmp_path, panoptic=clip, canvases={"blockX": maps}, mode="both", seed=3,
                          )
    res = run(ctx, ["a3"], {"a3": {"sample_neurons": 3}})["a3"]
    assert res.numbers["paper"]["blockX"]["num_cells"] == T * (n_cat + 1)  # segments + the union 'other'
    assert res.numbers["linear"]["blockX"]["num_cells"] == T * (n_cat + 1)  # segments + unlabelled
    assert len(res.numbers["linear"]["blockX"]["sampled_neurons"]) == 3
    figs = draw("a3", res, tmp_path)
    assert len(figs) == 4 and all(f.path.is_file() for f in figs)
    assert (tmp_path / "tables" / "a3_categories.csv").read_text().count("_cat_1_with_underscores") == 2


@pytest.mark.parametrize("T", [1, 2])
def test_title_says_one_frame_for_one_frame(tmp_path, T):
    """One frame (an FFN image): the title in results.json (the report's heading) does not say 'over time'."""
    import json

    ids = _ids()
    clip = PanopticClip(frames=torch.rand(T, 3, 8, 12), annotated=list(range(T)), ids=dict.fromkeys(range(T), ids),
                        segments=dict.fromkeys(range(T), SEGS),
                        categories={c: Category(c, n, c > 1) for c, n in ((1, "road_surface"), (2, "_car"),
                                                                          (3, "person"))},
                        vanished=[], dataset="test", video="v")
    ctx = AnalysisContext(model=None, model_dir=tmp_path, layers=["blockX"], frames=list(range(T)),
                          images=clip.frames, out=tmp_path, panoptic=clip, canvases={"blockX": _canvas(2)[0][:T]},
                          mode="paper", seed=0)
    res = run(ctx, ["a3"], {"a3": {"sample_neurons": 2}})["a3"]
    title = json.loads((tmp_path / "results.json").read_text())["a3"]["title"]
    if T == 1:
        assert res.title == title == "Contributions to objects in one frame"
    else:
        assert res.title is None and title == "Contributions to objects over time"
