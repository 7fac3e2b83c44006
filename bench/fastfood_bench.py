"""Step time of the Fastfood projection (the DID baseline) beside GPart's partition, side by side in one process.

    python -m bench.fastfood_bench                     # RoBERTa-base q,v shapes (12 blocks of 768×768), CPU
    python -m bench.fastfood_bench --d 1024 23040 --device cuda

A step is forward + backward of a stack of q,v linears on one batch; each projection is built on the same weights,
and the steps run round-robin so that background load hits both alike. Printed: setup time, the best step time of
each over --steps, and the ratio fastfood / partition. On CPU, one thread by default (--threads).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from gpart import GPartConfig, apply_gpart


class QVStack(nn.Module):
    def __init__(self, blocks: int, width: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleDict({"query": nn.Linear(width, width), "value": nn.Linear(width, width)}) for _ in range(blocks)
        )

    def forward(self, x):
        for block in self.layers:
            x = torch.tanh(block["value"](block["query"](x)))
        return x


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fastfood_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, nargs="+", default=[23040, 1024])
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--batch", type=int, nargs=2, default=[8, 64], metavar=("SEQUENCES", "TOKENS"))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on shared machines)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = torch.randn(*args.batch, args.width, device=args.device)
    for d in args.d:
        models, times = {}, {}
        for projection in ("partition", "fastfood"):
            torch.manual_seed(0)
            start = time.perf_counter()
            config = GPartConfig(d=d, target_modules=["query", "value"], projection=projection, backend="torch")
            models[projection] = apply_gpart(QVStack(args.blocks, args.width).to(args.device), config)
            print(f"d={d:,} {projection}: setup {time.perf_counter() - start:.2f} s")
            times[projection] = []
        for _ in range(args.steps):
            for projection, model in models.items():
                start = time.perf_counter()
                model(x).sum().backward()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[projection].append(time.perf_counter() - start)
        best = {projection: min(values) for projection, values in times.items()}
        print(
            f"d={d:,}: step partition {best['partition']:.3f} s, fastfood {best['fastfood']:.3f} s, "
            f"ratio {best['fastfood'] / best['partition']:.2f}"
        )


if __name__ == "__main__":
    main()
