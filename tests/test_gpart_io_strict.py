"""Loading an adapter is strict: the whole head must be in the file, nothing but θ and the head may be written, θ is
a finite floating tensor, a refused load leaves the model exactly as it was, and a changed byte is caught."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from test_authors_format import AUTHORS_DIR
from test_gpart_golden import CASES, base_model
from test_gpart_io import tiny_roberta, trained_adapter

from gpart import load_adapter
from gpart.io import CHECKSUM_KEY, WEIGHTS_NAME


def rewrite(folder, change, keep_checksum=False):
    """Rewrite the weights file with `change(tensors)` applied (and, unless asked, without a checksum)."""
    path = folder / WEIGHTS_NAME
    with safe_open(str(path), "pt") as handle:
        metadata = dict(handle.metadata() or {})
    tensors = load_file(path)
    change(tensors)
    if not keep_checksum:
        metadata.pop(CHECKSUM_KEY, None)
    save_file(tensors, path, metadata=metadata)


def state(model) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "modules": [(n, type(m).__name__) for n, m in model.named_modules()],
    }


def assert_unchanged(model, before):
    after = state(model)
    assert after["modules"] == before["modules"] and after["flags"] == before["flags"]
    assert after["params"].keys() == before["params"].keys()
    assert all(torch.equal(after["params"][n], before["params"][n]) for n in before["params"])


def test_a_head_missing_from_our_file_is_refused(tmp_path):
    trained_adapter(tmp_path)
    rewrite(tmp_path / "adapter", lambda t: t.pop("trainable.classifier.out_proj.weight"))
    with pytest.raises(
        ValueError,
        match=r"lacks 1 head tensors of trainable_modules=\['classifier'\] .*"
        r"classifier.out_proj.weight.*random head",
    ):
        load_adapter(tiny_roberta(), tmp_path / "adapter")


def test_a_head_missing_from_the_authors_file_is_refused(tmp_path):
    shutil.copytree(AUTHORS_DIR, tmp_path / "adapter")
    rewrite(tmp_path / "adapter", lambda t: [t.pop(k) for k in list(t) if "classifier" in k])
    with pytest.raises(ValueError, match=r"lacks 4 head tensors of trainable_modules=\['classifier'\]"):
        load_adapter(base_model(CASES["adapter-with-head"]), tmp_path / "adapter")


@pytest.mark.parametrize(
    "name",
    [
        "roberta.embeddings.word_embeddings.weight",  # a frozen base weight
        "roberta.encoder.layer.0.attention.self.query.weight",
    ],
)  # W0 of an adapted layer
def test_a_key_outside_the_trainable_modules_is_refused_and_nothing_changes(tmp_path, name):
    trained_adapter(tmp_path)
    model = tiny_roberta()
    shape = dict(model.named_parameters())[name].shape
    rewrite(tmp_path / "adapter", lambda t: t.update({f"trainable.{name}": torch.full(shape, 7.0)}))
    before = state(model)
    with pytest.raises(
        ValueError,
        match=rf"holds \['trainable.{name}'\], which are not parameters of its "
        r"trainable_modules=\['classifier'\]",
    ):
        load_adapter(model, tmp_path / "adapter")
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    "bad,message",
    [
        (torch.arange(50), "dtype torch.int64; expected a floating-point tensor"),
        (torch.ones(50, dtype=torch.bool), "dtype torch.bool; expected a floating-point tensor"),
        (torch.tensor([float("nan")] + [0.0] * 49), "1 non-finite values"),
        (torch.tensor([float("inf")] * 2 + [0.0] * 48), "2 non-finite values"),
    ],
)
def test_theta_must_be_a_finite_float_tensor(tmp_path, bad, message):
    trained_adapter(tmp_path)
    rewrite(tmp_path / "adapter", lambda t: t.update(theta=bad))
    model = tiny_roberta()
    before = state(model)
    with pytest.raises(ValueError, match=message):
        load_adapter(model, tmp_path / "adapter")
    assert_unchanged(model, before)


def test_an_integer_theta_in_the_authors_file_is_refused(tmp_path):
    shutil.copytree(AUTHORS_DIR, tmp_path / "adapter")
    rewrite(tmp_path / "adapter", lambda t: t.update({"base_model.gpart_theta_d": torch.arange(150)}))
    with pytest.raises(ValueError, match="dtype torch.int64"):
        load_adapter(base_model(CASES["adapter-with-head"]), tmp_path / "adapter")


def test_a_load_refused_after_applying_the_adapter_leaves_the_model_as_it_was(tmp_path):
    trained_adapter(tmp_path)
    rewrite(tmp_path / "adapter", lambda t: t.update({"trainable.classifier.dense.weight": torch.zeros(3, 3)}))
    model = tiny_roberta()
    before = state(model)
    with pytest.raises(ValueError, match="classifier.dense.weight has shape"):
        load_adapter(model, tmp_path / "adapter")
    assert_unchanged(model, before)
    assert not hasattr(model, "gpart_adapter")


def test_a_flipped_byte_in_theta_is_caught_by_the_checksum(tmp_path):
    trained_adapter(tmp_path)
    path = tmp_path / "adapter" / WEIGHTS_NAME
    with safe_open(str(path), "pt") as handle:
        assert len(handle.metadata()[CHECKSUM_KEY]) == 64
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # the last tensor's bytes (safetensors orders data by key: θ is after the head)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"do not match the checksum .*{CHECKSUM_KEY}.*corrupt"):
        load_adapter(tiny_roberta(), tmp_path / "adapter")


def test_files_without_a_checksum_still_load(tmp_path):
    model = trained_adapter(tmp_path)
    rewrite(tmp_path / "adapter", lambda t: None)
    loaded = load_adapter(tiny_roberta(), tmp_path / "adapter")
    assert torch.equal(loaded.gpart_adapter.theta, model.gpart_adapter.theta)
    load_adapter(base_model(CASES["adapter-with-head"]), AUTHORS_DIR)  # theirs carry none


def test_adapter_files_are_readable_like_records(tmp_path):
    trained_adapter(tmp_path)
    modes = {p.name: os.stat(p).st_mode & 0o777 for p in (tmp_path / "adapter").iterdir()}
    assert modes == {"adapter_config.json": 0o644, WEIGHTS_NAME: 0o644}, modes
    json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())


def test_equal_adapters_saved_by_two_processes_are_equal_files(tmp_path):
    """The safetensors metadata (format, checksum) is written in a fixed order, not a hash map's."""
    import subprocess
    import sys

    script = (
        "import sys; sys.path.insert(0, 'tests'); from pathlib import Path; "
        "from test_gpart_io import trained_adapter; trained_adapter(Path(sys.argv[1]))"
    )
    for name in ("a", "b", "c"):
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / name)],
            check=True,
            timeout=300,
            cwd=Path(__file__).resolve().parents[1],
        )
    files = {(tmp_path / name / "adapter" / WEIGHTS_NAME).read_bytes() for name in ("a", "b", "c")}
    assert len(files) == 1
