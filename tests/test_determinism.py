"""Bit-for-bit reproducibility: a stage run twice, in separate processes, writes the same bytes."""
from __future__ import annotations

import json
import subprocess
import sys

TRANSFER_STAGE = """
import json, sys
from lib.config import MODES
from lib.run import context
from lib.stages import transfer
ctx = context.setup("smoke", sys.argv[1], 0, "cpu", json.loads(sys.argv[2]), notebook="test",
                    show_config=False)
for mode in MODES:
    transfer.require_transfer(ctx, mode, 0)
"""
TINY = {"target_epochs": 2, "perc_train_limit": 500, "gan_steps": 20, "gan_train_limit": 500,
        "transfer_steps": 4, "monitor_every": 2, "monitor_samples": 32, "ngd_rank": 2,
        "ngd_codes": 2}


def _run_transfer_stage(run_dir, before: str = "") -> dict[str, str]:
    subprocess.run([sys.executable, "-c", before + TRANSFER_STAGE, str(run_dir), json.dumps(TINY)],
                   check=True, capture_output=True, text=True)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {rel: entry["sha256"] for rel, entry in manifest.items()
            if entry.get("kind") == "safetensors"}


def test_the_transfer_stage_writes_the_same_bytes_in_two_processes(tmp_path):
    first = _run_transfer_stage(tmp_path / "a")
    second = _run_transfer_stage(tmp_path / "b")
    assert {"models/transfer/vanilla_seed0.safetensors",
            "models/transfer/entropy-ngd_seed0.safetensors",
            "models/ngd_metric_seed0.safetensors", "models/gan_prior.safetensors"} <= set(first)
    assert first == second


SUBNORMALS = """
import sys
import torch
{before}
torch.set_num_threads(2)
x = torch.ones(4_000_000, dtype=torch.int32).view(torch.float32)   # the smallest subnormal
print(int((x * 2.0**30 != 0).sum()), torch.get_num_threads())       # normal unless read as zero
"""
SETUP = ('from lib.run import context\n'
         'context.setup("smoke", sys.argv[1], 0, "cpu", notebook="test", show_config=False)')


def _nonzero_products(before: str, run_dir) -> int:
    done = subprocess.run([sys.executable, "-c", SUBNORMALS.format(before=before), str(run_dir)],
                          check=True, capture_output=True, text=True)
    nonzero, threads = map(int, done.stdout.split()[-2:])
    assert threads == 2
    return nonzero


def test_setup_flushes_subnormals_in_every_torch_thread(tmp_path):
    """The notebooks' setup reads subnormals as zero (lib.seeding.flush_denormals) before
    torch's thread pool exists, so every worker thread does too: products of subnormals split
    over two threads are zero everywhere. Controls: without the setting every product is
    nonzero, and set after the pool has started it reaches only part of them."""
    assert _nonzero_products(SETUP, tmp_path / "run") == 0
    assert _nonzero_products("", tmp_path / "plain") == 4_000_000
    late = "torch.set_num_threads(2); torch.ones(4_000_000).mul(2); torch.set_flush_denormal(True)"
    assert 0 < _nonzero_products(late, tmp_path / "late") < 4_000_000


DETERMINISM = """
import sys
import torch
{before}
print(torch.are_deterministic_algorithms_enabled(),
      torch.is_deterministic_algorithms_warn_only_enabled(), "torch._inductor" in sys.modules)
"""


def _determinism_flags(before: str, run_dir) -> list[str]:
    done = subprocess.run([sys.executable, "-c", DETERMINISM.format(before=before), str(run_dir)],
                          check=True, capture_output=True, text=True)
    return done.stdout.split()[-3:]


def test_setup_sets_deterministic_algorithms_without_loading_the_compiler(tmp_path):
    """The setup turns torch's deterministic algorithms on (warnings only) as
    ``torch.use_deterministic_algorithms`` does, without importing ``torch._inductor`` (2 s in
    every notebook). Control: torch's own function loads it."""
    assert _determinism_flags(SETUP, tmp_path / "run") == ["True", "True", "False"]
    torch_way = "torch.use_deterministic_algorithms(True, warn_only=True)"
    assert _determinism_flags(torch_way, tmp_path / "torch") == ["True", "True", "True"]
    import torch
    import torch._inductor.config as compiler
    from lib import seeding
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(), compiler.deterministic)
    try:                                                     # with the compiler loaded
        for mode in (True, False):
            seeding.use_deterministic_algorithms(mode)
            assert torch.are_deterministic_algorithms_enabled() == mode == compiler.deterministic
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        compiler.deterministic = before[2]


PAGE_FAULTS = """
import resource, sys
import torch
{before}
faults = []
for _ in range(12):                     # a 40 MB buffer allocated, written and freed each time
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(10 * 2**20).fill_(1.0)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[6:]))                  # the last six times (the heap grows in the first few)
"""


def _page_faults(before: str, run_dir) -> int:
    done = subprocess.run([sys.executable, "-c", PAGE_FAULTS.format(before=before), str(run_dir)],
                          check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1])


def test_setup_reuses_freed_memory_without_new_pages(tmp_path):
    """After the notebooks' setup (lib.allocator.reuse_freed_memory) a large buffer freed and
    allocated again reuses the heap's pages: none faulted in once the heap has grown. Control:
    with glibc's defaults a 40 MB block (above the 32 MB its adaptive threshold reaches) is
    mapped afresh every time, 10,240 pages of 4 KB."""
    assert _page_faults(SETUP, tmp_path / "run") < 1000
    assert _page_faults("", tmp_path / "plain") > 0.9 * 6 * 10240


NO_REUSE = "import lib.allocator\nlib.allocator.reuse_freed_memory = lambda: False\n"


def test_the_allocator_setting_changes_no_byte(tmp_path):
    """The transfer stage (training, the natural-gradient metric, three fine-tunings) writes
    the same bytes with the allocator's setting as without it (speed only)."""
    with_setting = _run_transfer_stage(tmp_path / "a")
    without = _run_transfer_stage(tmp_path / "b", before=NO_REUSE)
    assert len(with_setting) >= 4 and with_setting == without
