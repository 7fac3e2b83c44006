"""experiments/report/figures.py via `make tables`: non-empty PNGs, score vs d only when a sweep over d exists."""

from __future__ import annotations

import matplotlib.image
import numpy as np
from test_tables_fixtures import make_record, write_record

from experiments.report import tables


def fixture(runs, sweep: bool) -> None:
    for seed, score in enumerate([0.94, 0.95, 0.96]):
        write_record(runs, make_record("LoRA", "sst2", seed, score))
    for d in (11_520, 23_040, 46_080) if sweep else (23_040,):
        for seed, score in enumerate([0.92, 0.93]):
            write_record(runs, make_record("GPart", "sst2", seed, score + d / 1e7, trainable_params=d))


def assert_real_png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert np.std(pixels[..., :3]) > 0.01, "the image is blank"


def test_figures_are_non_empty_pngs_and_the_d_sweep_needs_several_d(tmp_path):
    fixture(tmp_path / "sweep" / "runs", sweep=True)
    assert (
        tables.main(["--runs", str(tmp_path / "sweep" / "runs"), "--out", str(tmp_path / "sweep"), "--only-with-runs"])
        == 0
    )
    figures = tmp_path / "sweep" / "figures"
    assert sorted(p.name for p in figures.glob("*.png")) == [
        "glue-roberta-base_gpart_score_vs_d.png",
        "glue-roberta-base_score_vs_params.png",
    ]
    for path in figures.glob("*.png"):
        assert_real_png(path)

    fixture(tmp_path / "single" / "runs", sweep=False)
    assert (
        tables.main(
            ["--runs", str(tmp_path / "single" / "runs"), "--out", str(tmp_path / "single"), "--only-with-runs"]
        )
        == 0
    )
    assert [p.name for p in (tmp_path / "single" / "figures").glob("*.png")] == [
        "glue-roberta-base_score_vs_params.png"
    ]
