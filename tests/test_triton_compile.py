"""The Triton kernels compile for a real GPU (sm_90, H100/H200) without one: ahead-of-time, through ptxas to a cubin.

The interpreter used by test_triton_ops.py runs kernels as Python and accepts code the GPU compiler rejects (it once
accepted a helper with two return types). This compiles every kernel variant the library launches — both
assignments, bf16/fp16/fp32, with and without dropout — and checks three properties of the generated code: ∇θ is
accumulated with atomics; the backward that also rebuilds the weight reads θ̃ back from 8-byte paired atomics
(atom.global.v2.f32), not with a second random load; and `mod d` never becomes a 64-bit division (d is a
compile-time constant, so the compiler turns it into a multiply-high and shifts; a power-of-two d into a mask).

Runs in a subprocess: the compiled (non-interpreted) kernels must be defined without TRITON_INTERPRET, which
test_triton_ops.py sets for its own process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import itertools, json
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from gpart import triton_ops as T

scalars = [("start", "i64"), ("seed", "i64"), ("k0", "i64"), ("k1", "i64"), ("k2", "i64"), ("k3", "i64")]
dropout = [("dropout_seed", "i64"), ("p", "fp32")]

def variants():
    partitions = [(False, 524288, 1 << 31, 1), (False, 23040, 14155776, 1), (True, 23040, 14155776, 12)]
    for (balanced, d, size, half), dtype, drop in itertools.product(partitions, ["bf16", "fp16", "fp32"], [False, True]):
        if dtype != "bf16" and d != 524288:
            continue  # every dtype once; the other partitions in bf16
        part = dict(D=d, SIZE=size, HALF_BITS=half, BALANCED=balanced, BLOCK_SIZE=T.BLOCK)
        yield ("build", T._build_kernel, [("base_ptr", "*" + dtype), ("scaled_theta_ptr", "*fp32"),
               ("out_ptr", "*" + dtype), ("numel", "i64")] + scalars + dropout,
               dict(part, HAS_BASE=True, HAS_DROPOUT=drop), balanced)
        for write in (False, True):
            yield ("reduce+weight" if write else "reduce", T._reduce_kernel, [("grad_ptr", "*" + dtype),
                   ("sums_ptr", "*fp32"), ("base_ptr", "*" + dtype), ("weight_ptr", "*" + dtype),
                   ("numel", "i64")] + scalars + dropout, dict(part, HAS_DROPOUT=drop, WRITE_WEIGHT=write, PAIRED=T.PAIRED_ATOMICS),
                   balanced)

report = []
for name, fn, signature, constants, balanced in variants():
    # As launched: pointers 16-byte aligned and numel a multiple of 16 (Triton specialises on both).
    aligned = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n, t in signature if t[0] == "*" or n == "numel"}
    signature = dict(signature, **{k: "constexpr" for k in constants})
    kernel = triton.compile(ASTSource(fn, signature, constexprs=constants, attrs=aligned),
                            target=GPUTarget("cuda", 90, 32))
    ptx = kernel.asm["ptx"]
    report.append(dict(name=name, balanced=balanced, d=constants["D"], cubin=len(kernel.asm["cubin"]),
                       atomics="atom." in ptx or "red." in ptx, paired="add.v2.f32" in ptx,
                       gathers=ptx.count("ld.global.b32"),
                       div64=any(op in ptx for op in ("div.u64", "rem.u64"))))
print(json.dumps(report))
"""


@pytest.mark.slow
def test_every_kernel_variant_compiles_to_sm90_without_64_bit_division(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(OMP_NUM_THREADS="1", TRITON_CACHE_DIR=str(tmp_path))  # compile afresh
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report) == (3 + 1 + 1) * 2 * 3  # (dtypes of one partition + two more) × dropout × kernels
    assert all(r["cubin"] > 0 for r in report)
    assert all(r["atomics"] for r in report if r["name"].startswith("reduce"))
    # The rebuilt weight's θ̃ comes back with the atomics: no scalar 4-byte gather of θ̃ beside them.
    assert all(r["paired"] and r["gathers"] == 0 for r in report if r["name"] == "reduce+weight")
    # Stateless ids: splitmix64 then `mod d` with d constant, no 64-bit divide. (The balanced map divides by N.)
    assert not any(r["div64"] for r in report if not r["balanced"])
