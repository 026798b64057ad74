"""Device mesh, shardings and multi-host start-up.

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
