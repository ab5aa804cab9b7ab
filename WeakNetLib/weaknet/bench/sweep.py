"""The reconstruction term's sweep: test IoU of Weak-Net over λ, d and γ on dataset families, templates from N clicks.

For each family (:mod:`weaknet.families`), each N in ``--points`` and each (λ, d, reconstruction net) in
``--lambdas`` × ``--distances`` × ``--recon-nets`` (λ = 0 once: it has no reconstruction net), one Weak-Net
trains with the command line's defaults otherwise (``--budget`` minutes; the reconstruction net of λ > 0 runs
on top, so those take longer) and predicts the held-out cases; γ is swept on the same foreground
probabilities (thresholding is free), with the plan's post-processing. The reference is λ = 0 at γ = 0.5
(the default, no reconstruction net) in the same run: every cell is printed with its difference to it.
Runs into the same ``--output`` add to its table, so a grid can be measured in parts. ``--variants`` trains each
λ > 0 cell once more per named set of further training settings (e.g. ``cauchy:recon_loss=cauchy``), a row each.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--families", default="clean,ct,mri,em,nuclei", help="comma-separated (default clean,ct,mri,em,"
                                                                         "nuclei)")
    p.add_argument("--output", type=Path, default=Path("out/bench-sweep"), help="work folder")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="folder holding napari/ (nuclei)")
    p.add_argument("--points", default="10,25", help="clicks per case N, comma-separated (default 10,25)")
    p.add_argument("--lambdas", default="0,0.1,1", help="λ values, comma-separated (default 0,0.1,1)")
    p.add_argument("--distances", default="5", help="d values in mm, comma-separated (default 5)")
    p.add_argument("--recon-nets", default="unet", help="reconstruction nets, comma-separated (unet, local)")
    p.add_argument("--variants", default="plain", help="further settings for the λ > 0 cells: NAME:field=value,… "
                                                   "separated by ';', plain for the cell as it is (e.g. "
                                                   "'plain;cauchy:recon_loss=cauchy'; default plain)")
    p.add_argument("--gammas", default="0.3,0.4,0.5,0.6,0.7", help="γ values swept at prediction")
    p.add_argument("--budget", type=float, default=None, help="minutes per model (default: the plan's)")
    p.add_argument("--test", type=int, default=6, help="held-out test cases per family (default 6)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _scores(exp, model_dir: Path, gammas: list[float], device: str) -> dict[float, float]:
    """Mean test IoU of the model in ``model_dir`` at each γ (the same probabilities thresholded)."""
    import numpy as np

    from ..metrics import iou
    from ..postprocess import apply
    from ..predict import load_model, predict_volume

    model = load_model(model_dir, device)
    per_gamma = {g: [] for g in gammas}
    for c in exp.test:
        _, prob = predict_volume(model, c.image)
        for g in gammas:
            per_gamma[g].append(iou(apply(prob.array >= g, model.postprocess), c.label.array))
    return {g: float(np.mean(v)) for g, v in per_gamma.items()}


def _variants(text: str) -> list[tuple[str, dict]]:
    """[(name, {field: parsed value})] from ``--variants`` text; 'plain' (or nothing) is ("", {}), the plain cell."""
    from ..config import parse_setting
    from ..errors import InputError

    out = []
    for part in [v.strip() for v in text.split(";") if v.strip()]:
        if part == "plain":
            out.append(("", {}))
            continue
        name, _, body = part.partition(":")
        if not name.strip() or not body.strip():
            raise InputError(f"--variants {part!r}: write NAME:field=value,…")
        settings = {}
        for item in body.split(","):
            key, _, value = item.partition("=")
            settings[key.strip()] = parse_setting(key.strip(), value)
        out.append((name.strip(), settings))
    return out or [("", {})]


def run(args) -> int:
    from ..config import TrainConfig
    from ..experiment import ExperimentConfig, run_experiment
    from ..families import write_family

    points = [int(v) for v in _floats(args.points)]
    lambdas, distances, gammas = _floats(args.lambdas), _floats(args.distances), _floats(args.gammas)
    nets = [v.strip() for v in args.recon_nets.split(",") if v.strip()]
    variants = _variants(args.variants)
    if 0.0 not in lambdas:
        lambdas = [0.0] + lambdas  # the reference
    rows = []
    for name in [f.strip() for f in args.families.split(",") if f.strip()]:
        ds = write_family(name, args.output / name / "data", args.data_dir, args.seed)
        for n in points:
            for lam in lambdas:
                cells = itertools.product(distances, nets, variants) if lam > 0 else [(distances[0], "unet", ("", {}))]
                for d, net, (tag, extra) in cells:
                    t0 = time.perf_counter()
                    train = TrainConfig(device=args.device, seed=args.seed, budget_minutes=args.budget, lambda_=lam,
                                        boundary_distance=d, recon_net=net, **extra)
                    cfg = ExperimentConfig(points=[n], slices=[], full=False, n_test=args.test, seed=args.seed,
                                           train=train)
                    run_dir = args.output / name / (f"N{n}_lambda{lam:g}_d{d:g}_{net}{'_' + tag if tag else ''}"
                                                  if lam > 0 else f"N{n}_lambda0")
                    exp = run_experiment(ds, run_dir, cfg, progress=lambda m, t=f"{name} {run_dir.name}": print(
                        f"[{t}] {m}", flush=True), show_training=False, overlays=False,
                        title=f"sweep {name} {run_dir.name}")
                    tpl = [r["train_template_iou"] for r in exp.rows if r["method"] == "weaknet"]
                    rows.append({"family": name, "N": n, "lambda": lam, "d": d, "recon": net if lam > 0 else "–",
                                 "variant": tag,
                                 "train_templates": sum(tpl) / len(tpl),
                                 "iou": _scores(exp, run_dir / "runs" / f"weaknet_P{len(exp.pool)}_N{n}" / "model",
                                                gammas, args.device),
                                 "minutes": (time.perf_counter() - t0) / 60})
                    print(f"[{name} {run_dir.name}] {json.dumps(rows[-1])}", flush=True)
    rows = _merged(args.output / "sweep.json", rows)
    text = table(rows, gammas)
    print(text)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "sweep.md").write_text(text + "\n", encoding="utf-8")
    (args.output / "sweep.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


def _merged(path: Path, rows: list[dict]) -> list[dict]:
    """``rows`` added to those of an earlier sweep in the same folder (a setting measured again replaces its
    row; finished models are not trained again), sorted by family, N, λ, reconstruction net, d, variant."""
    key = lambda r: (r["family"], r["N"], r["lambda"], r["recon"], r["d"], r.get("variant", ""))  # noqa: E731
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    for r in earlier:  # JSON keys are strings
        r["iou"] = {float(g): v for g, v in r["iou"].items()}
    merged = {key(r): r for r in earlier}
    merged.update({key(r): r for r in rows})
    return [merged[k] for k in sorted(merged)]


def table(rows: list[dict], gammas: list[float]) -> str:
    """Markdown: one row per (family, N, λ, d, reconstruction net, variant); test IoU at γ = 0.5, its difference to
    λ = 0 (γ = 0.5) of the same family and N, and the best γ with its IoU."""
    head = ("family", "N", "train templates", "λ", "d mm", "recon net", "variant", "Weak-Net (γ 0.5)", "− λ=0",
            "best γ", "IoU at best γ", "min")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ref = next(q for q in rows if q["family"] == r["family"] and q["N"] == r["N"] and q["lambda"] == 0.0)
        at = r["iou"].get(0.5, float("nan"))
        best = max(gammas, key=lambda g: r["iou"][g])
        lines.append(f"| {r['family']} | {r['N']} | {r['train_templates']:.3f} | {r['lambda']:g} | {r['d']:g} | "
                     f"{r['recon']} | {r.get('variant') or '–'} | "
                     f"{at:.3f} | {at - ref['iou'].get(0.5, float('nan')):+.3f} | {best:g} | {r['iou'][best]:.3f} | "
                     f"{r['minutes']:.1f} |")
    return "\n".join(lines)
