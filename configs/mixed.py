r"""Chairs and tables in one DeepSDF (one decoder, one latent table), reported per category.

Variants (`--config=configs/mixed.py:<variant>`):

  cpu        32 train, 4 val, 32 test shapes, chairs and tables in turn: `make results-mixed`.
  cpu_chair  its 16 train, 2 val, 16 test chairs alone; and cpu_table its tables alone: the
             single-category runs it is compared with, at the same budget per shape (the
             same epochs and settings; each category's shapes are the same shapes).
  tiny       4 train, 2 val, 2 test shapes in seconds: the multi-category path in the suite.

    make results-mixed        # the three runs, then docs/results_mixed.md

Everything not set here is chair16's `cpu` (tiny: `smoke`) variant (configs/chair16.py).
"""

import ml_collections

from sdfjax import config_files

VARIANTS = ("cpu", "cpu_chair", "cpu_table", "tiny")
CATEGORIES = {"cpu": "chair,table", "cpu_chair": "chair", "cpu_table": "table", "tiny": "chair,table"}
SPLIT_SIZES = {"cpu": (32, 4, 32), "cpu_chair": (16, 2, 16), "cpu_table": (16, 2, 16), "tiny": (4, 2, 2)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "cpu"
    if variant not in VARIANTS:
        raise ValueError(f"configs/mixed.py: unknown variant {variant!r}; expected one of {VARIANTS}")
    config = config_files.load_beside(__file__, f"chair16.py:{'smoke' if variant == 'tiny' else 'cpu'}")
    config.name, config.variant = "mixed", variant
    config.data.root = f"data/mixed_{variant}"
    config.data.category = CATEGORIES[variant]  # data_gen.synthetic --category: shapes take them in turn
    config.data.num_train, config.data.num_val, config.data.num_test = SPLIT_SIZES[variant]
    config.results = ml_collections.ConfigDict()
    config.results.sketch = False  # DeepSDF only: the sketch models are trained on chairs
    config.results.picture_shapes = 8 if variant != "tiny" else 2  # rows of the reconstruction picture
    # the runs of one category each that `make results-mixed` makes first, compared in the report
    config.results.single_runs = ("runs/mixed_cpu_chair", "runs/mixed_cpu_table") if variant == "cpu" else ()
    config.fit.shapes_per_batch = 16
    # Each shape's fit starts at the mean latent of its own category: the origin and the overall mean lie between
    # the categories' parts of the latent space (docs/experiments.md, "Several categories"). With one category
    # this is the mean latent, so every variant fits the same way.
    config.fit.init = "category_mean"
    if variant == "tiny":
        config.train.num_epochs = 10
        config.fit.num_iterations = 10
        config.fit.lr_decay_at = 5
    return config
