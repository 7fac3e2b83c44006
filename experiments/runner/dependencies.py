"""Library versions the suite's code relies on, checked where a too-old release would fail silently or obscurely.

transformers 5.9.0 is the first release whose ViT names its attention projections `q_proj`/`k_proj`/`v_proj`/`o_proj`
under `vit.layers.<i>` (PR #41693, "Refactor ViT to updated standards"; 5.8.1 still has
`vit.encoder.layer.<i>.attention.attention.query`) and renames the 4.x keys of the google/vit-*-in21k checkpoints on
load. The ViT configs target `q_proj`/`v_proj`, the timm conversion writes `vit.layers.<i>` keys, and
`from_pretrained(dtype=...)` (math) postdates 4.x too. `pyproject.toml` states the same floor.
"""

from __future__ import annotations

MIN_TRANSFORMERS = "5.9.0"


def check_transformers(version: str | None = None) -> None:
    """Raise ImportError naming the installed and the needed transformers release when it is too old."""
    from packaging.version import Version

    if version is None:
        import transformers

        version = transformers.__version__
    if Version(version) < Version(MIN_TRANSFORMERS):
        raise ImportError(
            f"transformers {version} is installed, but this suite needs transformers>={MIN_TRANSFORMERS}: older "
            f"releases name ViT's projections attention.attention.{{query,value}}, so the ViT targets q_proj/v_proj "
            f"match nothing, and the timm conversion writes 5.x keys. Upgrade with "
            f"`pip install -U 'transformers>={MIN_TRANSFORMERS}'` (or `make install`)."
        )
