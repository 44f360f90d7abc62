"""Benchmark of the LHM network at full size with random weights (run: python benchmarks/lhm_network.py [--sizes 500M 1B]).

For each size, in its own child process (so peak memory is per size): build the network with random
weights, then one reconstruction of a 1694x1022 body crop and a 112x112 head crop, timed per stage:
body encoder (a Sapiens-1B-shaped random stand-in: one patchifying conv to [1,1536,64,64], none of
Sapiens-1B's compute), head encoder (bicubic head super-resolution, DINOv2-L at 448, fusion head),
transformer (point embedding, body-head layers) and decode (Gaussian head, Avatar). Peak memory per
stage: RSS high-water mark reset before each stage (``/proc/self/clear_refs``) on CPU, peak allocated
memory on CUDA. Writes the "## LHM network" section of RESULTS.md with ``--write``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic SMPL-X body (no licensed files needed)

import torch  # noqa: E402
from results import cpu_model, write_section  # noqa: E402

SIZES = ("MINI", "500M", "1B")
TARGETS = {"500M": "< 1.0 s, < 10 GB", "1B": "< 2.0 s, < 14 GB"}  # H100 targets of the issue


class PeakMemory:
    """Peak memory of a stage: host RSS high-water mark (CPU) or peak allocated memory (CUDA), in GB."""

    def __init__(self, device: torch.device):
        self.device = device

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            # "5" resets the VmHWM high-water mark of this process (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")

    def peak_gb(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 1e9
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1e6


def run_size(size: str, device: str, dtype: str) -> dict:
    """Build LHM-<size> with random weights and time one reconstruction per stage."""
    import synthetic_smplx

    import lhm
    from lhm.body.canonical import sample_surface
    from lhm.engines.lhm_engine import LHMEngine
    from lhm.models import RandomSapiens, SapiensEncoder, build_model
    from lhm.models.head_sr import BicubicHeadSR
    from lhm.models.prior import prior_buffers

    dev = torch.device(device)
    mem = PeakMemory(dev)
    stages = {}

    def stage(name, fn):
        mem.reset()
        t = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        stages[name] = {"s": time.perf_counter() - t, "peak_gb": mem.peak_gb()}
        return out

    with tempfile.TemporaryDirectory() as tmp:
        synthetic_smplx.write_smplx_folder(tmp)
        body = lhm.load_body("smplx", tmp)
    torch.manual_seed(0)

    def build():
        net = build_model(f"LHM-{size}", dev).to(getattr(torch, dtype))
        samples = sample_surface(body, net.config.dense_sample_pts)
        net.renderer.smplx_model.fill(prior_buffers(body, samples), only_missing=False)
        sapiens = SapiensEncoder(RandomSapiens(net.config.fine_encoder_feat_dim), net.config.fine_encoder_resolution)
        return LHMEngine(net, sapiens, body, samples, head_sr=BicubicHeadSR(), device=dev)

    engine = stage("build (random init)", build)
    gen = torch.Generator().manual_seed(0)
    image, head = torch.rand(1, 3, 1694, 1022, generator=gen), torch.rand(1, 3, 112, 112, generator=gen)
    betas = torch.zeros(10)
    t0 = time.perf_counter()
    body_tokens = stage("body encoder (Sapiens stand-in)", lambda: engine.encode_body(image))
    head_tokens = stage("head encoder (SR + DINOv2 + fusion)", lambda: engine.encode_head(head))
    latent = stage("transformer", lambda: engine.transform(body_tokens, head_tokens))
    avatar = stage("decode (Gaussian head + Avatar)", lambda: engine.to_avatar(engine.decode(latent), betas))
    total = time.perf_counter() - t0
    assert torch.isfinite(avatar.gaussians.means).all()
    params = sum(p.numel() for p in engine.network.parameters())
    return {"size": size, "device": str(dev), "dtype": dtype, "params_m": params / 1e6, "stages": stages,
            "forward_s": total, "gaussians": len(avatar), "load_avg": os.getloadavg()[1]}


def machine() -> str:
    """One line describing where the numbers come from."""
    return (f"{len(os.sched_getaffinity(0))} cores (`nproc`), {cpu_model()}, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


def section(results: list[dict]) -> str:
    """The RESULTS.md section for these runs."""
    lines = ["## LHM network", "",
             f"`python benchmarks/lhm_network.py --sizes {' '.join(r['size'] for r in results)} --write`, "
             f"{datetime.date.today().isoformat()}: {machine()}.", "",
             "Full-size architectures with random weights; one 1694x1022 body crop + 112x112 head crop. The body "
             "encoder is a Sapiens-1B-*shaped* random stand-in (one conv to [1,1536,64,64]): the real Sapiens-1B "
             "forward (~1.2B-parameter ViT on 4096 tokens) is not included. Head super-resolution is the bicubic "
             "fallback. Peak = RSS high-water mark of the process during the stage (CPU) / peak allocated (CUDA).", ""]
    for r in results:
        lines += [f"### LHM-{r['size']} ({r['params_m']:.1f} M parameters, {r['gaussians']:,} Gaussians, "
                  f"{r['device']}, {r['dtype']})", "", "| stage | time | peak memory |", "| --- | --- | --- |"]
        lines += [f"| {name} | {v['s']:.2f} s | {v['peak_gb']:.2f} GB |" for name, v in r["stages"].items()]
        lines += [f"| **forward total (encoders + transformer + decode)** | **{r['forward_s']:.1f} s** | |", "",
                  f"5-minute load average at the end of the run: {r['load_avg']:.1f} on {len(os.sched_getaffinity(0))} "
                  "cores (above the core count, other jobs shared the CPU and the times are upper bounds).", ""]
    lines += ["No GPU was lent for this task, so the H100 targets are unmeasured: "
              + "; ".join(f"LHM-{k} {v}" for k, v in TARGETS.items())
              + ". On CPU the body-block attention over 44,096 tokens (40,000 queries + 4,096 Sapiens tokens) "
              "dominates the transformer time.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=SIZES, default=["500M"], help="network sizes (default 500M)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--write", action="store_true", help="write the '## LHM network' section of RESULTS.md")
    parser.add_argument("--child", choices=SIZES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_size(args.child, args.device, args.dtype)))
        return
    print(f"machine: {machine()}")
    results = []
    for size in args.sizes:
        print(f"LHM-{size} on {args.device} ({args.dtype}) ... (on a small CPU this takes minutes)", flush=True)
        cmd = [sys.executable, __file__, "--child", size, "--device", args.device, "--dtype", args.dtype]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        results.append(r)
        for name, v in r["stages"].items():
            print(f"  {name:38s} {v['s']:8.2f} s   peak {v['peak_gb']:6.2f} GB")
        print(f"  {'forward total':38s} {r['forward_s']:8.2f} s")
    if args.write:
        print(f"wrote {write_section(section(results))}")


if __name__ == "__main__":
    main()
