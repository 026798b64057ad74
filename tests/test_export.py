"""The accelerator paths, traced and exported for GPU and TPU on a machine without either (jax.export): every hot
step with the choices an accelerator makes (bf16, one pass), sharded over 8 devices where it shards, and no host
callback in any of them."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdfjax import exported_steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    from sdfjax import config_files, exported_steps, parallel

    mesh = parallel.make_mesh()
    paper, small = config_files.load("chair16"), config_files.load("chairs256:cpu")
    small.model.compute_dtype = "auto"  # the cpu variant pins float32 and chunks: ask for the accelerator's choices
    small.train.points_per_chunk = small.fit.points_per_chunk = -1
    found = {}
    for name in exported_steps.STEPS:
        # DeepSDF's step at the published size (8 x 512, latent 256, 64 scenes x 16,384 points); the others at the
        # results model's size, which exercises the same programs in a fraction of the tracing time.
        config = paper if name == "deepsdf_train" else small
        step, args = exported_steps.STEPS[name](config, "cuda", mesh)
        exported = exported_steps.export(step, args, ("cuda", "tpu"))
        text = exported.mlir_module()
        found[name] = {"platforms": list(exported.platforms), "devices": exported.nr_devices,
                       "callbacks": exported_steps.host_callbacks(exported), "bf16": "bf16" in text,
                       "loops": text.count("stablehlo.while")}
    step, args = exported_steps.STEPS["deepsdf_train"](paper, "cpu", mesh)  # the CPU's choice: chunks, a loop
    found["deepsdf_train_cpu"] = {"loops": exported_steps.export(step, args, ("cpu",)).mlir_module().count(
        "stablehlo.while")}
    print(json.dumps(found))
""")


@pytest.mark.slow
def test_every_hot_step_exports_for_gpu_and_tpu_with_their_settings_and_no_host_callback():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(found) == set(exported_steps.STEPS) | {"deepsdf_train_cpu"}
    cpu_loops = found.pop("deepsdf_train_cpu")["loops"]
    assert found["deepsdf_train"]["loops"] == 0 < cpu_loops  # one pass on an accelerator, chunks in a loop on a CPU
    for name, result in found.items():
        assert result["platforms"] == ["cuda", "tpu"] and result["callbacks"] == [], (name, result)
    for name in ("deepsdf_train", "batched_fit", "siamese_train", "encoder_train"):
        assert found[name]["devices"] == 8, name  # sharded over the mesh's 8 devices
    for name in ("deepsdf_train", "batched_fit", "sketch_refinement", "tracer_render"):
        assert found[name]["bf16"], name  # the accelerator's compute dtype for the decoder ("auto")


def test_a_host_callback_cannot_reach_an_exported_step():
    def with_callback(x):
        return jax.pure_callback(lambda v: np.asarray(v) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1

    args = (jax.ShapeDtypeStruct((4,), jnp.float32),)
    with pytest.raises(ValueError, match="cannot export for"):
        exported_steps.export(jax.jit(with_callback), args, ("cuda", "tpu"))
    plain = exported_steps.export(jax.jit(lambda x: x * 2 + 1), args, ("cuda", "tpu"))
    assert exported_steps.host_callbacks(plain) == []


def test_the_accelerators_choices_are_asked_for_by_name():
    from sdfjax import chunking, parallel
    from sdfjax.models import decoder as decoder_lib

    assert chunking.resolve(chunking.AUTO, "train", "cuda") == 0 and chunking.resolve(chunking.AUTO, "fit", "tpu") == 0
    assert chunking.resolve(chunking.AUTO, "train", "cpu") == chunking.CPU_POINTS_PER_CHUNK["train"]
    assert parallel.fast_compute_dtype("tpu") == "bfloat16" and parallel.fast_compute_dtype("cuda") == "bfloat16"
    from sdfjax import config_files

    model = config_files.load("chair16").model
    model.compute_dtype = "auto"
    assert decoder_lib.from_config(model, "tpu").compute_dtype == "bfloat16"


@pytest.mark.slow
def test_the_device_benchmark_runs_its_tiny_version_and_trains():
    done = subprocess.run([sys.executable, "-m", "benchmarks.device", "--tiny", "--repeats=2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "device" and result["tiny"] and result["backend"] == jax.default_backend()
    for key in ("train_points_per_s", "train_tflops", "matmul_tflops", "fit_shapes_per_s", "tracer_rays_per_s"):
        assert result[key] > 0, key
    assert 0 < result["train_peak_share"] and result["peak_memory_gb"] is None  # a CPU reports no device memory
    assert result["run_epochs"] == 3 and result["run_loss_last"] < result["run_loss_first"]
