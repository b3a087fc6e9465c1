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


def _run_transfer_stage(run_dir) -> dict[str, str]:
    subprocess.run([sys.executable, "-c", TRANSFER_STAGE, str(run_dir), json.dumps(TINY)],
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
