"""Everything the paper runs download, in one place: hub datasets with their published schema, torchvision archives,
and hub models with their checkpoint layout and rough size.

The schemas (config names, split names and published row counts, features, file layout) are copied from each
repository's dataset card / file listing (`source`); the first-run rehearsal tests (`tests/test_hub_rehearsal.py`)
build tiny local copies from exactly these entries and load them through the suite's own loaders, and
`make reproduce-* DRY=1` (`experiments/tools/download_plan.py`) prints the sizes. Class-name lists longer than a line are
given as a class count: the rehearsal then names the classes "0".."n-1".

Sizes are rough. Datasets: the repository's file listing or its card's `download_size` where `source` shows one;
None where none was looked up. Models: parameter count × bytes per stored weight (fp32 for RoBERTa and ViT, bf16 for
the LLMs), i.e. the weight files `from_pretrained` fetches, not the whole repository.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

# feature spec: "string" | "int32" | "int64" | "float32" | "image" | ("class", [names] or class count)
FeatureSpec = Union[str, tuple]


@dataclass(frozen=True)
class HubDataset:
    repo: str
    configs: dict[str, dict[str, Optional[int]]]  # config -> {split: published rows (None: not looked up)}
    features: dict[str, dict[str, FeatureSpec]]  # config name -> {column: spec}
    layout: str  # file path inside the repository, {config} and {split} filled in
    size: Optional[str]  # None: not looked up
    source: str
    card_configs: bool = True  # the card's YAML lists `configs:` with per-split data_files


@dataclass(frozen=True)
class ArchiveDataset:
    """A dataset torchvision downloads from its authors' site (not the hub)."""

    name: str
    torchvision_class: str
    url: str
    size: str
    layout: str


@dataclass(frozen=True)
class HubModel:
    repo: str
    model_type: str
    architecture: str  # `architectures[0]` of the hub config.json
    layout: str  # how the checkpoint's keys look (what `from_pretrained` must convert)
    size: str
    gated: bool = False
    notes: str = field(default="")


_GLUE_SOURCE = "https://huggingface.co/datasets/nyu-mll/glue (dataset card: configs, features, splits)"


def _glue(text: tuple[str, ...], label: FeatureSpec) -> dict[str, FeatureSpec]:
    return {**{column: "string" for column in text}, "label": label, "idx": "int32"}


_MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
_MATH_FEATURES = {"problem": "string", "level": "string", "type": "string", "solution": "string"}
_CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_EUROSAT = [
    "Annual Crop",
    "Forest",
    "Herbaceous Vegetation",
    "Highway",
    "Industrial Buildings",
    "Pasture",
    "Permanent Crop",
    "Residential Buildings",
    "River",
    "SeaLake",
]
_STANFORD_CARS_SPLITS = {
    "train": 8144,
    "test": 8041,
    **{
        name: 8041
        for name in (
            "contrast",
            "gaussian_noise",
            "impulse_noise",
            "jpeg_compression",
            "motion_blur",
            "pixelate",
            "spatter",
        )
    },
}

DATASETS: dict[str, HubDataset] = {
    entry.repo: entry
    for entry in (
        HubDataset(
            "nyu-mll/glue",
            configs={
                "cola": {"train": 8551, "validation": 1043, "test": 1063},
                "sst2": {"train": 67349, "validation": 872, "test": 1821},
                "mrpc": {"train": 3668, "validation": 408, "test": 1725},
                "qnli": {"train": 104743, "validation": 5463, "test": 5463},
                "rte": {"train": 2490, "validation": 277, "test": 3000},
                "stsb": {"train": 5749, "validation": 1500, "test": 1379},
            },
            features={
                "cola": _glue(("sentence",), ("class", ["unacceptable", "acceptable"])),
                "sst2": _glue(("sentence",), ("class", ["negative", "positive"])),
                "mrpc": _glue(("sentence1", "sentence2"), ("class", ["not_equivalent", "equivalent"])),
                "qnli": _glue(("question", "sentence"), ("class", ["entailment", "not_entailment"])),
                "rte": _glue(("sentence1", "sentence2"), ("class", ["entailment", "not_entailment"])),
                "stsb": _glue(("sentence1", "sentence2"), "float32"),
            },
            # file layout as in the other parquet-converted repositories (not checked file by file); loaders read the
            # card's configs, not the file names
            layout="{config}/{split}-00000-of-00001.parquet",
            size=None,
            source=_GLUE_SOURCE,
        ),
        HubDataset(
            "uoft-cs/cifar10",
            configs={"plain_text": {"train": 50000, "test": 10000}},
            features={"plain_text": {"img": "image", "label": ("class", _CIFAR10)}},
            layout="plain_text/{split}-00000-of-00001.parquet",
            size="≈144 MB (card download_size)",
            source="https://huggingface.co/datasets/uoft-cs/cifar10 (card after 'Convert dataset to Parquet')",
        ),
        HubDataset(
            "uoft-cs/cifar100",
            configs={"plain_text": {"train": 50000, "test": 10000}},
            features={"plain_text": {"img": "image", "fine_label": ("class", 100), "coarse_label": ("class", 20)}},
            layout="plain_text/{split}-00000-of-00001.parquet",
            size=None,
            source="https://huggingface.co/datasets/uoft-cs/cifar100",
        ),
        HubDataset(
            "timm/oxford-iiit-pet",
            configs={"default": {"train": 3680, "test": 3669}},
            features={
                "default": {
                    "image": "image",
                    "label": ("class", 37),
                    "image_id": "string",
                    "label_cat_dog": ("class", ["cat", "dog"]),
                }
            },
            layout="data/{split}-00000-of-00001.parquet",
            size="≈791 MB (file listing: 378 + 413 MB)",
            source="https://huggingface.co/datasets/timm/oxford-iiit-pet/tree/main/data (card: data/train-*, data/test-*)",
        ),
        HubDataset(
            "tanganke/stanford_cars",
            configs={"default": _STANFORD_CARS_SPLITS},
            features={"default": {"image": "image", "label": ("class", 196)}},
            layout="data/{split}-00000-of-00002.parquet",
            size="≈2.0 GB for train + test (≈5 GB more in the seven corrupted splits, which are not fetched)",
            source="https://huggingface.co/datasets/tanganke/stanford_cars/tree/main/data (9 splits; train, test: 2 "
            "parquet shards each)",
        ),
        HubDataset(
            "blanchon/EuroSAT_RGB",
            configs={"default": {"train": 16200, "validation": 5400, "test": 5400}},
            features={"default": {"image": "image", "label": ("class", _EUROSAT), "filename": "string"}},
            layout="data/{split}-00000-of-00001.parquet",
            size="≈174 MB (card download_size)",
            source="https://huggingface.co/datasets/blanchon/EuroSAT_RGB (card, as in its duplicate ebader/EuroSAT_RGB)",
        ),
        HubDataset(
            "timm/resisc45",
            configs={"default": {"train": 18900, "validation": 6300, "test": 6300}},
            features={"default": {"image": "image", "label": ("class", 45), "image_id": "string"}},
            layout="data/{split}-00000-of-00001.parquet",
            size="≈425 MB (file listing: 255 + 85 + 85 MB)",
            source="https://huggingface.co/datasets/timm/resisc45/tree/main/data",
        ),
        HubDataset(
            "meta-math/MetaMathQA",
            configs={"default": {"train": 395000}},
            features={
                "default": {"type": "string", "query": "string", "original_question": "string", "response": "string"}
            },
            layout="MetaMathQA-395K.json",
            size="≈396 MB (file listing)",
            card_configs=False,
            source="https://huggingface.co/datasets/meta-math/MetaMathQA (one JSON file; split inferred: train)",
        ),
        HubDataset(
            "openai/gsm8k",
            configs={"main": {"train": 7473, "test": 1319}, "socratic": {"train": 7473, "test": 1319}},
            features={
                "main": {"question": "string", "answer": "string"},
                "socratic": {"question": "string", "answer": "string"},
            },
            layout="{config}/{split}-00000-of-00001.parquet",
            size="≈3.2 MB (card download_size, main)",
            source="https://huggingface.co/datasets/openai/gsm8k (card: configs main, socratic)",
        ),
        HubDataset(
            "EleutherAI/hendrycks_math",
            # 7,500 train / 5,000 test problems in all; per subject only algebra's counts were looked up
            configs={
                subject: ({"train": 1744, "test": 1187} if subject == "algebra" else {"train": None, "test": None})
                for subject in _MATH_SUBJECTS
            },
            features={subject: dict(_MATH_FEATURES) for subject in _MATH_SUBJECTS},
            layout="{config}/{split}-00000-of-00001.parquet",
            size="≈6 MB (algebra: 505 kB + 353 kB)",
            source="https://huggingface.co/datasets/EleutherAI/hendrycks_math/tree/main/algebra",
        ),
        HubDataset(
            "HuggingFaceH4/MATH-500",
            configs={"default": {"test": 500}},
            features={
                "default": {
                    "problem": "string",
                    "solution": "string",
                    "answer": "string",
                    "subject": "string",
                    "level": "int64",
                    "unique_id": "string",
                }
            },
            layout="test.jsonl",
            size="≈0.4 MB",
            card_configs=False,
            source="https://huggingface.co/datasets/HuggingFaceH4/MATH-500 (../shared/data/SOURCES.md: same layout)",
        ),
    )
}

ARCHIVES: dict[str, ArchiveDataset] = {
    entry.torchvision_class: entry
    for entry in (
        ArchiveDataset(
            "DTD",
            "DTD",
            "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
            size="≈625 MB",
            layout="dtd/images/<class>/<image>.jpg, dtd/labels/{train,val,test}{1..10}.txt",
        ),
        ArchiveDataset(
            "FGVC-Aircraft",
            "FGVCAircraft",
            "https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
            size="≈2.8 GB",
            layout="fgvc-aircraft-2013b/data/{images/, variants.txt, images_variant_{train,val,test}.txt}",
        ),
    )
}

_VIT_4X = (
    "4.x ViTModel keys without prefix (embeddings.*, encoder.layer.<i>.attention.attention.{query,key,value}, "
    "pooler.dense); transformers>=5.9 renames them on load"
)
_DECODER = "model.layers.<i>.self_attn.{q,k,v,o}_proj (unchanged in 5.x)"
MODELS: dict[str, HubModel] = {
    entry.repo: entry
    for entry in (
        HubModel("roberta-base", "roberta", "RobertaForMaskedLM", "roberta.* + lm_head.*", "≈0.5 GB (125M fp32)"),
        HubModel("roberta-large", "roberta", "RobertaForMaskedLM", "roberta.* + lm_head.*", "≈1.4 GB (355M fp32)"),
        HubModel("google/vit-base-patch16-224-in21k", "vit", "ViTModel", _VIT_4X, "≈0.35 GB (86M fp32)"),
        HubModel("google/vit-large-patch16-224-in21k", "vit", "ViTModel", _VIT_4X, "≈1.2 GB (304M fp32)"),
        HubModel("Qwen/Qwen2.5-0.5B", "qwen2", "Qwen2ForCausalLM", _DECODER, "≈1.0 GB (0.49B bf16)"),
        HubModel("Qwen/Qwen2.5-3B", "qwen2", "Qwen2ForCausalLM", _DECODER, "≈6.2 GB (3.1B bf16)"),
        HubModel("Qwen/Qwen2.5-7B", "qwen2", "Qwen2ForCausalLM", _DECODER, "≈15 GB (7.6B bf16)"),
        HubModel("google/gemma-7b", "gemma", "GemmaForCausalLM", _DECODER, "≈17 GB (8.5B bf16)", gated=True),
        HubModel("mistralai/Mistral-7B-v0.1", "mistral", "MistralForCausalLM", _DECODER, "≈14.5 GB (7.2B bf16)"),
        HubModel("meta-llama/Llama-3.1-8B", "llama", "LlamaForCausalLM", _DECODER, "≈16 GB (8.0B bf16)", gated=True),
    )
}


def dataset_entry(repo: str) -> Optional[HubDataset]:
    return DATASETS.get(repo)


def features(spec: dict[str, FeatureSpec]):
    """`datasets.Features` for a feature spec of this catalog."""
    import datasets

    def one(value: FeatureSpec):
        if isinstance(value, tuple):
            names = value[1]
            return (
                datasets.ClassLabel(num_classes=names)
                if isinstance(names, int)
                else datasets.ClassLabel(names=list(names))
            )
        return datasets.Image() if value == "image" else datasets.Value(value)

    return datasets.Features({column: one(value) for column, value in spec.items()})
