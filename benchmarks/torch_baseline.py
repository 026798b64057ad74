r"""The PyTorch baseline the benchmarks compare against: DeepSDF's and Sketch2Shape's hot loops as those systems
run them, in plain PyTorch on the CPU, with their published defaults.

    python benchmarks/torch_baseline.py train-step --points 16384 --dtype bfloat16
    python benchmarks/torch_baseline.py reconstruct --shapes 2 --iters 20 --samples 8000
    python benchmarks/torch_baseline.py render --resolution 64 --scene sphere_plus_decoder --focal 128

It runs in its own interpreter (`--torch_python` of benchmarks/train_step.py, fit.py and render.py: a venv with
`pip install torch numpy`); it imports nothing of sdfjax, so sdfjax never depends on torch. Workloads:

  train-step   one auto-decoder step: the chairs decoder (8 x 512, weight norm, dropout 0.2, [z, x] again
               before layer 4, tanh), clamped L1 (0.1) + 1e-4 mean ||z||, Adam at 5e-4 (decoder) and 1e-3
               (latents, an embedding table kept in the unit ball), `--points` points of random shapes.
  reconstruct  DeepSDF's reconstruction, one shape after another: Adam on the latent alone at 5e-3 (x0.1
               half-way), `--iters` steps of `--samples` points, clamped L1 + 1e-4 mean z^2.
  render       Sketch2Shape's tracer: 100 sphere-tracing steps clamped to 0.1 under no_grad, then normals
               by central differences (6 more decoder calls per pixel), from (0, 0, -4) looking along +z.

`--dtype bfloat16` runs the decoder under CPU autocast (bf16 products, float32 parameters and optimiser):
the fair baseline for a bf16 step. Each workload is timed as the median of `--repeats` calls after one
warm-up; the last line printed is one JSON object.
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time

# Run as a script, this file's folder comes first on the path, and its benchmarks/profile.py would shadow the
# standard library's `profile`, which torch imports: the folder is dropped before torch is imported.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import torch  # noqa: E402
from torch import nn  # noqa: E402

CLAMP = 0.1  # DeepSDF's delta, of the loss and of the tracer's steps


class ChairsDecoder(nn.Module):
    """f([z, x]) -> sdf in (-1, 1): DeepSDF's chairs network as its paper and code define it."""

    def __init__(self, latent_dim: int, width: int, num_layers: int = 8, skip_layer: int = 4,
                 dropout: float = 0.2):
        super().__init__()
        input_dim = latent_dim + 3
        self.skip_layer, self.dropout, self.num_layers = skip_layer, dropout, num_layers
        widths_out = [width - input_dim if i + 1 == skip_layer else width for i in range(num_layers)] + [1]
        widths_in = [input_dim] + [w + (input_dim if i + 1 == skip_layer else 0)
                                   for i, w in enumerate(widths_out[:-1])]
        self.layers = nn.ModuleList()
        for i, (fan_in, fan_out) in enumerate(zip(widths_in, widths_out)):
            linear = nn.Linear(fan_in, fan_out)
            self.layers.append(nn.utils.parametrizations.weight_norm(linear) if i < num_layers else linear)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = inputs
        for i, layer in enumerate(self.layers):
            h = layer(torch.cat([h, inputs], -1) if i == self.skip_layer else h)
            if i == self.num_layers:
                return torch.tanh(h)
            h = torch.relu(h)
            if self.training and self.dropout:
                h = nn.functional.dropout(h, self.dropout)
        raise AssertionError("unreachable")


def clamped_l1(pred: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
    return (pred.clamp(-CLAMP, CLAMP) - sdf.clamp(-CLAMP, CLAMP)).abs().mean()


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def autocast(dtype: str):
    return torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else contextlib.nullcontext()


def train_step(args) -> dict:
    torch.manual_seed(0)
    decoder = ChairsDecoder(args.latent, args.width)
    table = nn.Embedding(args.shapes, args.latent, max_norm=1.0)
    nn.init.normal_(table.weight, std=args.latent ** -0.5)
    adam = torch.optim.Adam([{"params": decoder.parameters(), "lr": 5e-4}, {"params": table.parameters(), "lr": 1e-3}])
    rows = torch.randint(args.shapes, (args.points,))
    xyz, sdf = torch.rand(args.points, 3) * 2 - 1, torch.randn(args.points, 1) * 0.05

    def step():
        adam.zero_grad()
        z = table(rows)
        with autocast(args.dtype):
            pred = decoder(torch.cat([z, xyz], -1)).float()
        (clamped_l1(pred, sdf) + 1e-4 * z.norm(dim=-1).mean()).backward()
        adam.step()

    seconds = median_seconds(step, args.repeats)
    return {"workload": "train-step", "points": args.points, "seconds_per_step": seconds,
            "points_per_s": args.points / seconds}


def reconstruct(args) -> dict:
    torch.manual_seed(0)
    decoder = ChairsDecoder(args.latent, args.width).eval().requires_grad_(False)
    shapes = [(torch.rand(args.samples, 3) * 2 - 1, torch.randn(args.samples, 1) * 0.05) for _ in range(args.shapes)]

    def fit_every_shape():
        for xyz, sdf in shapes:
            z = (0.01 * torch.randn(1, args.latent)).requires_grad_()
            adam = torch.optim.Adam([z], lr=5e-3)
            for step in range(args.iters):
                if step == args.iters // 2:
                    adam.param_groups[0]["lr"] = 5e-4
                adam.zero_grad()
                with autocast(args.dtype):
                    pred = decoder(torch.cat([z.expand(len(xyz), -1), xyz], -1)).float()
                (clamped_l1(pred, sdf) + 1e-4 * z.pow(2).mean()).backward()
                adam.step()

    seconds = median_seconds(fit_every_shape, args.repeats)
    return {"workload": "reconstruct", "shapes": args.shapes, "iters": args.iters, "samples": args.samples,
            "seconds": seconds, "shapes_per_s": args.shapes / seconds,
            "decoder_points_per_s": args.shapes * args.iters * args.samples / seconds}


def render(args) -> dict:
    torch.manual_seed(0)
    decoder = ChairsDecoder(args.latent, args.width).eval()
    z = 0.01 * torch.randn(1, args.latent)
    resolution, distance = args.resolution, 4.0
    focal = args.focal or 2.0 * resolution
    rows, cols = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    directions = torch.stack([(resolution / 2 - cols) / focal, (resolution / 2 - rows) / focal,
                              torch.ones(resolution, resolution)], -1).reshape(-1, 3)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    origin = torch.tensor([0.0, 0.0, -distance])
    evaluated = [0]

    def field(points):
        evaluated[0] += len(points)
        with autocast(args.dtype):
            f = decoder(torch.cat([z.expand(len(points), -1), points], -1)).float()
        return points.norm(dim=-1, keepdim=True) - 0.5 + 0.05 * f if args.scene == "sphere_plus_decoder" else f

    def trace():
        with torch.no_grad():
            t = torch.full((len(directions), 1), distance - 1.1)  # just before the unit sphere
            for _ in range(100):
                t = t + field(origin + t * directions).clamp(-CLAMP, CLAMP)
            hit = origin + t * directions
            normals = torch.cat([field(hit + 5e-3 * axis) - field(hit - 5e-3 * axis) for axis in torch.eye(3)], -1)
            return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-8)

    seconds = median_seconds(trace, args.repeats)
    return {"workload": "render", "resolution": resolution, "scene": args.scene,
            "camera": "origin (0, 0, -4), looking +z", "focal_px": focal, "seconds": seconds,
            "rays_per_s": len(directions) / seconds,
            "decoder_evals_per_ray": evaluated[0] / (1 + args.repeats) / len(directions)}


def cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=["train-step", "reconstruct", "render"])
    parser.add_argument("--latent", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--points", type=int, default=16384, help="train-step: points per step")
    parser.add_argument("--shapes", type=int, default=16)
    parser.add_argument("--iters", type=int, default=20, help="reconstruct: steps per shape")
    parser.add_argument("--samples", type=int, default=8000, help="reconstruct: points per step")
    parser.add_argument("--resolution", type=int, default=64, help="render: pixels per side")
    parser.add_argument("--focal", type=float, default=0.0, help="render: focal length in pixels (0: 2 x resolution)")
    parser.add_argument("--scene", choices=["decoder", "sphere_plus_decoder"], default="decoder")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=0, help="timed calls (0: 5 for train-step, else 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.repeats = args.repeats or (5 if args.workload == "train-step" else 1)
    run = {"train-step": train_step, "reconstruct": reconstruct, "render": render}[args.workload]
    result = {**run(args), "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": args.dtype,
              "cpu": cpu_name()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
