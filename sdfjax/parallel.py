"""Device mesh, shardings, multi-host start-up, and the compute dtype the hardware favours.

One 1-D mesh with axis `data`: batches are split along it, decoder parameters are
replicated, and the latent table is replicated or split along shapes (`shard_latents`).
On several hosts, `initialize` must run before anything touches a device.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA = "data"


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               cpu_collectives: str = "") -> None:
    """Starts multi-host JAX when asked to (flags) or when the environment says so.

    With explicit settings (a Slurm job or a test), they are passed on; on a Cloud TPU
    pod or under Slurm/Open MPI, `jax.distributed.initialize()` finds them itself.
    """
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    if coordinator_address:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    elif any(k in os.environ for k in ("TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")) \
            and int(os.environ.get("SLURM_NTASKS", os.environ.get("OMPI_COMM_WORLD_SIZE", "2"))) > 1:
        jax.distributed.initialize()


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # x86 units that multiply bf16 natively


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


ACCELERATORS = ("gpu", "cuda", "rocm", "tpu")  # jax.default_backend()'s "gpu" and jax.export's platform names


def platform_or_backend(platform: str | None) -> str:
    """`platform` ("cpu", "cuda", "rocm", "tpu"), or the running backend when None: every choice made by backend
    takes it as an argument, so a test can ask for an accelerator's choice on a CPU (and export for it)."""
    return platform or jax.default_backend()


def fast_compute_dtype(platform: str | None = None) -> str:
    """"bfloat16" where bf16 products are native (GPU, TPU, x86 with AMX-BF16 or AVX512_BF16), else "float32".

    Without those units XLA emulates bf16 products through float32 and they are slower than
    float32 ones (an AVX2-only AMD EPYC: 103 against 132 GFLOP/s, benchmarks/train_step).
    """
    if platform_or_backend(platform) in ACCELERATORS:
        return "bfloat16"
    return "bfloat16" if cpu_flags() & set(BF16_CPU_FLAGS) else "float32"


def resolve_compute_dtype(name: str, platform: str | None = None) -> str:
    """A config's compute dtype: "auto" becomes `fast_compute_dtype(platform)`; "float32" / "bfloat16" stay."""
    if name == "auto":
        return fast_compute_dtype(platform)
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"compute_dtype={name!r}: expected 'auto', 'float32' or 'bfloat16'")
    return name


def make_mesh() -> jax.sharding.Mesh:
    # Auto axes: XLA propagates shardings from the jit's in/out shardings (a gather of
    # replicated latents by sharded labels needs no annotation).
    return jax.make_mesh((jax.device_count(),), (DATA,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA))


def global_batch(local: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """This process's share of a batch (leading axis) -> global arrays split along `data`."""
    sharding = data_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in local.items()}


def is_main_process() -> bool:
    return jax.process_index() == 0
