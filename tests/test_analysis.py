"""Properties of the analyses: GPart's update map is an isometry (σ = 1, or √n_j unnormalised), LoRA's is rank-
deficient at B = 0 and has the bilinear gauge's rank elsewhere, J and Jᵀ are adjoint, the landscape recovers a
quadratic's curvature, and `python -m experiments.analysis` writes figure + data + command from real run records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from transformers import RobertaConfig, RobertaForSequenceClassification

from experiments.analysis import landscape
from experiments.analysis.__main__ import main as analysis_main
from experiments.analysis.update_map import (
    UpdateMap,
    gram_singular_values,
    lanczos_singular_values,
    measure,
    unit_directions,
)
from gpart import GPartConfig, apply_gpart, find_adapter

HIDDEN, LAYERS = 16, 2  # q,v adapted: N = 2 * 2 * 16 * 16 = 1024


def tiny_roberta() -> nn.Module:
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=50,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=20,
        num_labels=2,
    )
    return RobertaForSequenceClassification(config).double()


def gpart_model(d: int, isometric: bool = True, bias: str = "none") -> nn.Module:
    model = apply_gpart(
        tiny_roberta(),
        GPartConfig(
            d=d, target_modules=["query", "value"], isometric=isometric, bias=bias, trainable_modules=["classifier"]
        ),
    )
    with torch.no_grad():
        find_adapter(model).theta.normal_(generator=torch.Generator().manual_seed(1))
    return model.double()


def lora_model(rank: int, trained: bool) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_roberta(),
        LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["query", "value"], modules_to_save=["classifier"]),
    )
    if trained:
        generator = torch.Generator().manual_seed(2)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return model.double()


def test_gpart_singular_values_are_exactly_one():
    update_map = UpdateMap(gpart_model(d=32), head_modules=["classifier"])
    assert update_map.size == 32 and update_map.output_size == 4 * (HIDDEN * HIDDEN + HIDDEN)
    sigma = gram_singular_values(update_map)
    np.testing.assert_allclose(sigma, np.ones(32), atol=1e-12)


def test_gpart_with_partitioned_bias_is_still_an_isometry():
    sigma = gram_singular_values(UpdateMap(gpart_model(d=24, bias="partitioned"), head_modules=["classifier"]))
    np.testing.assert_allclose(sigma, np.ones(24), atol=1e-12)


def test_unnormalised_gpart_has_singular_values_sqrt_group_sizes():
    model = gpart_model(d=32, isometric=False)
    counts = find_adapter(model).partition.counts.double().numpy()
    sigma = gram_singular_values(UpdateMap(model, head_modules=["classifier"]))
    np.testing.assert_allclose(np.sort(sigma), np.sort(np.sqrt(counts)), rtol=1e-12)
    assert len(set(np.round(sigma, 6))) > 1  # the group sizes differ, so this is not an isometry


def test_lora_at_init_is_rank_deficient_in_the_a_directions():
    model = lora_model(rank=1, trained=False)
    update_map = UpdateMap(model, head_modules=["classifier"])
    a_params = sum(p.numel() for n, p in model.named_parameters() if "lora_A" in n)
    result = measure(update_map, exact_limit=10_000, directions=16)
    assert result.exact and update_map.size == 2 * a_params
    assert result.rank() == update_map.size - a_params  # every A direction is in the kernel
    assert result.condition == float("inf")
    assert (result.gains < 1.0).all() and result.gains.min() > 0  # directions mixing A and B lose their A part


def test_trained_lora_has_the_rank_of_a_bilinear_map_with_its_gauge_freedom():
    rank, modules = 1, 2 * LAYERS
    update_map = UpdateMap(lora_model(rank=rank, trained=True), head_modules=["classifier"])
    result = measure(update_map, exact_limit=10_000, directions=4)
    # (A, B) -> (G A, B G⁻¹) leaves B A unchanged: r² directions per module are lost, no more.
    assert result.rank() == modules * ((HIDDEN + HIDDEN) * rank - rank * rank)


def test_jvp_and_vjp_are_adjoint():
    update_map = UpdateMap(lora_model(rank=2, trained=True), head_modules=["classifier"])
    like = update_map.params[0]
    v = unit_directions(update_map.size, 1, seed=3, like=like)[0]
    u = unit_directions(update_map.output_size, 1, seed=4, like=like)[0]
    left, right = float(u @ update_map.jvp(v)), float(update_map.vjp(u) @ v)
    assert left == pytest.approx(right, rel=1e-10, abs=1e-14)


def test_lanczos_recovers_the_extreme_singular_values():
    update_map = UpdateMap(lora_model(rank=1, trained=True), head_modules=["classifier"])
    exact = gram_singular_values(update_map)
    estimate = lanczos_singular_values(update_map, steps=update_map.size)
    assert estimate.max() == pytest.approx(exact.max(), rel=1e-8)
    assert estimate.min() == pytest.approx(exact.min(), abs=1e-6 * exact.max())
    gpart = lanczos_singular_values(UpdateMap(gpart_model(d=64), head_modules=["classifier"]), steps=32)
    np.testing.assert_allclose(gpart, 1.0, atol=1e-10)  # JᵀJ = I: an invariant subspace at the first step


class QuinticAdapter(nn.Module):
    """ΔW = a⁵ M: not of degree ≤ 4, so the five-point stencil would be inexact."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.base_layer = base
        self.a = nn.Parameter(torch.tensor(0.7, dtype=torch.float64))
        self.register_buffer("direction", torch.randn(base.out_features, base.in_features, dtype=torch.float64))

    def forward(self, x):
        return self.base_layer(x) + x @ (self.a**5 * self.direction).T


def test_a_map_of_higher_degree_is_refused():
    model = nn.Module()
    model.layer = QuinticAdapter(nn.Linear(4, 3).double().requires_grad_(False))
    with pytest.raises(ValueError, match="not of degree ≤ 4"):
        UpdateMap(model).check_degree()


def test_a_model_without_adapter_layers_is_refused():
    with pytest.raises(ValueError, match="no adapter-wrapped linear layer"):
        UpdateMap(tiny_roberta())


def test_filter_normalisation_gives_each_row_its_rows_norm():
    point = [torch.randn(5, 7, dtype=torch.float64), torch.randn(9, dtype=torch.float64)]
    first, _ = landscape.random_directions(point, seed=0)
    torch.testing.assert_close(first[0].norm(dim=1), point[0].norm(dim=1))
    torch.testing.assert_close(first[1].norm(), point[1].norm())


def test_landscape_of_a_quadratic_recovers_its_curvature():
    generator = torch.Generator().manual_seed(5)
    centre = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    root = torch.randn(12, 12, generator=generator, dtype=torch.float64)
    hessian = root @ root.T + 0.1 * torch.eye(12, dtype=torch.float64)
    param = nn.Parameter(centre.clone())

    def loss():
        offset = (param - centre).reshape(-1)
        return 0.5 * offset @ hessian @ offset + 0.3

    first, second = landscape.random_directions([centre], seed=6)
    grid = np.linspace(-1.0, 1.0, 5)
    surface = landscape.loss_surface(loss, [param], first, second, grid, grid)
    d1, d2 = first[0].reshape(-1), second[0].reshape(-1)
    assert surface[2, 2] == pytest.approx(0.3)
    along_a, along_b = landscape.centre_curvature(surface, grid, grid)
    assert along_a == pytest.approx(float(d1 @ hessian @ d1), rel=1e-10)
    assert along_b == pytest.approx(float(d2 @ hessian @ d2), rel=1e-10)
    expected = 0.5 * float((grid[4] * d1 + grid[0] * d2) @ hessian @ (grid[4] * d1 + grid[0] * d2)) + 0.3
    assert surface[0, 4] == pytest.approx(expected, rel=1e-12)  # row β = -1, column α = +1
    torch.testing.assert_close(param.detach(), centre)  # the trained point is restored


def test_bad_arguments_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        analysis_main(["--runs", str(tmp_path), "--out", str(tmp_path), "--grid", "4"])
    assert "--grid must be an odd integer >= 3" in capsys.readouterr().err
    assert analysis_main(["--runs", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert analysis_main(["--runs", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no finished run with a saved adapter" in capsys.readouterr().err


def test_cli_on_real_runs_writes_figures_data_and_command(compose, glue_dir, tmp_path):
    from experiments import run as runner

    common = [
        "model=tiny-roberta",
        "task=glue/sst2",
        f"task.data_dir={glue_dir}",
        "task.train_subset=48",
        "task.validation_min_rows=8",
        "task.test_subset=16",
        "task.max_length=16",
        "trainer.epochs=1",
        "trainer.batch_size=16",
        "trainer.save_checkpoints=false",
        f"paths.root={tmp_path}",
        "logger=none",
    ]
    runner.run(compose(["method=gpart", "method.config.d=64", *common]))
    runner.run(compose(["method=unilora", "method.config.theta_d_length=64", *common]))
    runner.run(compose(["method=full", *common]))  # no adapter map: skipped, not a crash
    out = tmp_path / "analysis"
    assert (
        analysis_main(
            [
                "--runs",
                str(tmp_path / "runs"),
                "--out",
                str(out),
                "--directions",
                "8",
                "--grid",
                "3",
                "--batches",
                "1",
                "--batch-size",
                "8",
                "--lanczos-steps",
                "8",
                "--exact-limit",
                "64",
            ]
        )
        == 0
    )
    for name in ("distortion-tiny-roberta-sst2", "landscape-tiny-roberta-sst2", "theta-tiny-roberta-sst2"):
        for suffix in (".png", ".csv", ".cmd.txt"):
            assert (out / f"{name}{suffix}").stat().st_size > 0, name + suffix
        assert "--grid 3" in (out / f"{name}.cmd.txt").read_text()
    summary = pd.read_csv(out / "distortion-tiny-roberta-sst2.csv").set_index(["label", "point"])
    assert set(summary.index.get_level_values("label")) == {"GPart", "Uni-LoRA"}
    assert summary.loc[("GPart", "trained"), "condition"] == pytest.approx(1.0, abs=1e-6)  # float32 1/sqrt(n_j)
    assert summary.loc[("GPart", "init"), "exact"]
    assert summary.loc[("Uni-LoRA", "trained"), "condition"] > 1.5  # Uni-LoRA is not end-to-end isometric
    surface = pd.read_csv(out / "landscape-tiny-roberta-sst2.csv")
    assert set(surface["label"]) == {"GPart", "Uni-LoRA"} and len(surface) == 2 * 9
    thetas = pd.read_csv(out / "theta-tiny-roberta-sst2.csv").set_index("label")
    assert thetas.loc["GPart", "size"] == 64 and thetas.loc["GPart", "std"] > 0


def test_tied_lora_a_degree_four_map_is_measured_exactly():
    import baselines

    model = baselines.apply_tied_lora(tiny_roberta(), ["query", "value"], r=2)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # a generic point: every factor non-zero
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator, dtype=param.dtype))
    model.classifier.requires_grad_(False)
    update_map = UpdateMap(model.double())
    assert update_map.check_degree() < 1e-8
    v = unit_directions(update_map.size, 1, seed=8, like=update_map.params[0])[0]
    u = unit_directions(update_map.output_size, 1, seed=9, like=update_map.params[0])[0]
    assert float(u @ update_map.jvp(v)) == pytest.approx(float(update_map.vjp(u) @ v), rel=1e-9)


def test_landscape_runs_are_each_methods_main_budget_and_labels_name_a_variant_once():
    """In the CPU study GPart and Uni-LoRA also ran at the d sweep's ends (3 seeds each); the landscape compares them
    at the main d (5 seeds), and a record already named `GPart (balanced)` is not tagged twice."""
    from experiments.analysis.runs import Run, main_budget

    def run(method, params, seed, options=None):
        record = {
            "method": method,
            "model": "minilm-l6",
            "task": "sst2",
            "trainable_params": params,
            "seed": seed,
            "config": {"method": {"config": options or {}}},
        }
        return Run(record, None)

    runs = (
        [
            run("GPart", d, s)
            for d, seeds in ((288, (1, 2, 3)), (2880, (1, 2, 3, 4, 5)), (28800, (1, 2, 3)))
            for s in seeds
        ]
        + [run("Uni-LoRA", 28800, s) for s in (2, 3)]
        + [run("Uni-LoRA", 2880, 3)]
    )
    chosen = {r.label: (r.record["trainable_params"], r.record["seed"]) for r in main_budget(runs)}
    assert chosen == {"GPart": (2880, 1), "Uni-LoRA": (28800, 2)}
    assert run("GPart (balanced)", 2880, 1, {"assignment": "balanced"}).label == "GPart (balanced)"
    assert run("GPart", 2880, 1, {"isometric": False}).label == "GPart (non-isometric)"


def test_a_records_portable_paths_are_made_local_again(tmp_path, monkeypatch):
    """Records keep `<shared-data>/glue` (experiments/runner/portable.py); rebuilding a run's model must find the data here."""
    import experiments
    from experiments.analysis.runs import localised

    config = {"task": {"data_dir": "<shared-data>/glue", "key": "sst2"}, "paths": {"root": "results/mini"}}
    assert localised(config)["task"]["data_dir"] == str(experiments.shared_data_dir()) + "/glue"
    monkeypatch.setattr(experiments, "shared_data_dir", lambda: tmp_path / "absent")
    assert localised(config, glue_dir="/data/glue")["task"]["data_dir"] == "/data/glue"
    assert localised(config)["paths"] == {"root": "results/mini"}
