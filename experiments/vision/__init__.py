"""Image classification with ViT (paper table "vision", `../shared/reference/setup.md` §3).

* `data`       — the eight paper datasets from the hub, torchvision or a local image folder, plus local MNIST idx
                 files for offline runs; seeded validation hold-outs.
* `transforms` — timm train/eval transforms with the checkpoint's own normalisation.
* `models`     — ViT loading: hub ids / local folders (transformers), `timm:<name>` (weights converted into the
                 transformers ViT so every method sees the same module names), or a random model of a given shape.
* `targets`    — target-module resolution that fails loudly, and adapted-module counts per method.

The runner's task plug-in is `experiments.tasks.vision.VisionClassificationTask`.
"""
