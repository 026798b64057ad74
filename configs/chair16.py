r"""DeepSDF on the procedural `chair16` set (16 train, 4 val, 4 test chairs).

One file holds the data, model, train, fit, mesh, traverse, render, siamese and sketch sections, so every stage reads the same
settings. Variants (`--config=configs/chair16.py:<variant>`):

  (default)  DeepSDF's published chairs spec (Park et al. 2019; DESIGN.md).
  cpu        sized so `make demo` finishes on a 2-core CPU in about ten minutes.
  smoke      runs in seconds, for tests.

    python -m data_gen.preprocess --config=configs/chair16.py:cpu
    python -m data_gen.preprocess --config=configs/chair16.py --config.data.root=data/my_meshes

Point the whole pipeline at another dataset with `--config.data.root=data/<name>`.
"""

import ml_collections

VARIANTS = ("default", "cpu", "smoke")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = arg or "default"
    if variant not in VARIANTS:
        raise ValueError(f"configs/chair16.py: unknown variant {variant!r}; expected one of {VARIANTS}")
    config = ml_collections.ConfigDict()
    config.variant = variant
    config.seed = 0

    # Data: DeepSDF's sampling defaults (DESIGN.md, "SDF samples").
    config.data = ml_collections.ConfigDict()
    config.data.root = "data/chair16"
    config.data.num_sdf_samples = 500_000
    config.data.near_surface_fraction = 47 / 50
    config.data.near_surface_variances = (0.005, 0.0005)
    config.data.num_surface_samples = 30_000
    config.data.num_workers = 2
    config.data.tfds_dir = ""  # empty: <root>/tfds

    # Model: DeepSDF's chairs decoder (1,843,195 parameters).
    config.model = ml_collections.ConfigDict()
    config.model.latent_dim = 256
    config.model.hidden_dim = 512
    config.model.num_layers = 8
    config.model.skip_layers = (4,)
    config.model.dropout_rate = 0.2
    config.model.weight_norm = True
    # "auto": bfloat16 where the hardware multiplies it natively (GPU, TPU, AMX-BF16 or AVX512_BF16), else float32
    # (sdfjax.parallel.fast_compute_dtype); "bfloat16": bf16 matmul inputs, f32 accumulation, forward and backward
    config.model.compute_dtype = "auto"
    config.model.fourier_frequencies = 0  # > 0: positional encoding of xyz (off in DeepSDF)

    # Train: DeepSDF's auto-decoder schedule.
    config.train = ml_collections.ConfigDict()
    config.train.num_epochs = 2001
    config.train.scenes_per_batch = 64
    config.train.samples_per_scene = 16_384
    config.train.decoder_lr = 5e-4
    config.train.latent_lr = 1e-3
    config.train.lr_decay_every_epochs = 500
    config.train.lr_decay_factor = 0.5
    config.train.clamp_distance = 0.1
    config.train.code_reg_weight = 1e-4
    config.train.code_reg_warmup_epochs = 100
    config.train.code_bound = 1.0
    config.train.grad_clip_norm = 0.0  # 0: off
    config.train.checkpoint_every_epochs = 100
    config.train.shard_latents = False  # True: split the latent table along shapes over devices
    # Points per decoder pass (sdfjax.chunking): -1 (auto) is 1,024 on a CPU (1.42x one pass in float32,
    # benchmarks/train_step) and one pass on a GPU or TPU; 0: one pass. Each chunk draws its own dropout masks.
    config.train.points_per_chunk = -1
    config.train.cache_shapes = 4096  # shapes' samples kept in host memory
    # Curriculum DeepSDF (Duan et al. 2020): tolerance eps and hard-sample weight gamma per stage.
    config.train.curriculum = ml_collections.ConfigDict()
    config.train.curriculum.enabled = False
    config.train.curriculum.epochs = (0, 200, 400, 600, 800)
    config.train.curriculum.eps = (0.025, 0.01, 0.0025, 0.0, 0.0)
    config.train.curriculum.gamma = (0.0, 0.1, 0.2, 0.5, 0.5)

    # Fit: DeepSDF's reconstruction (DESIGN.md, "Reconstruction") of a split's shapes.
    config.fit = ml_collections.ConfigDict()
    config.fit.split = "val"  # train | val | test
    config.fit.obj_ids = ""  # comma-separated subset of the split; empty: all of it
    config.fit.init = "normal"  # normal (N(0, init_std^2)) | mean | random | prior | <latent row>
    config.fit.init_std = 0.01
    config.fit.restarts = 1  # best of K initialisations by fitting loss (the paper reports K = 2)
    config.fit.num_iterations = 800
    config.fit.lr = 5e-3
    config.fit.lr_decay_at = 400
    config.fit.lr_decay_factor = 0.1
    config.fit.samples_per_step = 8000
    # Points per decoder pass within a step (sdfjax.chunking): -1 (auto) is 512 on a CPU, where chunks keep a
    # layer's activations in cache (1.41x one pass, benchmarks/fit), and one pass on a GPU or TPU; 0: one pass.
    config.fit.points_per_chunk = -1
    config.fit.code_reg_weight = 1e-4
    config.fit.shapes_per_batch = 16  # shapes optimised by one vmapped step
    config.fit.max_shapes = 0  # > 0: only the first this many shapes of the split (when obj_ids is empty)
    # Shape completion (DeepSDF Sec. 6.3): fit to what one depth camera sees (sdfjax.fit.partial):
    # its hit points (sdf = 0) and free space in front of them (0 <= sdf <= distance to the seen surface).
    config.fit.partial = False
    config.fit.partial_azimuth = 30.0  # degrees, position of the depth camera (config.render's distance, focal)
    config.fit.partial_elevation = 20.0
    config.fit.partial_resolution = 128  # depth image pixels per side
    config.fit.save_mesh = True
    config.fit.metrics = True
    config.fit.emd_points = 4096
    # Fitting to normal maps (sdfjax.launch.optimize_normals).
    config.fit.normal_views = (0, 16, 47, 62)  # view indices of the dataset's view set
    config.fit.normal_iterations = 200
    config.fit.normal_lr = 1e-2
    config.fit.silhouette_weight = 1.0

    # Meshes: marching cubes on [-1, 1]^3 (DESIGN.md), coarse to fine.
    config.mesh = ml_collections.ConfigDict()
    config.mesh.resolution = 256
    config.mesh.coarse_to_fine = True
    # Margin of the coarse-to-fine rule. A learned SDF is no distance: the trained cpu decoder's
    # |grad| reaches 6.5-7.8. 0 measures each field's steepest slope first (x1.25), so the mesh
    # equals the dense grid's; 1.5 is 2-3x cheaper and has matched dense on the cpu model's latents.
    config.mesh.lipschitz = 0.0
    config.mesh.chunk = 65_536  # decoder points per call
    config.mesh.original_frame = False  # also write meshes mapped back to the shape's own frame

    # Traverse: meshes along a line between two latents (Sketch2Shape's traverse_latent.py).
    config.traverse = ml_collections.ConfigDict()
    config.traverse.start = "mean"  # mean | <train latent row> | <obj_id>
    config.traverse.end = "0"
    config.traverse.steps = 20
    config.traverse.interpolation = "linear"  # linear | slerp

    # Render: Sketch2Shape's views (DESIGN.md, "Views") and the sphere tracer's settings.
    config.render = ml_collections.ConfigDict()
    config.render.azimuths = tuple(range(0, 360, 20))
    config.render.elevations = (-50, -30, -10, 10, 30)
    config.render.resolution = 256
    config.render.focal = 512.0  # pixels at `resolution`
    config.render.distance = 4.0
    config.render.stage_steps = (6, 6, 8, 16, 32)  # sphere-tracing steps per stage
    config.render.stage_fractions = (1.0, 0.5, 0.25, 0.125, 0.0625)  # share of rays marched per stage
    config.render.threshold = 2e-4
    config.render.step_scale = 1.0
    # Longest tracing step: train.clamp_distance. Beyond it the decoder's values are not distances, and
    # unlimited steps jumped through the chairs256 decoder's thin parts (sdfjax.render.tracer).
    config.render.max_step = 0.1
    config.render.latents = "mean"  # render launcher: comma-separated mean | <row> | <obj_id> | <npz>:<obj_id>
    config.render.preview_views = (0, 16, 47, 62)  # view indices shown in picture grids
    config.render.preview_resolution = 128

    # Siamese encoder (Sketch2Shape): sketches and normal maps in one embedding space.
    config.siamese = ml_collections.ConfigDict()
    config.siamese.width = 64  # first-stage channels; 64 is ResNet-18's (64, 128, 256, 512)
    config.siamese.stage_blocks = (2, 2, 2, 2)
    config.siamese.embedding_dim = 128
    config.siamese.normalize = True  # unit-length embeddings: distances in [0, 2]
    config.siamese.shared_tower = True  # one tower for both modalities (Sketch2Shape); False: two
    config.siamese.compute_dtype = "float32"  # or "bfloat16"
    config.siamese.triplet = "batch_all"  # batch_all | batch_hard (Hermans et al. 2017); see sdfjax.train.siamese
    config.siamese.margin = 0.2
    config.siamese.shapes_per_batch = 16  # P shapes x K views, each view a sketch and its normal map
    config.siamese.views_per_shape = 4
    config.siamese.num_steps = 20_000
    config.siamese.lr = 1e-3
    config.siamese.warmup_steps = 500
    config.siamese.weight_decay = 1e-4
    config.siamese.steps_per_log = 100  # one metrics.jsonl line per this many steps
    config.siamese.checkpoint_every_steps = 2_000
    config.siamese.cache_shapes = 2048  # shapes' images kept in host memory
    config.siamese.rotation_degrees = 10.0  # sketch augmentation: rotation in +-this
    config.siamese.max_dilation = 2  # sketch augmentation: lines thickened by 0..this pixels
    config.siamese.flip = True  # horizontal flip of a sketch and its normal map together
    config.siamese.index_split = "val"  # eval_siamese: normal maps of this split form the index
    config.siamese.query_split = "val"  # eval_siamese: sketches of this split are the queries
    config.siamese.picture_queries = 6  # eval_siamese: queries shown with their top-5

    # Sketch-to-latent encoder (Sketch2Shape's encoder; sdfjax.train.encoder): sketch -> DeepSDF latent.
    config.encoder = ml_collections.ConfigDict()
    config.encoder.width = 64  # the Siamese tower's: ResNet-18 widths (64, 128, 256, 512)
    config.encoder.stage_blocks = (2, 2, 2, 2)
    config.encoder.compute_dtype = "float32"  # or "bfloat16"
    config.encoder.shapes_per_batch = 16  # P shapes x K views per batch
    config.encoder.views_per_shape = 4
    config.encoder.num_steps = 20_000
    config.encoder.lr = 1e-3
    config.encoder.warmup_steps = 500
    config.encoder.weight_decay = 1e-4
    config.encoder.sdf_weight = 1.0  # weight of the clamped SDF L1 through the frozen decoder
    config.encoder.sdf_points = 512  # points per sketch for that term
    # uniform: in [-1, 1]^3, new ones every step. samples: from a pool of `sdf_point_pool` of the shape's own
    # SDF samples per train shape (mostly near the surface), `sdf_uniform_share` of it uniform. On chairs256
    # cpu, samples gave a worse encoder (test Chamfer 2.946 against 2.200): see sdfjax.train.encoder.
    config.encoder.sdf_point_source = "uniform"
    config.encoder.sdf_point_pool = 4096
    config.encoder.sdf_uniform_share = 0.0
    # True: the tower also reads the view each sketch was drawn from (azimuth, elevation: known to the dataset,
    # to a user PNG's --sketch and to the page), as four constant planes beside the sketch (models.latent_encoder)
    config.encoder.view_input = False
    config.encoder.holdout_views = ()  # dataset views never trained on (held-out latent error)
    # after training: the fitting loss of the predicted latents on the val shapes' own SDF samples (a shape
    # error without meshes) at this many evenly spread views, `eval_points` samples each; 0: not measured
    config.encoder.eval_views = 9
    config.encoder.eval_points = 2048
    # > 0: this many latents sampled from the trained table (interpolations, Gaussian draws), rendered by the
    # sphere tracer from `sampled_views` dataset views into sketches and mixed into every batch
    # (`sampled_per_batch` each): shapes beyond the training meshes (sdfjax.train.sampled_shapes). Off: on
    # chairs256 cpu neither 2,048 (half Gaussian draws) nor 1,024 interpolated latents made a better encoder
    # (val score 14.95 / 14.27 against 14.47; val sketches' median Chamfer 2.570 against 2.286; README).
    config.encoder.sampled_shapes = 0
    config.encoder.sampled_views = 4
    config.encoder.sampled_per_batch = 16
    config.encoder.sampled_interpolation_share = 0.5
    config.encoder.steps_per_log = 100
    config.encoder.checkpoint_every_steps = 2_000
    config.encoder.cache_shapes = 2048
    config.encoder.rotation_degrees = 8.0  # augmentation: rotation in +-this
    config.encoder.scale_range = 0.1  # scale in 1 +- this
    config.encoder.shift_fraction = 0.05  # shift in +- this share of the side
    config.encoder.wobble_pixels = 0.7  # std of a smooth hand-drawn displacement field
    config.encoder.max_dilation = 1  # lines thickened by 0..this pixels
    config.encoder.drop_boxes = 3  # erased boxes (dropped and broken strokes)
    config.encoder.drop_size = 4  # pixels a side, at most

    # Sketch to shape: encoder start, then latent refinement through the tracer (sdfjax.sketch2shape).
    config.sketch = ml_collections.ConfigDict()
    config.sketch.azimuth = 40.0  # --sketch=<png>: the view the sketch was drawn from (degrees)
    config.sketch.elevation = -30.0
    config.sketch.views = (11,)  # --config.fit.split mode: dataset view indices of each shape's sketches
    config.sketch.views_together = False  # split mode: True: each shape one object drawn from all those views
    config.sketch.style = "dataset"  # split mode: dataset | hand_drawn (each stroke redrawn; evaluation only)
    config.sketch.init = "encoder"  # encoder | retrieval (mean of the top-k retrieved train latents) | mean
    # pixels the lines grow before the sketch-to-latent encoder reads a sketch (its input only; the masks and the
    # Siamese embedding read the sketch as drawn)
    config.sketch.encoder_line_growth = 0
    config.sketch.retrieval_k = 5
    config.sketch.iterations = 100
    config.sketch.lr = 3e-3
    # adam | isotropic_adam (one second moment per latent: steps along the gradient, sdfjax.fit.optimizer)
    config.sketch.optimizer = "adam"
    config.sketch.embedding_weight = 1.0  # Siamese embedding distance
    config.sketch.silhouette_weight = 1.0  # two-sided silhouette (sdfjax.render.silhouette)
    config.sketch.surface_eps = 0.003  # rays outside the outline are pushed this far off the surface
    config.sketch.silhouette_form = "relu"  # relu (two-sided, by distance) | soft (soft pixel error)
    config.sketch.silhouette_temperature = 0.03  # soft: a ray missing by d is exp(-d / T) occupied
    config.sketch.carve_margin = 0  # soft: hit rays outside the outline within this many pixels of it are not carved
    # background within this many pixels of the lines is not known (a hand's lines lie a pixel or two off the outline)
    config.sketch.line_band = 0
    # soft: a drawing with gaps (a hand's, see outline_tolerance) is carved only farther than this many pixels from
    # its lines; -1: not at all (its hand may have left out strokes)
    config.sketch.gap_carve_margin = -1
    config.sketch.enclosed = "unknown"  # regions the lines enclose: unknown (left out) | inside
    # pixels the lines grow before deciding what they enclose (closes gaps of 2k px in a hand's strokes)
    config.sketch.outline_tolerance = 0
    config.sketch.prior_weight = 1e-2  # Gaussian (Mahalanobis) prior fitted to the trained latents
    config.sketch.prior_shrinkage = 0.1  # covariance shrinkage towards its mean variance
    config.sketch.trust_weight = 0.0  # mean (z - z_start)^2: a trust region around the start
    # mean |f(z, a) - f(z_start, a)| at the start's surface points a that no sketch shows
    # (sdfjax.sketch2shape.hidden_surface): what the drawings cannot see keeps the start's shape
    config.sketch.hidden_weight = 0.0
    config.sketch.hidden_points = 1024  # anchors drawn per object
    config.sketch.batch = 8  # objects optimised by one vmapped step
    # Sphere-tracing budget per ray while refining (pictures and meshes use config.render's full budget):
    # the finishing rounds up to 400 steps cost 4-5x per step under vmap and grad, for the last rays. With
    # steps limited to render.max_step, 64 left 0.6% of the rays of the 36 chairs256 test sketches' encoder
    # shapes unfinished, 128 0.07% (23 decoder evaluations per ray against 21).
    config.sketch.trace_max_steps = 128
    config.sketch.fill = 0.8  # user sketches: the drawing's longer side takes this share of the image (dataset median)
    # user sketches: fixed (framed as `fill` says) | fit (scaled and centred where the encoder's shape agrees with the
    # drawing, sdfjax.sketch2shape.framing; not measured on chair16)
    config.sketch.user_framing = "fixed"
    config.sketch.references = True  # split mode: also score retrieval alone and SDF fitting (upper bound)
    config.sketch.sdf_fit_dir = ""  # split mode: read the SDF-fit rows from this fit run's metrics.csv

    if variant == "cpu":
        config.data.num_sdf_samples = 100_000
        config.model.latent_dim = 64
        config.model.hidden_dim = 128
        # 16 shapes at 4 per batch: 4 steps per epoch, 1,000 steps in all (make demo: the whole
        # product in 10 minutes). With 64 shapes per batch (DeepSDF) this set would get one step
        # per epoch, too few to learn. Halving the rates every 80 epochs flattens the loss by the end.
        config.train.num_epochs = 250
        config.train.scenes_per_batch = 4
        config.train.samples_per_scene = 4096
        config.train.decoder_lr = 2e-3
        config.train.latent_lr = 4e-3
        config.train.lr_decay_every_epochs = 80
        config.train.code_reg_warmup_epochs = 25
        config.train.checkpoint_every_epochs = 50
        # EMD is an exact assignment (O(n^3)): 4,096 points take about 6 s per mesh on 2 cores, 1,024 points
        # about 0.1 s; every metrics row of the cpu variant pays it.
        config.fit.emd_points = 1024
        # Fitting at DeepSDF's 800 steps x 8,000 samples took 2 of make demo's minutes for 4 shapes; half the
        # steps at a quarter of the samples is chairs256 cpu's budget (its val/test medians: 0.65 / 0.60).
        config.fit.num_iterations = 400
        config.fit.lr_decay_at = 200
        config.fit.samples_per_step = 2048
        config.mesh.resolution = 128
        config.render.resolution = 64
        config.render.focal = 128.0
        config.render.preview_resolution = 96
        config.siamese.width = 16
        config.siamese.shapes_per_batch = 8
        config.siamese.views_per_shape = 4
        config.siamese.num_steps = 500
        config.siamese.warmup_steps = 100
        config.siamese.steps_per_log = 50
        config.siamese.checkpoint_every_steps = 500
        config.encoder.width = 16
        config.encoder.shapes_per_batch = 8
        config.encoder.views_per_shape = 4
        config.encoder.num_steps = 600
        config.encoder.warmup_steps = 100
        config.encoder.steps_per_log = 50
        config.encoder.checkpoint_every_steps = 500
        config.sketch.iterations = 30
        config.sketch.retrieval_k = 1  # this small latent space: means of several chairs are not chairs
    elif variant == "smoke":
        config.data.root = "data/chair16_smoke"
        config.data.num_sdf_samples = 5_000
        config.data.num_surface_samples = 2_000
        config.data.num_workers = 1
        config.model.latent_dim = 16
        config.model.hidden_dim = 32
        config.model.num_layers = 4
        config.model.skip_layers = (2,)
        config.train.num_epochs = 30
        config.train.scenes_per_batch = 2
        config.train.samples_per_scene = 256
        config.train.decoder_lr = 2e-3
        config.train.latent_lr = 4e-3
        config.train.lr_decay_every_epochs = 1000
        config.train.code_reg_warmup_epochs = 10
        config.train.checkpoint_every_epochs = 10
        config.fit.num_iterations = 40
        config.fit.lr_decay_at = 20
        config.fit.samples_per_step = 512
        config.fit.emd_points = 256
        config.fit.partial_resolution = 48
        config.mesh.resolution = 32
        config.mesh.chunk = 8192
        config.traverse.steps = 3
        config.fit.normal_views = (0, 1)
        config.fit.normal_iterations = 5
        config.render.azimuths = (0, 90)
        config.render.elevations = (10,)
        config.render.resolution = 32
        config.render.focal = 64.0
        config.render.preview_views = (0, 1)
        config.render.preview_resolution = 32
        config.siamese.width = 4
        config.siamese.stage_blocks = (1, 1, 1, 1)
        config.siamese.embedding_dim = 16
        config.siamese.shapes_per_batch = 4
        config.siamese.views_per_shape = 2
        config.siamese.num_steps = 12
        config.siamese.warmup_steps = 2
        config.siamese.steps_per_log = 4
        config.siamese.checkpoint_every_steps = 4
        config.siamese.picture_queries = 2
        config.encoder.width = 4
        config.encoder.stage_blocks = (1, 1, 1, 1)
        config.encoder.shapes_per_batch = 2
        config.encoder.views_per_shape = 2
        config.encoder.num_steps = 12
        config.encoder.warmup_steps = 2
        config.encoder.steps_per_log = 4
        config.encoder.checkpoint_every_steps = 4
        config.encoder.sdf_points = 64
        config.sketch.views = (0,)
        config.sketch.azimuth = 0.0
        config.sketch.elevation = 10.0
        config.sketch.retrieval_k = 2
        config.sketch.iterations = 4
        config.sketch.batch = 2
    return config
