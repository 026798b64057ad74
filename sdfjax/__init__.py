"""sdfjax: DeepSDF and Sketch2Shape in JAX/Flax.

    import sdfjax
    model = sdfjax.load_pretrained("pretrained/chairs256_cpu")   # or a training run's folder
    mesh = model.mesh(model.latents.mean(axis=0))                 # a trimesh.Trimesh

The Python API is `sdfjax.api` (docs/api.md); the command lines are `python -m sdfjax.launch.<name>`.
"""

from sdfjax.version import __version__

_API = ("load_pretrained", "read_point_scan", "read_depth_image", "DepthScan", "Intrinsics")
__all__ = ["__version__", *_API]


def __getattr__(name):
    # The API pulls in JAX, Flax and the models: loaded on first use, so `import sdfjax.<module>` stays light.
    if name in _API:
        from sdfjax import api

        return getattr(api, name)
    raise AttributeError(f"module 'sdfjax' has no attribute {name!r}")
