"""bench/gpu_check.py without a GPU: the skip message, the budgeted report it keeps on disk, its table, the GPU-hours
arithmetic, its gpu_tests section on stand-in tests, and bench cases run small on CPU under the interpreter (so the
one GPU run checks the kernels, not this script). The GPU tests' own CPU runs are in tests/gpu/.
"""

import json
import multiprocessing
import os
import signal
import threading
import time

import pytest
import torch

from bench import check_report, gpu_check, gpu_measurements, pytest_section


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_without_cuda_it_says_why_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "r.json")]) == 0
    assert "skipped, nothing checked and no report written: no CUDA device is visible" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_it_refuses_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "TRITON_INTERPRET=1" in gpu_check.why_not_runnable()


def test_report_is_on_disk_after_every_case_and_budgets_skip_what_is_left(tmp_path):
    clock, path = FakeClock(), tmp_path / "out" / "report.json"
    check = check_report.Check(path, budget_s=100, clock=clock, meta={"device": "test"})

    def slow(seconds, ok):
        clock.now += seconds
        return {"ok": ok, "detail": f"took {seconds}", "value": 1.5}

    check.start_section("first", 30)
    check.case("passes", slow, 10, True)
    assert json.loads(path.read_text())["cases"][0]["status"] == "pass"  # written before the next case
    check.case("fails", slow, 25, False)
    check.case("past the section budget", slow, 1, True)
    check.start_section("second", 60)
    check.case("raises", lambda: 1 / 0)
    check.case("expected to overrun", slow, 1, True, expect_s=61)
    check.case("measures", slow, 70, None)
    check.case("past the whole budget", slow, 1, True)
    check.finish()
    report = json.loads(path.read_text())
    statuses = [(c["section"], c["name"], c["status"]) for c in report["cases"]]
    assert statuses == [
        ("first", "passes", "pass"),
        ("first", "fails", "FAIL"),
        ("first", "past the section budget", "skipped"),
        ("second", "raises", "error"),
        ("second", "expected to overrun", "skipped"),
        ("second", "measures", "measured"),
        ("second", "past the whole budget", "skipped"),
    ]
    assert "section first's time budget" in report["cases"][2]["detail"]
    assert "section second's time budget" in report["cases"][4]["detail"]
    assert "whole run's time budget" in report["cases"][6]["detail"]
    assert "ZeroDivisionError" in report["cases"][3]["detail"] and "1 / 0" in report["cases"][3]["traceback"]
    assert report["cases"][0]["value"] == 1.5 and report["cases"][1]["seconds"] == 25
    assert report["counts"] == {"pass": 1, "FAIL": 1, "skipped": 3, "error": 1, "measured": 1}
    assert report["status"] == "finished" and report["device"] == "test"
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # atomic: no temporary left


needs_alarm = pytest.mark.skipif(
    not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread(),
    reason="case deadlines use SIGALRM in the main thread",
)


def sleeps_through_exceptions(seconds):
    """A case whose code catches Exception (as the Triton guard does): the deadline must still stop it."""
    try:
        time.sleep(seconds)
    except Exception:
        return {"ok": True, "detail": "swallowed the deadline"}
    return {"ok": True}


@needs_alarm
def test_a_case_running_past_its_section_is_stopped_and_recorded_as_overrun(tmp_path):
    check = check_report.Check(tmp_path / "r.json", budget_s=100)
    check.start_section("slow", 0.5)
    started = time.monotonic()
    entry = check.case("sleeps", sleeps_through_exceptions, 30)
    assert time.monotonic() - started < 5
    assert entry["status"] == "overrun" and "section slow's time budget ran out" in entry["detail"]
    check.start_section("next", 10)
    assert check.case("runs after it", lambda: {"ok": True})["status"] == "pass"
    assert json.loads((tmp_path / "r.json").read_text())["cases"][0]["status"] == "overrun"


@needs_alarm
def test_a_bench_row_past_its_section_has_its_child_process_killed(tmp_path):
    from bench import fresh_process

    check = check_report.Check(tmp_path / "r.json", budget_s=100)
    check.start_section("bench_7b", 3)
    started = time.monotonic()
    entry = check.case("a 7B row", fresh_process.in_fresh_process, time.sleep, 60)
    assert entry["status"] == "overrun" and time.monotonic() - started < 15
    assert multiprocessing.active_children() == []  # killed and reaped, not left running on the GPU


def test_summary_prints_the_table_of_a_report_on_disk_even_one_cut_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # no GPU needed
    clock, path = FakeClock(), tmp_path / "r.json"
    check = check_report.Check(path, budget_s=100, clock=clock, meta={"device": "H200"})
    check.start_section("gpu_tests", 50)
    check.case("fine", lambda: {"ok": True, "detail": "bit-exact"})
    clock.now = 12.5
    check.case("broken", lambda: {"ok": False, "detail": "∇θ 0.5"})  # the run is killed here: no finish()
    capsys.readouterr()
    assert gpu_check.main(["--summary", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("FAIL") and "∇θ 0.5" in lines[2] and "bit-exact" in lines[3]
    assert lines[-1] == "gpu_check cut off (running at its last case) in 12.5 s on H200: 1 FAIL, 1 pass"
    assert gpu_check.main(["--summary", str(tmp_path / "missing.json")]) == 2
    assert "cannot read a report there" in capsys.readouterr().out


def test_summary_table_puts_failures_first_and_ends_with_the_counts():
    report = {
        "status": "finished",
        "elapsed_s": 12.5,
        "device": "H200",
        "counts": {"pass": 1, "FAIL": 1},
        "cases": [
            {"section": "a", "name": "fine", "status": "pass", "detail": "ok"},
            {"section": "b", "name": "broken " + "x" * 80, "status": "FAIL", "detail": "∇θ 0.5"},
        ],
    }
    lines = check_report.summary_table(report, width=100).splitlines()
    assert lines[2].startswith("FAIL") and "∇θ 0.5" in lines[2] and lines[3].startswith("pass")
    assert all(len(line) <= 100 for line in lines)
    assert lines[-1] == "gpu_check finished in 12.5 s on H200: 1 FAIL, 1 pass"


def test_glue_gpu_hours_follow_from_the_measured_step():
    hours = gpu_measurements.glue_gpu_hours(0.064, "roberta-base")  # 500 sequences/s
    assert hours["sequences_per_s"] == 500.0
    assert hours["gpu_h_per_method_seed"] == pytest.approx(7.6e6 / 500 / 3600, abs=0.01)
    assert hours["gpu_h_per_table"] == pytest.approx(45 * 7.6e6 / 500 / 3600, abs=0.1)


def test_default_report_goes_under_out_when_set(monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path))
    assert gpu_check.default_report_path() == tmp_path / "gpu_check.json"
    monkeypatch.delenv("OUT")
    assert gpu_check.default_report_path() == gpu_check.RESULTS_DIR / "gpu_check.json"
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--budget", "0"])


def test_main_runs_every_section_in_order_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "why_not_runnable", lambda: None)
    monkeypatch.setenv("TQDM_DISABLE", "1")  # main() sets it; restored after the test
    monkeypatch.setattr("torch.cuda.get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(
        gpu_check,
        "SECTION_RUNNERS",
        {
            name: (lambda check, name=name: check.case(f"{name} case", lambda: {"ok": name != "bench_7b"}))
            for name in gpu_check.SECTIONS
        },
    )
    assert gpu_check.main(["--out", str(tmp_path / "r.json"), "--budget", "60"]) == 1  # one case failed
    report = json.loads((tmp_path / "r.json").read_text())
    assert [c["section"] for c in report["cases"]] == list(gpu_check.SECTIONS)
    assert report["device"] == "Fake GPU" and report["triton_guard_fallback"] is None
    assert report["report"] == "r.json"  # outside the repository: its name, not this machine's path
    assert {"torch", "triton", "transformers", "peft", "python"} <= set(report["versions"])
    budgets = [report["sections"][name]["budget_s"] for name in gpu_check.SECTIONS]
    assert sum(budgets) == pytest.approx(60)
    out = capsys.readouterr().out
    assert "FAIL     bench_7b" in out and f"wrote {tmp_path / 'r.json'}" in out


def test_chosen_sections_share_the_whole_budget_in_proportion(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "why_not_runnable", lambda: None)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr("torch.cuda.get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(gpu_check, "SECTION_RUNNERS", {name: lambda check: None for name in gpu_check.SECTIONS})
    gpu_check.main(["--out", str(tmp_path / "r.json"), "--budget", "230", "--sections", "gpu_tests", "bench_7b"])
    sections = json.loads((tmp_path / "r.json").read_text())["sections"]
    share = 230 / (gpu_check.SECTIONS["gpu_tests"] + gpu_check.SECTIONS["bench_7b"])
    assert sections["bench_7b"]["budget_s"] == pytest.approx(gpu_check.SECTIONS["bench_7b"] * share)
    assert sum(section["budget_s"] for section in sections.values()) == pytest.approx(230)


def test_bench_methods_choose_the_7b_rows_and_the_profile_follows(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "why_not_runnable", lambda: None)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr("torch.cuda.get_device_name", lambda *a: "Fake GPU")
    measured = []
    monkeypatch.setattr(gpu_measurements, "case_bench_method", lambda method, rows: measured.append(method))
    monkeypatch.setattr(gpu_measurements, "case_profile", lambda: {"ok": None, "detail": "profiled"})
    gpu_check.main(
        ["--out", str(tmp_path / "r.json"), "--sections", "bench_7b", "--bench-methods", "lora", "gpart-triton"]
    )
    assert measured == ["lora", "gpart-triton"]
    names = [c["name"] for c in json.loads((tmp_path / "r.json").read_text())["cases"]]
    assert names == [
        "llama2-7b lora",
        "llama2-7b gpart-triton",
        "7B target: ≤ 1.10× LoRA, memory ≤ LoRA",
        "7B step profile: floor vs GPart Triton",
    ]
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--bench-methods", "qlora"])


def test_a_report_inside_the_repository_is_recorded_by_its_relative_path():
    assert gpu_check.shown_path(gpu_check.RESULTS_DIR / "gpu_check.json") == "bench/results/gpu_check.json"


def fake_row(step_s, peak):
    return {"status": "ok", "median_step_s": step_s, "peak_memory_gib": peak, "setup_s": 1.0}


def test_7b_rows_give_ratios_to_lora_and_the_target_verdict(monkeypatch):
    from bench import fresh_process

    measured = {"lora": fake_row(0.2, 26.0), "gpart-triton": fake_row(0.21, 25.0)}
    monkeypatch.setattr(fresh_process, "in_fresh_process", lambda function, method, *args: measured[method])
    rows = {}
    for method in ("lora", "gpart-triton"):
        gpu_measurements.case_bench_method(method, rows)
    assert gpu_measurements.case_bench_method("gpart-triton", rows)["ratio_to_lora"] == pytest.approx(1.05)
    assert gpu_measurements.case_target(rows)["ok"] is True
    rows["gpart-triton"] = fake_row(0.25, 25.0)  # 1.25× LoRA
    assert gpu_measurements.case_target(rows)["ok"] is False
    rows["gpart-triton"] = fake_row(0.2, 27.0)  # more memory than LoRA
    assert gpu_measurements.case_target(rows)["ok"] is False
    assert gpu_measurements.case_target({"lora": fake_row(0.2, 26.0)})["ok"] is None


# ------------------------------------------------------------------------- gpu_tests, on stand-in tests

STAND_IN_TESTS = """
import os
import time
from pathlib import Path

import pytest
import torch


@pytest.mark.gpu
def test_passes(record_property):
    record_property("detail", "bit-exact")


@pytest.mark.gpu
@pytest.mark.parametrize("device", [pytest.param("cuda", id="cuda")])
def test_fails(device):
    assert 1 == 2, "ids differ"


@pytest.mark.gpu
@pytest.mark.skip(reason="needs two GPUs")
def test_skips():
    pass


@pytest.mark.gpu
def test_sleeps():
    if os.environ.get("SLEEPING_TEST_PID"):
        Path(os.environ["SLEEPING_TEST_PID"]).write_text(str(os.getpid()))
        time.sleep(300)


@pytest.mark.gpu
def test_after_the_sleep():
    pass


def test_not_marked_gpu():
    raise AssertionError("deselected by -m gpu")
"""


def run_stand_ins(tmp_path, source, clock=time.monotonic):
    (tmp_path / "test_stand_in.py").write_text(source)
    check = check_report.Check(tmp_path / "r.json", budget_s=100, clock=clock)
    check.start_section("gpu_tests", 60)
    pytest_section.run_gpu_tests(check, [tmp_path / "test_stand_in.py"], poll_s=0.05)
    return [(c["name"], c["status"], c["detail"]) for c in json.loads((tmp_path / "r.json").read_text())["cases"]]


def test_gpu_tests_are_recorded_one_case_each_with_their_outcome(tmp_path, monkeypatch):
    monkeypatch.delenv("SLEEPING_TEST_PID", raising=False)
    cases = run_stand_ins(tmp_path, STAND_IN_TESTS)
    assert [(name, status) for name, status, _ in cases] == [
        ("passes", "pass"),
        ("fails", "FAIL"),
        ("skips", "skipped"),
        ("sleeps", "pass"),
        ("after_the_sleep", "pass"),
    ]
    details = {name: detail for name, _, detail in cases}
    assert details["passes"] == "bit-exact" and "ids differ" in details["fails"]
    assert details["skips"] == "needs two GPUs"
    report = json.loads((tmp_path / "r.json").read_text())
    assert "assert 1 == 2" in report["cases"][1]["traceback"]


def test_a_gpu_test_past_the_budget_is_killed_and_those_after_it_are_skipped(tmp_path, monkeypatch):
    pid_file = tmp_path / "sleeping.pid"
    monkeypatch.setenv("SLEEPING_TEST_PID", str(pid_file))
    started = time.monotonic()
    cases = run_stand_ins(tmp_path, STAND_IN_TESTS, clock=lambda: 1e9 if pid_file.exists() else 0.0)
    assert time.monotonic() - started < 120
    assert [(name, status) for name, status, _ in cases] == [
        ("passes", "pass"),
        ("fails", "FAIL"),
        ("skips", "skipped"),
        ("sleeps", "overrun"),
        ("after_the_sleep", "skipped"),
    ]
    assert "time budget ran out" in cases[3][2] and cases[4][2].startswith("not started:")
    with pytest.raises(ProcessLookupError):  # the child was killed and reaped, not left running on the GPU
        os.kill(int(pid_file.read_text()), 0)


@pytest.mark.parametrize(
    "source, detail",
    [
        ("import module_that_is_not_there\n", "could not collect the tests"),
        ("def test_not_marked_gpu():\n    pass\n", "exit code 5"),
    ],
)
def test_gpu_tests_that_cannot_run_are_an_error_not_a_silent_pass(tmp_path, source, detail):
    ((_, status, case_detail),) = run_stand_ins(tmp_path, source)
    assert status == "error" and case_detail.startswith(detail)


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the GPU tests would run, not skip")
def test_the_real_gpu_tests_are_collected_by_the_command_and_skip_here_saying_why(tmp_path):
    """tests/gpu through the section's own command (no conftest, compiled Triton): only `gpu` tests, none broken."""
    check = check_report.Check(tmp_path / "r.json", budget_s=300)
    check.start_section("gpu_tests", 300)
    pytest_section.gpu_tests(check)
    cases = json.loads((tmp_path / "r.json").read_text())["cases"]
    assert cases[0]["name"] == "auto_takes_triton_and_its_first_use_check_passes"
    assert {case["status"] for case in cases} == {"skipped"} and len(cases) > 1
    assert all("no CUDA device is visible" in case["detail"] for case in cases)
    assert not any("[cpu" in case["name"] for case in cases)  # the CPU variants carry no `gpu` mark


def test_the_gpu_test_names_drop_the_device_and_keep_their_parameters_in_the_table():
    name = pytest_section.case_name("tests/gpu/t.py::test_both_paths_agree_with_a_reference[cuda-float32-balanced]")
    assert name == "both_paths_agree_with_a_reference[float32-balanced]"
    assert pytest_section.case_name("tests/gpu/t.py::test_nan_reaches_the_output[cuda]") == "nan_reaches_the_output"
    longer = name.replace("reference", "reference_in_float64")
    assert check_report._shortened(longer, 43) == "both_paths_agree_with_a_…[float32-balanced]"


# ------------------------------------------------------------- bench cases, small, on CPU (interpreter)

pytest.importorskip("triton")


@pytest.fixture
def on_cpu(monkeypatch):
    from gpart import triton_ops

    assert triton_ops.interpreting()
    monkeypatch.setattr(gpu_measurements, "DEVICE", "cpu")


def test_a_peft_without_unilora_gives_a_skipped_row_with_its_reason_not_an_error(on_cpu, monkeypatch):
    """The real bench path (step_bench.run_method, in process): prepare's ImportError becomes a skipped row."""
    import peft

    from bench import fresh_process

    monkeypatch.delattr(peft, "UniLoraConfig")  # as in a PEFT release that predates Uni-LoRA
    monkeypatch.setattr(fresh_process, "in_fresh_process", lambda function, *args: function(*args))
    rows = {}
    result = gpu_measurements.case_bench_method("unilora", rows, steps=1, warmup=0, shape="tiny-llama")
    assert rows["unilora"]["status"] == "skipped"
    assert result["ok"] is None and result["detail"].startswith("skipped: cannot import name 'UniLoraConfig'")
    assert gpu_measurements.case_target(rows)["ok"] is None  # no LoRA or GPart row: no verdict, no crash


def test_the_step_profile_sorts_device_time_by_kind_per_method(on_cpu, monkeypatch):
    """The profile case on the tiny Llama on CPU (operations' self times stand in for kernels' device times)."""
    from bench import fresh_process, profiling

    monkeypatch.setattr(fresh_process, "in_fresh_process", lambda function, *args: function(*args))
    result = gpu_measurements.case_profile(("floor", "gpart-torch"), shape="tiny-llama", rows=5)
    profiles = result["profiles"]
    assert list(profiles) == ["floor", "gpart-torch"] and "floor:" in result["detail"]
    for found in profiles.values():
        assert set(found["by_kind_ms"]) == {"gpart", "matmul", "attention", "other"}
        assert found["by_kind_ms"]["matmul"] > 0
        assert sum(found["by_kind_ms"].values()) == pytest.approx(found["total_ms"], abs=0.01)
        times = [ms for _, _, ms in found["top"]]
        assert len(times) == 5 and times == sorted(times, reverse=True)
    assert profiling._kernel_kind("_reduce_kernel") == "gpart"
    assert profiling._kernel_kind("nvjet_tst_128x256_64x4_2x1_v_bz_coopB_TNT") == "matmul"
    assert profiling._kernel_kind("void at::native::vectorized_elementwise_kernel<4, ...>") == "other"
