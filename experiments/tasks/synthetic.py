"""A small English sentiment task the project generates itself, for when no GLUE data is reachable (`make demo`).

Sentences are built from movie-review templates: "<subject> was [not] <intensifier> <adjective><filler>." and
contrasts "<subject> was <adjective>, but <subject> was <adjective>." The label is the sentiment of the sentence
(negation flips the adjective's polarity; in a contrast the clause after "but" decides). Real words, so a pretrained
encoder has something to transfer, and negation/contrast so a bag of words does not solve it. The data are a pure
function of `data_seed` (the run seed only changes the held-out validation split), and the task reuses the GLUE
machinery (tokenisation, hold-out, metrics) unchanged.
"""

from __future__ import annotations

import random

from experiments.tasks.glue import GlueLayout, GlueTask

SUBJECTS = [
    "the film",
    "this movie",
    "the plot",
    "the acting",
    "the soundtrack",
    "the script",
    "the ending",
    "the cast",
    "the dialogue",
    "the story",
    "the camera work",
    "the lead performance",
]
POSITIVE = [
    "wonderful",
    "brilliant",
    "moving",
    "charming",
    "delightful",
    "gripping",
    "superb",
    "funny",
    "beautiful",
    "clever",
    "heartfelt",
    "memorable",
]
NEGATIVE = [
    "dull",
    "boring",
    "clumsy",
    "tedious",
    "awful",
    "predictable",
    "lifeless",
    "messy",
    "shallow",
    "forgettable",
    "irritating",
    "weak",
]
INTENSIFIERS = ["", "really ", "quite ", "truly ", "rather ", "remarkably "]
FILLERS = [
    "",
    " from start to finish",
    " for most of its running time",
    " in almost every scene",
    " despite the hype",
    " if you ask me",
]


def clause(rng: random.Random, negate_probability: float) -> tuple[str, int]:
    positive = rng.random() < 0.5
    adjective = rng.choice(POSITIVE if positive else NEGATIVE)
    negated = rng.random() < negate_probability
    verb = "was not" if negated else "was"
    text = f"{rng.choice(SUBJECTS)} {verb} {rng.choice(INTENSIFIERS)}{adjective}"
    return text, int(positive != negated)


def sentence(rng: random.Random) -> tuple[str, int]:
    if rng.random() < 0.3:  # contrast: the clause after "but" decides
        first, _ = clause(rng, 0.2)
        second, label = clause(rng, 0.2)
        return f"{first}, but {second}.".capitalize(), label
    text, label = clause(rng, 0.3)
    return f"{text}{rng.choice(FILLERS)}.".capitalize(), label


def generate(rows: int, seed: int) -> dict:
    rng = random.Random(seed)
    pairs = [sentence(rng) for _ in range(rows)]
    return {"text_a": [text for text, _ in pairs], "text_b": None, "label": [label for _, label in pairs]}


class SyntheticSentimentTask(GlueTask):
    """Config keys (`configs/task/synthetic.yaml`): those of `GlueTask` minus the data source ones, plus
    `train_rows`, `test_rows` and `data_seed`."""

    def __init__(
        self,
        key: str = "synthetic-sentiment",
        metric: str = "accuracy",
        table: str = "synthetic",
        train_rows: int = 2000,
        test_rows: int = 872,
        data_seed: int = 1234,
        **glue_kwargs,
    ):
        super().__init__(key=key, metric=metric, table=table, **glue_kwargs)
        self.train_rows, self.test_rows, self.data_seed = int(train_rows), int(test_rows), int(data_seed)

    @property
    def layout(self) -> GlueLayout:
        return GlueLayout("synthetic", ("text",), "label", ("text",))

    def load_raw(self) -> dict:
        # Disjoint streams: the test sentences come from another seed than the training ones.
        return {
            "train": generate(self.train_rows, self.data_seed),
            "test": generate(self.test_rows, self.data_seed + 1),
        }
