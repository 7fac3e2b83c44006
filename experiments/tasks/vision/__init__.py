"""Image classification with ViT: the paper's vision table (`../shared/reference/setup.md` §3) and offline MNIST.

Data comes from the hub (`load_dataset(<hub id>)`, or a local folder / `save_to_disk` copy at the same key), from
torchvision (FGVC-Aircraft, variant level), from a local image folder (DTD), or from MNIST idx.gz files
(`../shared/data/mnist`). Transforms are timm's, normalised with the checkpoint's own mean/std: RandomResizedCrop +
horizontal flip for training, Resize + CenterCrop for evaluation. Splits: the dataset's own where it has them,
otherwise seeded hold-outs of train (`experiments/tasks/vision/data.py`). The best epoch is chosen on validation and test
accuracy is reported (the runner does both from :meth:`evaluate`).
"""

from __future__ import annotations

from typing import Any, Optional

from experiments.tasks.base import Splits, Task
from experiments.tasks.metrics import classification_metrics
from experiments.tasks.vision.data import RawSplit, TransformedImages, load_raw_split, plan_splits
from experiments.tasks.vision.models import build_image_classifier
from experiments.tasks.vision.targets import require_target_modules
from experiments.tasks.vision.transforms import build_transforms, processor_normalisation


class VisionClassificationTask(Task):
    """One image-classification dataset. Config keys (`configs/task/vision/<name>.yaml`):

    * `key`, `metric` (accuracy), `table` (vision), `num_labels`;
    * `source` (`hub` | `torchvision` | `imagefolder` | `mnist_idx`) and its keys: `path`, `name`, `data_dir`,
      `data_files` (split -> file pattern: download only the splits used), `image_column`, `label_column` (hub);
      `dataset_class`, `split_argument`, `download`, `dataset_kwargs` (torchvision); `data_dir` (imagefolder,
      mnist_idx);
    * `splits`: `{train, validation, test}` -> the dataset's split names, `null` = hold out of train;
      `validation_fraction` (seeded by the run seed), `test_fraction` (seeded by `data_seed`, fixed across seeds);
    * `train_subset`, `validation_subset`, `test_subset`: seeded, stratified subsets for smoke runs (null = all);
    * `image_size`: override the checkpoint's input size (null = the processor's);
    * `train_crop_scale`: RandomResizedCrop's area range (default (0.08, 1), the meaning of RandomResizedCrop(224)).

    Model keys read besides `Task`'s: `checkpoint_file` (local weights for a `timm:<name>` model). `tokenizer`
    (when set) names where the image processor lives.
    """

    def __init__(
        self,
        key: str,
        metric: str,
        table: str,
        num_labels: int,
        source: str,
        splits: dict,
        path: Optional[str] = None,
        name: Optional[str] = None,
        data_dir: Optional[str] = None,
        data_files: Optional[dict] = None,
        image_column: str = "image",
        label_column: str = "label",
        dataset_class: Optional[str] = None,
        split_argument: str = "split",
        download: bool = False,
        dataset_kwargs: Optional[dict] = None,
        validation_fraction: Optional[float] = None,
        test_fraction: Optional[float] = None,
        data_seed: int = 0,
        train_subset: Optional[int] = None,
        validation_subset: Optional[int] = None,
        test_subset: Optional[int] = None,
        image_size: Optional[int] = None,
        train_crop_scale: tuple = (0.08, 1.0),
    ):
        super().__init__(key=key, metric=metric, table=table)
        if int(num_labels) < 2:
            raise ValueError(f"num_labels={num_labels!r}: an image classification task needs at least 2 classes")
        self.num_labels, self.splits, self.image_size = int(num_labels), dict(splits), image_size
        self.train_crop_scale = tuple(train_crop_scale)
        self.source_kwargs = dict(
            path=path,
            name=name,
            data_dir=data_dir,
            data_files=data_files,
            image_column=image_column,
            label_column=label_column,
            dataset_class=dataset_class,
            split_argument=split_argument,
            download=download,
            dataset_kwargs=dataset_kwargs,
        )
        self.source = source
        self.holdout = dict(validation_fraction=validation_fraction, test_fraction=test_fraction, data_seed=data_seed)
        self.subsets = dict(train=train_subset, validation=validation_subset, test=test_subset)
        self._raw: dict[str, RawSplit] = {}
        self.target_module_names: list[str] = []

    # -- data ---------------------------------------------------------------------------------------------------------
    def raw_split(self, split: str) -> RawSplit:
        """A dataset split, loaded once per task object."""
        if split not in self._raw:
            raw = load_raw_split(self.source, split, **self.source_kwargs)
            if len(raw) and (raw.labels.min() < 0 or raw.labels.max() >= self.num_labels):
                raise ValueError(
                    f"task {self.key}: split {split!r} has labels in [{raw.labels.min()}, "
                    f"{raw.labels.max()}] but num_labels={self.num_labels}"
                )
            self._raw[split] = raw
        return self._raw[split]

    def build_splits(self, processor: Any, seed: int) -> Splits:
        normalisation = processor_normalisation(processor)
        size = int(self.image_size or normalisation["image_size"])
        train_transform, eval_transform = build_transforms(
            size, normalisation["mean"], normalisation["std"], normalisation["interpolation"], self.train_crop_scale
        )
        planned = plan_splits(self.raw_split, self.splits, seed=seed, subsets=self.subsets, **self.holdout)
        datasets = {
            role: TransformedImages(raw, rows, train_transform if role == "train" else eval_transform)
            for role, (raw, rows) in planned.items()
        }
        return Splits(train=datasets["train"], validation=datasets["validation"], test=datasets["test"])

    # -- model --------------------------------------------------------------------------------------------------------
    def build_model(self, model_cfg) -> tuple[Any, Any]:
        class_names = self._class_names()
        model, processor = build_image_classifier(model_cfg, self.num_labels, class_names)
        self.target_module_names = require_target_modules(model, model_cfg.get("target_modules"))
        return model, processor

    def _class_names(self) -> Optional[list[str]]:
        try:
            return self.raw_split(self.splits["train"]).classes
        except (FileNotFoundError, OSError, ConnectionError):  # data not here yet: the head still builds
            return None

    # -- metrics ------------------------------------------------------------------------------------------------------
    def compute_metrics(self, eval_pred) -> dict[str, float]:
        return classification_metrics(eval_pred.predictions, eval_pred.label_ids)
