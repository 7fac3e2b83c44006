"""The distribution is the library alone: the wheel holds gpart only and needs torch, numpy and safetensors. In a new
virtual environment with nothing else, it installs offline and applies GPart; with the `peft` extra, stock PEFT
trains, saves, reloads (ours and the authors' adapters) and merges GPart with apply_gpart's outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from test_gpart_golden import GOLDEN

REPO = Path(__file__).resolve().parents[1]
SUITE_MODULES = ("peft", "transformers", "hydra", "wandb", "experiments", "datasets", "pandas")


def build_wheel(out: Path) -> Path:
    """The wheel built from what the distribution reads (pyproject.toml, README.md, gpart/), copied out of the
    checkout so that the build leaves nothing in it."""
    source = out / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "gpart", source / "gpart", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("gpart-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def metadata(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(name).decode().splitlines()


def test_the_wheel_holds_gpart_only_and_requires_torch_numpy_safetensors(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {name.split("/")[0] for name in names} == {"gpart", wheel.name.split("-py3")[0] + ".dist-info"}
    assert {"gpart/__init__.py", "gpart/peft.py", "gpart/triton_ops.py"} <= set(names)
    requires = [line.removeprefix("Requires-Dist: ") for line in metadata(wheel) if line.startswith("Requires-Dist:")]
    base = {req.split(">")[0].split("<")[0].split("=")[0].strip() for req in requires if "extra ==" not in req}
    assert base == {"torch", "numpy", "safetensors"}
    assert [req for req in requires if req.endswith('extra == "peft"')] == ['peft>=0.21; extra == "peft"']
    assert [req for req in requires if req.endswith('extra == "triton"')] == ['triton>=3.0; extra == "triton"']


def test_importing_the_library_imports_nothing_of_the_suite_or_peft():
    script = f"import sys, gpart; print(sorted(m for m in {SUITE_MODULES!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def local_package_sources() -> tuple[list[str], list[str]]:
    """The indexes and find-links pip is configured with here that are on this machine (file:// or folders)."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    indexes, links = [], []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        for item in value.strip().strip("'\"").split():
            if key.endswith("index-url") and item.startswith("file://") and item not in indexes:
                indexes.append(item)
            elif key.endswith("find-links") and Path(item.removeprefix("file://")).is_dir() and item not in links:
                links.append(item)
    return indexes, links


def offline_torch(links: list[str]) -> str:
    """A CPU build of torch from a local folder when there is one (the CUDA build's cuda-bindings is on no local
    source here), else the running torch's version, to be found in the local indexes."""
    import torch

    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    cpu = sorted(p for link in links for p in Path(link.removeprefix("file://")).glob(f"torch-*+cpu-{tag}-*.whl"))
    return str(cpu[-1]) if cpu else f"torch=={torch.__version__.split('+')[0]}"


LEAN_SCRIPT = textwrap.dedent("""
    import importlib.metadata as md
    import sys
    import torch
    from pip._vendor.packaging.requirements import Requirement
    import gpart
    from gpart import GPartConfig, apply_gpart, find_adapter, load_adapter, merge_and_unload, save_adapter

    assert "site-packages" in gpart.__file__, gpart.__file__

    def closure(names):
        seen, todo = set(), list(names)
        while todo:
            name = todo.pop().lower().replace("_", "-")
            if name in seen:
                continue
            seen.add(name)
            for line in md.requires(name) or []:
                requirement = Requirement(line)
                if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                    todo.append(requirement.name)
        return seen

    installed = {d.metadata["Name"].lower().replace("_", "-") for d in md.distributions()}
    assert installed - {"pip", "setuptools"} == closure(["gpart"]) - {"pip", "setuptools"}, sorted(installed)
    print("installed:", " ".join(sorted(installed)))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.value, self.classifier = torch.nn.Linear(6, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.classifier(torch.tanh(self.value(torch.tanh(self.query(x)))))

    def net():
        torch.manual_seed(0)
        return Net()

    model = apply_gpart(net(), GPartConfig(d=16, target_modules=["query", "value"], trainable_modules=["classifier"]))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward(); optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and find_adapter(model).theta.abs().sum() > 0
    save_adapter(model, "adapter")
    assert torch.equal(load_adapter(net(), "adapter")(x), model(x))
    expected = model(x).detach()
    assert torch.allclose(merge_and_unload(model)(x), expected, atol=1e-5)
    try:
        import gpart.peft
    except ImportError as error:
        assert "gpart[peft]" in str(error), error
    else:
        raise AssertionError("gpart.peft imported without PEFT installed")
    print("applied: loss", round(losses[0], 4), "->", round(losses[-1], 4))
""")

PEFT_SCRIPT = textwrap.dedent("""
    import copy
    import json
    import sys
    from pathlib import Path
    import torch
    from peft import PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import RobertaConfig, RobertaForSequenceClassification
    import gpart.peft
    from gpart import GPartConfig, apply_gpart, find_adapter, merge_and_unload
    from gpart.peft import GPartPeftConfig

    torch.manual_seed(0)
    base = RobertaForSequenceClassification(RobertaConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=37, max_position_embeddings=64, num_labels=3))
    config = GPartConfig(d=60, target_modules=["query", "value"], seed=3, bias="partitioned",
                         trainable_modules=["classifier"], init_bound=0.5)
    ids, labels = torch.tensor([[1, 5, 17, 42, 8, 2], [1, 9, 9, 31, 60, 2]]), torch.tensor([0, 2])
    torch.manual_seed(1); ours = apply_gpart(copy.deepcopy(base), config)
    torch.manual_seed(1); theirs = get_peft_model(copy.deepcopy(base), GPartPeftConfig.from_gpart_config(config))
    for model in (ours, theirs):
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        for step in range(3):
            torch.manual_seed(step)  # the same dropout masks for both
            optimizer.zero_grad(); model(input_ids=ids, labels=labels).loss.backward(); optimizer.step()
    theta = theirs.base_model.gpart_adapters["default"].theta
    assert torch.equal(find_adapter(ours).theta, theta)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        expected = ours(input_ids=ids).logits
        assert torch.equal(theirs(input_ids=ids).logits, expected)
        theirs.save_pretrained("peft-adapter")
        assert json.loads(Path("peft-adapter/adapter_config.json").read_text())["peft_type"] == "GPART"
        reloaded = PeftModel.from_pretrained(copy.deepcopy(base), "peft-adapter").eval()
        assert torch.equal(reloaded(input_ids=ids).logits, expected)
        merged = reloaded.merge_and_unload()
        assert torch.allclose(merged(input_ids=ids).logits, merge_and_unload(ours)(input_ids=ids).logits, atol=1e-6)
    golden = Path(sys.argv[1])
    if golden.is_dir():  # the authors' saved adapter (see test_gpart_golden.py)
        import transformers
        (case,) = [c for c in json.loads((golden / "manifest.json").read_text())["cases"]
                   if c["name"] == "adapter-with-head"]
        values = dict(case["model_config"])
        model = getattr(transformers, case["model_class"])(
            transformers.AutoConfig.for_model(values.pop("model_type"), **values))
        model.load_state_dict(load_file(golden / f"{case['model']}.base.safetensors"))
        data = load_file(golden / "adapter-with-head.safetensors")
        authors = PeftModel.from_pretrained(model, golden / "adapter-with-head.authors-adapter").eval()
        with torch.no_grad():
            assert (authors(data["input_ids"]).logits - data["logits"]).abs().max() <= 1e-5
            assert (authors.merge_and_unload()(data["input_ids"]).logits - data["logits"]).abs().max() <= 1e-5
        print("the authors' adapter: golden logits")
    print("peft: trained, saved, reloaded, merged like apply_gpart")
""")


@pytest.mark.slow
def test_the_wheel_installs_alone_in_a_new_environment_and_applies_gpart(wheel, tmp_path):
    """Offline: pip reads only this machine's package sources (no config file, no network index)."""
    indexes, links = local_package_sources()
    if not indexes and not links:
        pytest.skip("pip has no local package source configured here; this test installs offline only")
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    python = str(env_dir / "bin" / "python")
    sources = (
        [f"--index-url={indexes[0]}", *[f"--extra-index-url={i}" for i in indexes[1:]]] if indexes else ["--no-index"]
    ) + [f"--find-links={link}" for link in links]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env["PIP_CONFIG_FILE"] = os.devnull  # only the sources named here

    def pip_install(*requirements):
        done = subprocess.run(
            [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *sources, *requirements],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    def run(script, *args):
        done = subprocess.run(
            [python, "-c", script, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout

    pip_install(offline_torch(links), str(wheel))
    lean = run(LEAN_SCRIPT)
    assert "applied" in lean
    pip_install(f"{wheel}[peft]")
    with_peft = run(PEFT_SCRIPT, str(GOLDEN))
    assert "like apply_gpart" in with_peft and ("golden logits" in with_peft or not GOLDEN.is_dir())
