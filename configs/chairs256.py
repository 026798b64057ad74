r"""The results set: 256 train, 32 val and 64 test procedural chairs (`make results`).

Variants (`--config=configs/chairs256.py:<variant>`):

  (default)  DeepSDF's published chairs spec (500,000 samples, 8 x 512 decoder, latent 256,
             64 scenes x 16,384 points, 2,001 epochs), for a GPU.
  cpu        sized for a 2-core CPU: `make results` within two hours.
  tiny       8 train, 2 val, 2 test chairs in seconds: the results command in the test suite.

    python -m data_gen.synthetic --out=data/chairs256 --num_train=256 --num_val=32 --num_test=64
    python -m sdfjax.launch.train --config=configs/chairs256.py:cpu --workdir=runs/chairs256_cpu

Everything not set here is chair16's (configs/chair16.py) at the same variant. Measurements
behind the chosen values are in docs/experiments.md.
"""

import ml_collections

from sdfjax import config_files

VARIANTS = ("default", "cpu", "tiny")
SPLIT_SIZES = {"default": (256, 32, 64), "cpu": (256, 32, 64), "tiny": (8, 2, 2)}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "default"
    if variant not in VARIANTS:
        raise ValueError(f"configs/chairs256.py: unknown variant {variant!r}; expected one of {VARIANTS}")
    base = {"default": "default", "cpu": "cpu", "tiny": "smoke"}[variant]  # chair16's variant this one builds on
    config = config_files.load_beside(__file__, f"chair16.py:{base}")
    config.variant = variant
    train, val, test = SPLIT_SIZES[variant]
    config.data.root = "data/chairs256" if variant != "tiny" else "data/chairs256_tiny"
    config.data.num_train, config.data.num_val, config.data.num_test = train, val, test  # data_gen.synthetic's sizes
    config.results = ml_collections.ConfigDict()
    # sketch-to-shape tables: dataset views per test chair, the ones people draw from: three-quarter front right 25
    # degrees above (12), the side nearly level (20), three-quarter front left 15 degrees above (81)
    config.results.test_views = (12, 20, 81)
    config.results.sketch_shapes = 64  # sketch-to-shape tables: the first this many test chairs
    # 64 drawings of test chairs made the way people draw (data_gen.user_sketches); "": none
    config.results.user_sketches = "tests/data/user_sketches/sketches.json"
    config.results.picture_shapes = 8  # rows of the picture grids
    # The refinement tuned on this set's val chairs (docs/experiments.md, "Sketch refinement").
    config.sketch.silhouette_form = "soft"  # counts wrong pixels and carves: beats its start more often
    config.sketch.silhouette_weight = 30.0  # the outline is the strongest evidence a drawing gives
    config.sketch.carve_margin = 1  # a hand's lines lie a pixel off the outline: never carve next to them
    config.sketch.line_band = 1  # nor read the object's own pixels beside them as background
    config.sketch.outline_tolerance = 2  # close gaps of up to 4 px in a drawing's contours
    config.sketch.gap_carve_margin = 3  # and carve a drawing with gaps only where plainly outside it
    config.sketch.encoder_line_growth = 1  # the encoder was trained with lines thickened by 0..1 px
    config.sketch.fill = 0.84  # the median share of the image that this set's train sketches take
    config.sketch.user_framing = "fit"  # no fixed share fits every drawing (docs/experiments.md, "Framing")
    if variant == "cpu":
        cpu(config)
    elif variant == "tiny":
        tiny(config)
    return config


def cpu(config: ml_collections.ConfigDict) -> None:
    """`make results` on a 2-core CPU within two hours."""
    # float32 in one pass per step, so that the results tables reproduce on any CPU (bf16 and chunking would change
    # rounding, the order of sums and the dropout masks)
    config.model.compute_dtype = "float32"
    config.train.points_per_chunk = 0
    config.fit.points_per_chunk = 0
    config.train.num_epochs = 250  # 256 shapes at 8 per batch: 32 steps per epoch, 8,000 steps
    config.train.scenes_per_batch = 8
    config.train.samples_per_scene = 2048
    config.train.lr_decay_every_epochs = 100
    config.train.checkpoint_every_epochs = 25
    config.siamese.num_steps = 2000
    config.fit.shapes_per_batch = 32
    config.fit.samples_per_step = 2048  # with 400 steps, enough for the 64-d latents of this decoder
    config.fit.num_iterations = 400
    config.fit.lr_decay_at = 200
    # the encoder underfits (its train and val errors agree): more steps, light geometric augmentation (rotation,
    # scale and shift change the apparent view and proportions that the latent encodes) and a heavier SDF term
    config.encoder.num_steps = 6000
    config.encoder.rotation_degrees = 2.0
    config.encoder.scale_range = 0.03
    config.encoder.shift_fraction = 0.02
    config.encoder.sdf_weight = 10.0
    config.encoder.view_input = True  # the view each sketch was drawn from is known to every caller
    config.results.sketch_shapes = 32  # 32 chairs x 3 views: about an hour of refinement and scoring here
    config.sketch.iterations = 30


def tiny(config: ml_collections.ConfigDict) -> None:
    """The results command in seconds, for the test suite."""
    config.train.num_epochs = 10
    config.siamese.num_steps = 8
    config.fit.num_iterations = 10
    config.fit.lr_decay_at = 5
    config.sketch.iterations = 2
    config.results.test_views = (0,)
    config.results.sketch_shapes = 2
    config.results.user_sketches = ""  # they draw chairs256's test chairs, which tiny does not have
    config.results.picture_shapes = 2
