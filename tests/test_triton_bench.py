"""bench/step_bench.py on a tiny model, in process: what each method trains, skips, ratios and the JSON it writes.

No timing is asserted (house rule: speed claims come from the benchmark's side-by-side output, not from tests).
"""

import json

import pytest

from bench import profiling, step_bench, workload

TINY = workload.SHAPES["tiny"]


def run(method):
    return step_bench.run_method(method, TINY, "cpu", steps=2, warmup=1, threads=1)


def test_floor_trains_exactly_the_adapted_weights_and_the_head():
    model = workload.build_model(TINY, "cpu")
    expected = sum(
        p.numel()
        for n, m in model.named_modules()
        for p in m.parameters()
        if n.endswith((".query", ".value", ".classifier"))
    )
    result = run("floor")
    assert result["status"] == "ok" and result["trainable_params"] == expected


def test_gpart_trains_d_plus_head_and_triton_is_skipped_on_cpu_with_a_reason():
    model = workload.build_model(TINY, "cpu")
    head = sum(p.numel() for n, p in model.named_parameters() if n.startswith("classifier."))
    assert run("gpart-torch")["trainable_params"] == TINY["d"] + head
    skipped = run("gpart-triton")
    assert skipped["status"] == "skipped" and "CUDA" in skipped["note"]


def test_table_ratios_are_to_lora_and_json_is_written(tmp_path):
    results = [run("lora"), run("gpart-torch"), run("gpart-triton")]
    text = step_bench.table(results, "cpu")
    lora, gpart, _ = results
    assert lora["ratio_to_lora"] == 1.0
    assert gpart["ratio_to_lora"] == pytest.approx(gpart["median_step_s"] / lora["median_step_s"])
    assert "skipped" in text and all(r["peak_memory_gib"] > 0 for r in (lora, gpart))
    path = tmp_path / "out.json"
    step_bench.write_json({"results": results}, path)
    assert json.loads(path.read_text())["results"][1]["method"] == "gpart-torch"
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_arguments_are_refused_with_the_value():
    with pytest.raises(SystemExit):
        step_bench.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        step_bench.parse_args(["--shape", "gpt-5"])


def test_the_llama_code_path_runs_in_bfloat16_with_qkvo_targets():
    """The GPU command's code path (causal LM, q,k,v,o, bf16), at toy size on CPU."""
    shape = workload.SHAPES["tiny-llama"]
    floor = step_bench.run_method("floor", shape, "cpu", steps=1, warmup=0, threads=1)
    gpart = step_bench.run_method("gpart-torch", shape, "cpu", steps=1, warmup=0, threads=1)
    assert floor["trainable_params"] == 2 * 4 * 64 * 64  # 2 layers × q,k,v,o of 64×64, nothing else
    assert gpart["trainable_params"] == shape["d"] and gpart["final_loss"] > 0


def test_the_id_cache_method_trains_the_same_parameters_and_removes_hashing_from_later_steps(monkeypatch):
    label = profiling._label_gpart_sections
    monkeypatch.setattr(profiling, "_label_gpart_sections", lambda: label(patch=monkeypatch.setattr))
    assert run("gpart-torch-cache")["trainable_params"] == run("gpart-torch")["trainable_params"]
    report = profiling.profile_steps(["gpart-torch", "gpart-torch-cache"], TINY, "cpu", threads=1, rows=40)
    stateless, cached = report.split("--- gpart-torch-cache")
    assert "gpart: hash group ids" in stateless and "gpart: ΔW = gather of θ" in stateless
    assert "gpart: hash group ids" not in cached, "the profiled step follows a warm-up step that filled the cache"
    assert "gpart: ΔW = gather of θ" in cached
