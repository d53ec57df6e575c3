"""List options through the real CLI entry: `--option a b`, `--option a --option b` and mixes all keep every
value (tyro alone keeps only the last occurrence, silently)."""

from __future__ import annotations

import pytest

from xinc.cli.common import list_fields, merge_repeated, parse
from xinc.cli.main import main


@pytest.fixture
def seen(monkeypatch):
    """Capture the AnalyzeConfig `xinc analyze` parses (the analysis itself is not the point here)."""
    import xinc.analysis.runner as runner

    got = []
    monkeypatch.setattr(runner, "analyze", lambda cfg, command=None: got.append(cfg) or {"estimate": []})
    return got


@pytest.mark.parametrize("spelling", [
    ["--option", "a7.neurons=256", "a7.frames=2", "a2.topk=64"],
    ["--option", "a7.neurons=256", "--option", "a7.frames=2", "--option", "a2.topk=64"],
    ["--option", "a7.neurons=256", "a7.frames=2", "--no-progress", "--option", "a2.topk=64"],
    ["--option=a7.neurons=256", "--option", "a7.frames=2", "a2.topk=64"],
])
def test_analyze_keeps_every_option(tmp_path, seen, spelling):
    argv = ["analyze", str(tmp_path), "--out", str(tmp_path / "run"), *spelling]
    assert main(argv) == 0
    assert seen[0].option == ("a7.neurons=256", "a7.frames=2", "a2.topk=64")
    assert seen[0].model_dir == tmp_path


def test_a_repeated_option_is_checked_too(tmp_path, capsys):
    """Unmocked: the second --option's unknown name is the error (it used to vanish behind the last one)."""
    from xinc.models import FFN, FFNConfig, save_model

    save_model(FFN(FFNConfig(height=8, width=8, hidden=8, layers=2, num_features=4)), tmp_path / "m")
    argv = ["analyze", str(tmp_path / "m"), "--out", str(tmp_path / "run"), "--option", "a7.bogus=1",
            "--option", "a7.neurons=2", "--estimate-only", "--no-progress"]
    assert main(argv) == 2
    assert "bogus" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_which_list_options_add_up_and_which_override():
    """Lists of independent items (REPEATABLE) add up; architecture vectors keep the last occurrence, so a flag
    appended to a base command line overrides it (the import/train tests rely on that)."""
    import dataclasses
    import typing

    import xinc.train as tr
    from xinc.models.importers.config import NeRVImportConfig
    from xinc.video.config import VideoDirConfig

    assert list_fields(VideoDirConfig) == ("neuron_index", "extra_formats")
    cfg = parse(VideoDirConfig, ["M", "--out", "o", "--neuron-index", "head=0,5", "--extra-formats", "gif",
                                 "--neuron-index", "block3=7", "--extra-formats", "webp"], "xinc video")
    assert cfg.neuron_index == ("head=0,5", "block3=7") and cfg.extra_formats == ("gif", "webp")
    for cls in (tr.TrainNeRVConfig, NeRVImportConfig):  # every other list field of these: override on purpose
        hints = typing.get_type_hints(cls)
        lists = [f.name for f in dataclasses.fields(cls) if "list[" in str(hints[f.name])]
        assert lists and not set(lists) & set(list_fields(cls))
    cfg = parse(tr.TrainNeRVConfig, ["--video", "v", "--out", "o", "--strides", "4", "2", "2", "--strides", "2",
                                     "2"], "xinc train nerv")
    assert cfg.strides == [2, 2]


def test_merge_repeated_keeps_other_tokens_in_place():
    argv = ["M", "--option", "a", "--out", "o", "--extra-formats", "gif", "--option", "b", "c",
            "--extra_formats", "webp", "--flag"]
    assert merge_repeated(argv, ("option", "extra_formats")) == [
        "M", "--option", "a", "b", "c", "--out", "o", "--extra-formats", "gif", "webp", "--flag"]
