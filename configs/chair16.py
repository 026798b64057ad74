r"""DeepSDF and Sketch2Shape on the procedural `chair16` set (16 train, 4 val, 4 test chairs).

One config holds every stage's settings (data, model, train, fit, mesh, traverse, render,
siamese, encoder, sketch), so every stage reads the same values. Variants
(`--config=configs/chair16.py:<variant>`):

  (default)  DeepSDF's published chairs spec (Park et al. 2019), for a GPU or TPU.
  cpu        sized so that `make demo` runs the whole product on a 2-core CPU in minutes.
  smoke      runs in seconds, for tests.

    python -m data_gen.preprocess --config=configs/chair16.py:cpu
    python -m data_gen.preprocess --config=configs/chair16.py --config.data.root=data/my_meshes

Point the whole pipeline at another dataset with `--config.data.root=data/<name>`.
Measurements behind the chosen values are in docs/experiments.md.
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
    config.data = data()
    config.model = model()
    config.train = train()
    config.fit = fit()
    config.mesh = mesh()
    config.traverse = traverse()
    config.render = render()
    config.siamese = siamese()
    config.encoder = encoder()
    config.sketch = sketch()
    if variant == "cpu":
        cpu(config)
    elif variant == "smoke":
        smoke(config)
    return config


def data() -> ml_collections.ConfigDict:
    """Where the dataset lives and how each mesh is sampled (DeepSDF's sampling)."""
    c = ml_collections.ConfigDict()
    c.root = "data/chair16"  # meshes, per-shape samples and the TFDS dataset
    c.num_sdf_samples = 500_000  # SDF samples per shape (DeepSDF)
    c.near_surface_fraction = 47 / 50  # share of samples near the surface; the rest uniform in the unit cube
    c.near_surface_variances = (0.005, 0.0005)  # the two Gaussian perturbations of surface points (DeepSDF)
    c.num_surface_samples = 30_000  # surface points per shape, for Chamfer and EMD
    c.num_workers = 2  # preprocessing processes
    # limits on one shape's preprocessing (its time, and its memory beyond the worker's own): a huge or
    # pathological mesh fails alone, named in failures.csv; 0: none
    c.shape_seconds = 900.0
    c.shape_memory_mb = 8192
    c.tfds_dir = ""  # empty: <root>/tfds
    return c


def model() -> ml_collections.ConfigDict:
    """The decoder f(z, x): DeepSDF's chairs network (1,843,195 parameters)."""
    c = ml_collections.ConfigDict()
    c.latent_dim = 256  # length of each shape's code z
    c.hidden_dim = 512  # width of the hidden layers
    c.num_layers = 8  # hidden layers
    c.skip_layers = (4,)  # layers that read [z, x] again (DeepSDF)
    c.dropout_rate = 0.2  # DeepSDF's dropout on every hidden layer
    c.weight_norm = True  # weight normalisation on the hidden layers (DeepSDF)
    # auto: bfloat16 products where the hardware multiplies them natively (GPU, TPU, AMX or AVX512_BF16), else
    # float32 (sdfjax.parallel.fast_compute_dtype); bfloat16 keeps float32 accumulation and parameters
    c.compute_dtype = "auto"
    c.fourier_frequencies = 0  # > 0: positional encoding of xyz (off in DeepSDF)
    return c


def train() -> ml_collections.ConfigDict:
    """DeepSDF's auto-decoder schedule: decoder and latent table trained together."""
    c = ml_collections.ConfigDict()
    c.num_epochs = 2001  # DeepSDF's chairs schedule
    c.scenes_per_batch = 64  # shapes per step
    c.samples_per_scene = 16_384  # SDF samples per shape per step
    c.decoder_lr = 5e-4  # DeepSDF's decoder learning rate
    c.latent_lr = 1e-3  # DeepSDF's latent learning rate
    c.lr_decay_every_epochs = 500  # both rates are multiplied by lr_decay_factor this often
    c.lr_decay_factor = 0.5
    c.clamp_distance = 0.1  # delta of the clamped L1 (DeepSDF Eq. 9)
    c.code_reg_weight = 1e-4  # 1 / sigma^2 of the latent prior (DeepSDF Eq. 9)
    c.code_reg_warmup_epochs = 100  # the prior's weight ramps up over these epochs (DeepSDF's code)
    c.code_bound = 1.0  # latents are kept inside this ball (DeepSDF's CodeBound)
    c.grad_clip_norm = 0.0  # 0: off
    c.checkpoint_every_epochs = 100
    c.shard_latents = False  # True: split the latent table along shapes over devices (large datasets)
    # points per decoder pass (sdfjax.chunking): -1 chooses by backend (cache-sized chunks on a CPU, one pass on a
    # GPU or TPU); 0: one pass. Each chunk draws its own dropout masks.
    c.points_per_chunk = -1
    c.cache_shapes = 4096  # shapes' samples kept in host memory
    # Curriculum DeepSDF (Duan et al. 2020): tolerance eps and hard-sample weight gamma per stage
    c.curriculum = ml_collections.ConfigDict()
    c.curriculum.enabled = False  # off in DeepSDF
    c.curriculum.epochs = (0, 200, 400, 600, 800)  # where each stage starts
    c.curriculum.eps = (0.025, 0.01, 0.0025, 0.0, 0.0)
    c.curriculum.gamma = (0.0, 0.1, 0.2, 0.5, 0.5)
    return c


def fit() -> ml_collections.ConfigDict:
    """DeepSDF's reconstruction of a split's shapes: only their latents are optimised."""
    c = ml_collections.ConfigDict()
    c.split = "val"  # train | val | test
    c.obj_ids = ""  # comma-separated subset of the split; empty: all of it
    c.init = "normal"  # normal (N(0, init_std^2)) | mean | category_mean | random | prior | <latent row>
    c.init_std = 0.01  # DeepSDF's reconstruct.py
    c.restarts = 1  # best of K initialisations by fitting loss (the paper reports K = 2)
    c.num_iterations = 800  # DeepSDF's reconstruct.py
    c.lr = 5e-3
    c.lr_decay_at = 400  # the rate is multiplied by lr_decay_factor here
    c.lr_decay_factor = 0.1
    c.samples_per_step = 8000  # DeepSDF's reconstruct.py
    c.points_per_chunk = -1  # as train.points_per_chunk
    c.code_reg_weight = 1e-4
    c.shapes_per_batch = 16  # shapes optimised by one vmapped step
    c.max_shapes = 0  # > 0: only the first this many shapes of the split (when obj_ids is empty)
    # Shape completion (DeepSDF Sec. 6.3): fit to what one depth camera sees (sdfjax.fit.partial)
    c.partial = False
    c.partial_azimuth = 30.0  # degrees, the depth camera (config.render's distance and focal length)
    c.partial_elevation = 20.0
    c.partial_resolution = 128  # depth image pixels per side
    c.save_mesh = True
    c.metrics = True  # Chamfer, EMD and the others against the shape's surface samples
    c.emd_points = 4096  # points per side of the exact EMD assignment (O(n^3))
    # fitting to normal maps (sdfjax.launch.optimize_normals)
    c.normal_views = (0, 16, 47, 62)  # view indices of the dataset's view set
    c.normal_iterations = 200
    c.normal_lr = 1e-2
    c.silhouette_weight = 1.0
    return c


def mesh() -> ml_collections.ConfigDict:
    """Marching cubes on [-1, 1]^3, coarse to fine."""
    c = ml_collections.ConfigDict()
    c.resolution = 256  # voxels per side
    c.coarse_to_fine = True
    # slope bound of the coarse-to-fine rule; a learned SDF is no distance, so 0 measures each field's steepest
    # slope first (the mesh equals the dense grid's); a fixed bound is cheaper but may miss thin parts
    c.lipschitz = 0.0
    c.chunk = 65_536  # decoder points per call
    c.original_frame = False  # also write meshes mapped back to the shape's own frame
    return c


def traverse() -> ml_collections.ConfigDict:
    """Meshes along a line between two latents."""
    c = ml_collections.ConfigDict()
    c.start = "mean"  # mean | <train latent row> | <obj_id>
    c.end = "0"
    c.steps = 20
    c.interpolation = "linear"  # linear | slerp
    return c


def render() -> ml_collections.ConfigDict:
    """The dataset's views and the sphere tracer."""
    c = ml_collections.ConfigDict()
    c.azimuths = tuple(range(0, 360, 20))  # degrees, 0 the chair's front: people draw chairs from every side
    # degrees above the seat (sdfjax.render.camera): a near-level side view, the 15-35 degrees people draw
    # three-quarter views from, and a high one; view index = azimuth index * 5 + elevation index
    c.elevations = (5, 15, 25, 35, 50)
    c.resolution = 256  # pixels per side
    c.focal = 512.0  # pixels at `resolution`
    c.distance = 4.0  # camera to the origin, in the normalised frame
    c.stage_steps = (6, 6, 8, 16, 32)  # sphere-tracing steps per stage
    c.stage_fractions = (1.0, 0.5, 0.25, 0.125, 0.0625)  # share of rays marched per stage
    c.threshold = 2e-4  # |sdf| below which a ray has hit
    c.step_scale = 1.0  # < 1 for SDFs that overestimate distances
    # longest step: train.clamp_distance, beyond which the decoder's values are no distances and longer steps
    # jump through thin parts (sdfjax.render.tracer)
    c.max_step = 0.1
    c.latents = "mean"  # render launcher: comma-separated mean | <row> | <obj_id> | <npz>:<obj_id>
    c.preview_views = (0, 16, 47, 62)  # view indices shown in picture grids: front, right, back, left
    c.preview_resolution = 128
    return c


def siamese() -> ml_collections.ConfigDict:
    """Sketch2Shape's Siamese encoder: sketches and normal maps in one embedding space."""
    c = ml_collections.ConfigDict()
    c.width = 64  # first-stage channels; 64 is ResNet-18's (64, 128, 256, 512)
    c.stage_blocks = (2, 2, 2, 2)  # ResNet-18
    c.embedding_dim = 128
    c.normalize = True  # unit-length embeddings: distances in [0, 2]
    c.shared_tower = True  # one tower for both modalities (Sketch2Shape); False: two
    c.compute_dtype = "float32"  # or "bfloat16"
    c.triplet = "batch_all"  # batch_all | batch_hard (Hermans et al. 2017); see sdfjax.train.siamese
    c.margin = 0.2  # triplet margin, in embedding distance
    c.shapes_per_batch = 16  # P shapes x K views, each view a sketch and its normal map
    c.views_per_shape = 4
    c.num_steps = 20_000
    c.lr = 1e-3
    c.warmup_steps = 500
    c.weight_decay = 1e-4
    c.steps_per_log = 100  # one metrics.jsonl line per this many steps
    c.checkpoint_every_steps = 2_000
    c.cache_shapes = 2048  # shapes' images kept in host memory
    c.rotation_degrees = 10.0  # sketch augmentation: rotation in +-this
    c.max_dilation = 2  # sketch augmentation: lines thickened by 0..this pixels
    c.flip = True  # horizontal flip of a sketch and its normal map together
    hand_strokes(c)
    c.index_split = "val"  # eval_siamese: normal maps of this split form the index
    c.query_split = "val"  # eval_siamese: sketches of this split are the queries
    c.picture_queries = 6  # eval_siamese: queries shown with their top-5
    return c


def encoder() -> ml_collections.ConfigDict:
    """Sketch2Shape's sketch-to-latent encoder (sdfjax.train.encoder)."""
    c = ml_collections.ConfigDict()
    c.width = 64  # the Siamese tower's: ResNet-18 widths (64, 128, 256, 512)
    c.stage_blocks = (2, 2, 2, 2)
    c.compute_dtype = "float32"  # or "bfloat16"
    c.shapes_per_batch = 16  # P shapes x K views per batch
    c.views_per_shape = 4
    c.num_steps = 20_000
    c.lr = 1e-3
    c.warmup_steps = 500
    c.weight_decay = 1e-4
    c.sdf_weight = 1.0  # weight of the clamped SDF L1 through the frozen decoder (Sketch2Shape)
    c.sdf_points = 512  # uniform points per sketch for that term
    c.view_input = False  # True: the tower also reads the view each sketch was drawn from (models.latent_encoder)
    c.holdout_views = ()  # dataset views never trained on (held-out latent error)
    c.eval_views = 9  # val views scored after training (the fitting loss of the predicted latents); 0: none
    c.eval_points = 2048  # SDF samples per scored sketch
    c.steps_per_log = 100
    c.checkpoint_every_steps = 2_000
    c.cache_shapes = 2048
    c.rotation_degrees = 8.0  # augmentation: rotation in +-this
    c.scale_range = 0.1  # scale in 1 +- this
    c.shift_fraction = 0.05  # shift in +- this share of the side
    c.wobble_pixels = 0.7  # std of a smooth hand-drawn displacement field
    c.max_dilation = 1  # lines thickened by 0..this pixels
    c.drop_boxes = 3  # erased boxes (dropped and broken strokes)
    c.drop_size = 4  # pixels a side, at most
    hand_strokes(c)
    return c


def hand_strokes(c: ml_collections.ConfigDict) -> None:
    """Sketch augmentation of both encoders: lines drawn as a hand draws them (sdfjax.train.augment.hand_strokes),
    mild enough that a 64 px sketch's neighbouring lines stay apart."""
    c.overshoot_pixels = 2  # lines run past their ends and corners by 1..this pixels
    c.overshoot_share = 0.3  # at this share of those places
    c.twice_share = 0.1  # share of the image drawn a second time beside the first
    c.twice_pixels = 0.8  # about this far from it
    c.wide_share = 0.1  # share of the image where the pen is a pixel wider


def sketch() -> ml_collections.ConfigDict:
    """Sketch to shape: the encoder's start, then latent refinement through the tracer (sdfjax.sketch2shape)."""
    c = ml_collections.ConfigDict()
    c.azimuth = 40.0  # --sketch=<png>: the view the sketch was drawn from (degrees): front right,
    c.elevation = 25.0  # and from above
    c.views = (12,)  # --config.fit.split mode: dataset view indices of each shape's sketches
    c.views_together = False  # split mode: True: each shape is one object drawn from all those views
    c.style = "dataset"  # split mode: dataset | hand_drawn (each stroke redrawn; evaluation only)
    c.init = "encoder"  # encoder | retrieval (mean of the top-k retrieved train latents) | mean
    # pixels the lines grow before the sketch-to-latent encoder reads a sketch (its input only; the masks and the
    # Siamese embedding read the sketch as drawn)
    c.encoder_line_growth = 0
    c.retrieval_k = 5
    c.iterations = 100  # refinement steps
    c.lr = 3e-3  # Adam on the latent
    c.embedding_weight = 1.0  # Siamese embedding distance
    # relu (two-sided, by distance: moves a start whose outline is far off) | soft (a soft pixel error that also
    # carves: for a start already close); sdfjax.sketch2shape.losses
    c.silhouette_form = "relu"
    c.silhouette_weight = 1.0  # summed over the views: each outline is evidence of its own
    c.surface_eps = 0.003  # relu: rays outside the outline are pushed this far off the surface
    c.silhouette_temperature = 0.03  # soft: a ray missing by d is exp(-d / T) occupied
    c.carve_margin = 0  # soft: hit rays within this many pixels of the outline are not carved
    c.line_band = 0  # background within this many pixels of the lines is not known (a hand's lines lie off it)
    c.gap_carve_margin = -1  # soft: a drawing with gaps is carved only farther than this from its lines; -1: never
    c.outline_tolerance = 0  # pixels the lines grow before deciding what they enclose (closes gaps of 2k px)
    # the refined latent replaces the start only when it lowers the loss by this share: a drawing's gaps and wobble
    # are weak evidence, and a small gain in the loss is no gain in shape
    c.min_improvement = 0.0
    c.prior_weight = 1e-2  # Gaussian (Mahalanobis) prior fitted to the trained latents
    c.prior_shrinkage = 0.1  # covariance shrinkage towards its mean variance
    c.batch = 8  # objects optimised by one vmapped step
    # sphere-tracing steps per ray while refining (pictures and meshes use config.render's full budget): the last
    # rays' finishing rounds cost several times more per step under vmap and grad
    c.trace_max_steps = 128
    c.fill = 0.8  # user sketches: the drawing's longer side takes this share of the image (the set's median)
    # user sketches: fixed (framed as `fill` says) | fit (scaled and centred where the encoder's shape agrees with
    # the drawing, sdfjax.sketch2shape.framing)
    c.user_framing = "fixed"
    c.references = True  # split mode: also score retrieval alone and SDF fitting (upper bound)
    c.sdf_fit_dir = ""  # split mode: read the SDF-fit rows from this fit run's metrics.csv
    return c


def cpu(config: ml_collections.ConfigDict) -> None:
    """`make demo` on a 2-core CPU: a small decoder and encoders, short schedules, 64 px images."""
    config.data.num_sdf_samples = 100_000
    config.model.latent_dim = 64
    config.model.hidden_dim = 128
    # 16 shapes at 4 per batch: 4 steps per epoch, 1,000 steps in all (with DeepSDF's 64 per batch this set
    # would get one step per epoch, too few to learn); halving the rates every 80 epochs flattens the loss
    config.train.num_epochs = 250
    config.train.scenes_per_batch = 4
    config.train.samples_per_scene = 4096
    config.train.decoder_lr = 2e-3
    config.train.latent_lr = 4e-3
    config.train.lr_decay_every_epochs = 80
    config.train.code_reg_warmup_epochs = 25
    config.train.checkpoint_every_epochs = 50
    config.fit.emd_points = 1024  # the exact assignment is cubic: 4,096 points take seconds per mesh
    config.fit.num_iterations = 400  # enough for 64-d latents of a small decoder
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
    config.sketch.retrieval_k = 1  # in a latent space this small, means of several chairs are not chairs


def smoke(config: ml_collections.ConfigDict) -> None:
    """Every stage in seconds, for tests: tiny networks, few samples, two views."""
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
    config.fit.normal_views = (0, 1)
    config.fit.normal_iterations = 5
    config.mesh.resolution = 32
    config.mesh.chunk = 8192
    config.traverse.steps = 3
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
