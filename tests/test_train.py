"""DeepSDF training: loss goes down, checkpoints resume, sharding and hosts agree."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import chair16
from sdfjax import checkpoint, losses, trained
from sdfjax.data import layout, pipeline
from sdfjax.models import decoder as decoder_lib
from sdfjax.train import deepsdf, logs, loop, step as step_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def smoke_data(tiny_dataset):
    pipeline.preprocess_dataset(tiny_dataset, progress=False)
    return tiny_dataset


def test_clamped_l1_and_curriculum_against_definition():
    pred = jnp.array([0.5, -0.05, 0.02, 0.0])
    sdf = jnp.array([0.2, 0.05, -0.3, 0.01])
    expected = np.mean([0.0, 0.1, 0.12, 0.01])  # clamps at +-0.1 first
    np.testing.assert_allclose(losses.sdf_loss(pred, sdf, 0.1), expected, rtol=1e-6)
    # eps-insensitive, hard samples (prediction on the far side of the target) weighted 1 + gamma
    errors = np.maximum(np.array([0.0, 0.1, 0.12, 0.01]) - 0.02, 0)
    weights = 1 + 0.5 * np.sign([0.2, 0.05, -0.3, 0.01]) * np.sign(np.array([0.2, 0.05, -0.3, 0.01]) - pred)
    np.testing.assert_allclose(losses.sdf_loss(pred, sdf, 0.1, 0.02, 0.5), np.mean(weights * errors), rtol=1e-6)


def test_latents_are_projected_into_the_code_bound():
    z = jnp.array([[3.0, 4.0], [0.3, 0.4]])
    np.testing.assert_allclose(step_lib.project_latents(z, 1.0), [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)


@pytest.mark.slow
def test_smoke_training_lowers_loss_and_resumes_to_the_same_result(smoke_data, tmp_path):
    config = smoke_data
    config.train.num_epochs = 16
    config.train.checkpoint_every_epochs = 4
    full = deepsdf.train(config, str(tmp_path / "full"), progress=False)
    records = logs.read_metrics(str(tmp_path / "full"))
    assert len(records) == 16 and records[-1]["loss"] < 0.8 * records[0]["loss"]
    assert os.path.isfile(tmp_path / "full" / "loss.png")
    # Interrupted run: stop after 5 epochs (checkpoint at epoch 4 and at the stop), then resume.
    steps = full["step"] // 16
    part = deepsdf.train(config, str(tmp_path / "resumed"), progress=False, stop_after_steps=5 * steps)
    assert part["checkpoint_step"] == 5 * steps
    resumed = deepsdf.train(config, str(tmp_path / "resumed"), progress=False)
    assert resumed["step"] == full["step"]
    np.testing.assert_allclose(resumed["loss"], full["loss"], rtol=1e-5)
    meta = checkpoint.read_meta(str(tmp_path / "resumed"))
    assert meta["obj_ids"] == full["obj_ids"] and meta["config"]["model"]["hidden_dim"] == 32


@pytest.mark.slow
def test_decoder_mismatch_and_divergence_are_clear(smoke_data, tmp_path):
    config = smoke_data
    config.train.num_epochs = 2
    deepsdf.train(config, str(tmp_path / "run"), progress=False)
    wider = config.copy_and_resolve_references()
    wider.model.hidden_dim = 48
    with pytest.raises(ValueError, match="hidden_dim saved 32 vs config 48"):
        deepsdf.train(wider, str(tmp_path / "run"), progress=False)
    diverging = config.copy_and_resolve_references()
    diverging.train.num_epochs = 4
    diverging.train.decoder_lr = float("nan")
    with pytest.raises(loop.TrainingDiverged, match=r"at step \d+ .*last good checkpoint is step"):
        deepsdf.train(diverging, str(tmp_path / "run"), progress=False)
    assert checkpoint.manager(str(tmp_path / "run")).latest_step() == logs.read_metrics(str(tmp_path / "run"))[1]["step"]


@pytest.mark.slow
def test_a_train_shape_that_failed_preprocessing_has_no_latent_in_the_trained_model(tiny_dataset, tmp_path):
    config = tiny_dataset
    with open(os.path.join(layout.shape_dir(config.data.root, "chair_000_0000"), layout.MESH), "w") as f:
        f.write("not a mesh\n")
    results = pipeline.preprocess_dataset(config, progress=False)
    assert [r.status for r in results] == ["failed", "done", "done", "done"]
    config.train.num_epochs = 2
    deepsdf.train(config, str(tmp_path / "run"), progress=False)
    table = np.asarray(checkpoint.read_state(str(tmp_path / "run"))["params"]["latents"])
    assert len(table) == 2  # row 0 (label of the failed shape) exists but was never trained
    model = trained.load_trained(config, str(tmp_path / "run"))
    assert model.obj_ids == ["chair_000_0001"]
    np.testing.assert_array_equal(model.latents, table[1:2])
    np.testing.assert_array_equal(trained.resolve_latent("mean", model), table[1])


@pytest.mark.slow
def test_a_corrupt_latest_checkpoint_falls_back_and_a_cut_metrics_line_is_dropped(smoke_data, tmp_path):
    config = smoke_data
    config.train.num_epochs, config.train.checkpoint_every_epochs = 4, 2
    workdir = str(tmp_path / "run")
    first = deepsdf.train(config, workdir, progress=False)
    steps = sorted(checkpoint.manager(workdir).all_steps())
    assert len(steps) == 2 and steps[-1] == first["step"]
    for directory, _, files in os.walk(os.path.join(workdir, "checkpoints", str(steps[-1]), "state")):
        for name in files:
            with open(os.path.join(directory, name), "r+b") as f:
                f.write(b"\0garbage" * 8)
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"epoch": 9, "step": 99, "loss": 0.0')  # killed mid-write
    with pytest.warns(checkpoint.CheckpointFallbackWarning, match=rf"step {steps[-1]} .*using step {steps[0]}"):
        model = trained.load_trained(config, workdir)
    assert model.step == steps[0]
    config.train.num_epochs = 6
    with pytest.warns(checkpoint.CheckpointFallbackWarning):
        resumed = deepsdf.train(config, workdir, progress=False)
    assert resumed["step"] == 6 * (first["step"] // 4) and np.isfinite(resumed["loss"])
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lines = f.read().splitlines()
    assert all(json.loads(line)["step"] != 99 for line in lines)  # every line parses; the cut one is gone
    assert [r["epoch"] for r in logs.read_metrics(workdir)] == list(range(6))
    # An error that is not the data's (memory, a lost connection) is raised: no checkpoint is passed over for it.
    for error in (MemoryError("out of memory"), ConnectionError("bucket unreachable")):
        def failing_restore(*args, error=error, **kwargs):
            raise error
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(checkpoint, "restore", failing_restore)
            with pytest.raises(type(error)):
                checkpoint.restore_good(workdir, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0]),
                                        keys=("params",))


SHARDED = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", int(sys.argv[2]))
    import numpy as np
    from configs import chair16
    from sdfjax.train import deepsdf
    config = chair16.get_config("smoke")
    config.data.root = sys.argv[1]
    config.train.scenes_per_batch = 8
    config.train.num_epochs = 3
    config.train.shard_latents = sys.argv[3] == "1"
    summary = deepsdf.train(config, sys.argv[4], progress=False)
    from sdfjax import checkpoint
    leaves = jax.tree.leaves(checkpoint.read_state(sys.argv[4])["params"])
    print(json.dumps({"devices": jax.device_count(), "loss": summary["loss"],
                      "params": [np.asarray(x).ravel()[:50].tolist() for x in leaves]}))
""")


def _run_sharded(root, devices, shard_latents, workdir):
    result = subprocess.run([sys.executable, "-c", SHARDED, root, str(devices), str(int(shard_latents)), workdir],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_eight_simulated_devices_match_one(smoke_data, tmp_path):
    root = smoke_data.data.root
    one = _run_sharded(root, 1, False, str(tmp_path / "one"))
    eight = _run_sharded(root, 8, True, str(tmp_path / "eight"))
    assert one["devices"] == 1 and eight["devices"] == 8
    np.testing.assert_allclose(eight["loss"], one["loss"], atol=1e-5)
    # Same parameters (the padded latent rows of the sharded table are never used).
    for a, b in zip(one["params"], eight["params"]):
        n = min(len(a), len(b))
        np.testing.assert_allclose(a[:n], b[:n], atol=1e-5)


MULTI_HOST = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    from sdfjax import parallel
    parallel.initialize(sys.argv[1], 2, int(sys.argv[2]), cpu_collectives="gloo")
    from configs import chair16
    from sdfjax.train import deepsdf
    config = chair16.get_config("smoke")
    config.data.root = sys.argv[3]
    config.train.scenes_per_batch = 8
    config.train.num_epochs = 3
    summary = deepsdf.train(config, sys.argv[4], progress=False)
    print(json.dumps({"process": jax.process_index(), "devices": jax.device_count(), "loss": summary["loss"]}))
""")


@pytest.mark.slow
def test_two_processes_with_gloo_match_one_process(smoke_data, tmp_path):
    import socket

    root = smoke_data.data.root
    one = _run_sharded(root, 1, False, str(tmp_path / "one"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", MULTI_HOST, f"127.0.0.1:{port}", str(i), root,
                               str(tmp_path / "multi")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [r["devices"] for r in results] == [4, 4]
    for r in results:
        np.testing.assert_allclose(r["loss"], one["loss"], atol=1e-5)
    assert checkpoint.manager(str(tmp_path / "multi")).latest_step() == 3


@pytest.mark.slow
@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_a_step_in_chunks_of_points_equals_one_pass(compute_dtype):
    config = chair16.get_config("smoke")
    config.model.dropout_rate = 0.0  # dropout aside, chunks change only the order of the sums
    config.model.compute_dtype = compute_dtype
    decoder = decoder_lib.from_config(config.model)
    optimizer = step_lib.make_optimizer(config.train, 10)
    state = step_lib.init_state(decoder, optimizer, 6, jax.random.key(0), config.train.code_bound)
    rng = np.random.default_rng(0)
    batch = {"labels": jnp.asarray([5, 0, 2, 3], jnp.int32),
             "xyz": jnp.asarray(rng.uniform(-1, 1, (4, 64, 3)), jnp.float32),
             "sdf": jnp.asarray(rng.normal(0, 0.1, (4, 64)), jnp.float32)}
    results = {}
    for points_per_chunk in (0, 64):  # 64: 4 chunks of 4 scenes x 16 points
        config.train.points_per_chunk = points_per_chunk
        step = jax.jit(step_lib.make_train_step(decoder, optimizer, config.train, 10, 0))
        results[points_per_chunk] = step(jax.tree.map(jnp.copy, state), batch)
    (one_state, one_metrics), (chunked_state, chunked_metrics) = results[0], results[64]
    np.testing.assert_allclose(chunked_metrics["loss"], one_metrics["loss"], rtol=1e-5)
    tolerance = 1e-4 if compute_dtype == "float32" else 2e-3  # sums in another order: float32 rounding
    for got, want, before in zip(jax.tree.leaves(chunked_state["params"]), jax.tree.leaves(one_state["params"]),
                                 jax.tree.leaves(state["params"])):
        np.testing.assert_allclose(got - before, want - before, atol=tolerance * float(np.abs(want - before).max()))
    moved = np.abs(np.asarray(one_state["params"]["latents"] - state["params"]["latents"])).sum(axis=1)
    assert np.all(moved[[5, 0, 2, 3]] > 0) and np.all(moved[[1, 4]] == 0)  # only the batch's rows learn
