"""Default training on dataset families: test IoU of templates, Weak-Net, λ = 0, slices and full supervision.

Each family (see :mod:`weaknet.families`) is split into training and held-out test cases; 25 simulated
clicks per training case give the templates; every model trains with the command line's defaults (planned
from the data) within ``--budget`` minutes, Weak-Net once with the default λ = 0 and once with ``--lambda``;
the table prints per family the mean test IoU per method, the
IoU of the training templates the weak models learnt from, and the wall time of each model. The reference
is the templates' own IoU (Weak-Net must beat it).
"""

from __future__ import annotations

import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--families", default="ct,mri,em,nuclei",
                   help="comma-separated, of ct, mri, em, clean, nuclei, stardist (default ct,mri,em,nuclei)")
    p.add_argument("--output", type=Path, default=Path("out/bench-families"), help="work folder")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding napari/ (nuclei) and stardist/")
    p.add_argument("--points", type=int, default=25, help="clicks per case N (default 25)")
    p.add_argument("--budget", type=float, default=None, help="minutes per model (default: the plan's)")
    p.add_argument("--test", type=int, default=6, help="held-out test cases per family (default 6)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=1.0,
                   help="λ of the reconstruction-term column (default 1; the library default λ = 0 is the other; "
                        "0 leaves the column out)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)


def _mean(rows, method, key="iou"):
    vals = [r[key] for r in rows if r["method"] == method and r.get(key) not in (None, "")]
    return sum(vals) / len(vals) if vals else float("nan")


def run(args) -> int:
    from ..config import TrainConfig
    from ..experiment import ExperimentConfig, run_experiment
    from ..families import write_family

    table = []
    for name in [f.strip() for f in args.families.split(",") if f.strip()]:
        t0 = time.perf_counter()
        ds = write_family(name, args.output / name / "data", args.data_dir, args.seed)
        train = TrainConfig(device=args.device, seed=args.seed, budget_minutes=args.budget, lambda_=args.lambda_)
        cfg = ExperimentConfig(points=[args.points], slices=[1], n_test=args.test, ablation=True, seed=args.seed,
                               train=train)
        exp = run_experiment(ds, args.output / name, cfg,
                             progress=lambda m, name=name: print(f"[{name}] {m}", flush=True),
                             show_training=False, overlays=False, title=f"family {name}")
        rows = exp.rows
        plan = next(iter(exp.models.values()), {}).get("plan", [])
        table.append({"family": name, "cases": f"{len(exp.pool)}+{len(exp.test)}",
                      "train_tpl": _mean(rows, "weaknet", "train_template_iou"),
                      "template": _mean(rows, "template"),
                      "weak": _mean(rows, "weaknet") if args.lambda_ > 0 else float("nan"),
                      "weak0": _mean(rows, "weaknet0" if args.lambda_ > 0 else "weaknet"),
                      "slices": _mean(rows, "slices"), "full": _mean(rows, "full"),
                      "minutes": (time.perf_counter() - t0) / 60, "plan": "; ".join(plan)})
        print(f"[{name}] done in {table[-1]['minutes']:.1f} min", flush=True)
    with_lambda = args.lambda_ > 0
    head = ("family", "cases", "train templates", "test templates", "Weak-Net (λ=0, default)") + \
        ((f"λ={args.lambda_:g}",) if with_lambda else ()) + ("slices S=1", "full", "min", "default − train tpl")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        scores = ("train_tpl", "template", "weak0") + (("weak",) if with_lambda else ()) + ("slices", "full")
        cells = [r["family"], r["cases"]] + [f"{r[k]:.3f}" for k in scores] + \
            [f"{r['minutes']:.1f}", f"{r['weak0'] - r['train_tpl']:+.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    for r in table:
        print(f"plan [{r['family']}]: {r['plan']}")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "families.md").write_text(text + "\n", encoding="utf-8")
    return 0
