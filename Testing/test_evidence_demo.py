"""`weaknet demo` (the README's first command) end to end on CPU, asserting the method's claims on its
phantoms with distracting edges: Weak-Net beats the templates it was trained on (N = 25) and the slice
baseline at equal effort, and lands near full supervision. ≈ 50 s on 2 quiet cores; deterministic (the
same numbers on every run, see docs/evidence.md)."""

from __future__ import annotations

import csv

import pytest

from weaknet.demo import run_demo


@pytest.mark.slow
def test_quick_demo_claims_and_report(tmp_path):
    exp = run_demo(tmp_path / "demo", mode="quick", device="cpu", progress=lambda m: None, show_training=False)
    h = exp.report["headline"]
    assert h["N"] == 25
    # the method's whole point: better than the rough templates it learned from
    assert h["weaknet"] > h["train_template"] + 0.01, h
    # beats the slice baseline at equal (±10 %) or lower effort
    fair = [(s, iou) for s, iou, eff in h["slices"] if 0.9 <= eff / h["weaknet_effort"] <= 1.1]
    assert fair and all(h["weaknet"] > iou for _, iou in fair), h
    assert 0.85 <= h["ratio"] <= 1.05, h
    out = tmp_path / "demo"
    for name in ("report.html", "results.csv", "summary.md", "iou_vs_effort.png"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "overlays").glob("*.png"))
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert {r["method"] for r in rows} >= {"template", "weaknet", "slices", "full"}
    assert all(0.0 <= float(r["iou"]) <= 1.0 for r in rows)
