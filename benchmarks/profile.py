"""Where a jitted step's time goes: its matrix products timed on their own, from its jaxpr.

    products = dot_generals(jax.make_jaxpr(step)(state, batch).jaxpr)
    seconds = products_seconds(products, repeats=10)    # all of them, once each, as the step runs them

XLA's CPU profiler gives per-op times only through a trace viewer; this reads the step's
own products (shapes, dtypes, dimension numbers, accumulation type) off its jaxpr and
times exactly those, so "products" against "the rest" (elementwise work, dropout bits,
weight norm, the optimiser) needs no trace and cannot drift from the step it describes.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def dot_generals(jaxpr) -> list:
    """Every dot_general equation of `jaxpr` as often as it runs: those of inner jaxprs (pjit, custom
    VJPs) included, a scan body's once per iteration (the step's chunks of points, sdfjax.chunking)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn)
        repeats = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's jaxpr
                if hasattr(sub, "eqns"):
                    found.extend(dot_generals(sub) * repeats)
    return found


def product_flops(eqn) -> int:
    """2 x (output elements) x (contracted length) of one dot_general."""
    (lhs_contract, _), _ = eqn.params["dimension_numbers"]
    contracted = int(np.prod([eqn.invars[0].aval.shape[d] for d in lhs_contract]))
    return 2 * int(np.prod(eqn.outvars[0].aval.shape)) * contracted


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of fn() over `repeats` calls, after two untimed ones (compile, warm-up)."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def products_seconds(eqns: list, repeats: int = 10) -> float:
    """Median seconds of one jitted function that runs each product of `eqns` once on random operands
    (distinct for repeated equations, so XLA cannot merge them)."""
    operands = []
    for i, eqn in enumerate(eqns):
        pair = []
        for j, var in enumerate(eqn.invars):
            key = jax.random.fold_in(jax.random.key(i), j)
            pair.append(jax.random.normal(key, var.aval.shape, jnp.float32).astype(var.aval.dtype))
        operands.append(tuple(pair))
    specs = [(eqn.params["dimension_numbers"], eqn.params.get("preferred_element_type")) for eqn in eqns]

    @jax.jit
    def run(operands):
        return [jax.lax.dot_general(a, b, dims, preferred_element_type=out) for (a, b), (dims, out)
                in zip(operands, specs)]

    return median_seconds(lambda: jax.block_until_ready(run(operands)), repeats)
