"""An experiment's report: per-case CSV, Table-1-style summary (CSV, Markdown, text), IoU-vs-effort plot,
iso-IoU curves (Fig. 6 style), overlay pictures (image slice + truth + template + predictions) and a
self-contained ``report.html`` linking them.
"""

from __future__ import annotations

import csv
import html
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .config import TrainConfig

#: The paper's reported Weak-Net IoU as a fraction of full supervision's, for comparison.
PAPER_RATIO_TO_FULL = "92–97%"

LABELS = {"template": "Template (ASM) alone", "weaknet": "Weak-Net (points)",
          "weaknet0": "Weak-Net λ=0 (CE only)", "slices": "U-Net on slices", "full": "Full supervision"}
COLOURS = {"truth": "#00d000", "template": "#ffd000", "weaknet": "#ff2020", "weaknet0": "#ff9000",
           "slices": "#30a0ff", "full": "#ff40ff"}
ORDER = ("template", "weaknet", "weaknet0", "slices", "full")


def summarize(rows: list[dict]) -> list[dict]:
    """One row per (method, samples, points, slices): means and standard deviations over the test cases,
    Weak-Net's ratio to full supervision (same P) and its training templates' IoU."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["samples"], r["points"], r["slices"])].append(r)
    full_iou = {k[1]: np.mean([r["iou"] for r in g]) for k, g in groups.items() if k[0] == "full"}
    order = {m: i for i, m in enumerate(ORDER)}
    out = []
    for (method, p, n, s), g in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1],
                                                                        kv[0][2] or 0, kv[0][3] or 0)):
        ious = np.array([r["iou"] for r in g])
        row = {"method": method, "samples": p, "points": n, "slices": s, "cases": len(g),
               "effort_pct": float(np.mean([r["effort_pct"] for r in g])),
               "iou_mean": float(ious.mean()), "iou_std": float(ious.std()),
               "dice_mean": float(np.mean([r["dice"] for r in g])),
               "hd95_mm": float(np.nanmean([r["hd95_mm"] for r in g])) if _any_finite(g, "hd95_mm") else math.nan,
               "msd_mm": float(np.nanmean([r["msd_mm"] for r in g])) if _any_finite(g, "msd_mm") else math.nan,
               "ratio_to_full": (float(ious.mean() / full_iou[p]) if method != "full" and full_iou.get(p)
                                 else math.nan),
               "train_template_iou": float(g[0].get("train_template_iou", math.nan)),
               "train_seconds": float(g[0]["train_seconds"])}
        out.append(row)
    return out


def _any_finite(g: list[dict], key: str) -> bool:
    return any(np.isfinite(r[key]) for r in g)


def setting(row: dict) -> str:
    """'N=25', 'S=2' or '—'."""
    if row["points"] != "":
        return f"N={row['points']}"
    if row["slices"] != "":
        return f"S={row['slices']}"
    return "all"


def table_text(summary: list[dict], markdown: bool = False) -> str:
    """The Table-1-style summary as aligned text (or a Markdown table)."""
    head = ["method", "P", "annotation", "effort % of full", "IoU mean ± std", "Dice", "HD95 mm", "MSD mm",
            "IoU / full", "train-template IoU"]
    lines = []
    for r in summary:
        lines.append([LABELS[r["method"]], "—" if r["method"] == "template" else str(r["samples"]), setting(r),
                      f"{r['effort_pct']:.1f}", f"{r['iou_mean']:.3f} ± {r['iou_std']:.3f}",
                      f"{r['dice_mean']:.3f}", _f(r["hd95_mm"], 2), _f(r["msd_mm"], 2),
                      "" if math.isnan(r["ratio_to_full"]) else f"{100 * r['ratio_to_full']:.0f}%",
                      _f(r["train_template_iou"], 3, "")])
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*ln) for ln in lines])


def _f(v: float, digits: int, nan: str = "—") -> str:
    return nan if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def write_csv(rows: list[dict], path: Path) -> Path:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


# ------------------------------------------------------------------------------------------ plots

def plot_iou_vs_effort(summary: list[dict], path: Path, title: str = "") -> Path:
    """IoU (mean ± std over test cases) against annotation effort (% of full, log scale), per method and P."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    series: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in summary:
        series[(r["method"], r["samples"])].append(r)
    for (method, p), rs in series.items():
        rs = sorted(rs, key=lambda r: r["effort_pct"])
        x = [r["effort_pct"] for r in rs]
        y = [r["iou_mean"] for r in rs]
        label = LABELS[method] + ("" if method == "template" or len(series) <= 4 else f" (P={p})")
        ax.errorbar(x, y, yerr=[r["iou_std"] for r in rs], color=COLOURS[method], marker="o", capsize=3,
                    label=label, linestyle="-" if len(rs) > 1 else "none")
        for r in rs:
            if method != "full":
                ax.annotate(setting(r), (r["effort_pct"], r["iou_mean"]), textcoords="offset points",
                            xytext=(4, -11), fontsize=7, color=COLOURS[method])
    ax.set_xscale("log")
    ax.set_xlabel("annotation effort per training case (% of full annotation, log)")
    ax.set_ylabel("test IoU")
    ax.set_title(title or "IoU vs annotation effort", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_iso_iou(summary: list[dict], path: Path) -> Path | None:
    """Iso-IoU curves over (annotated samples P, effort per sample %): Weak-Net solid, slices dashed.

    Needs ≥ 2 values of P and ≥ 2 settings for a method; returns None when no method has that grid.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    drawn = False
    for method, style in (("weaknet", "solid"), ("slices", "dashed")):
        rs = [r for r in summary if r["method"] == method]
        ps = sorted({r["samples"] for r in rs})
        params = sorted({r["points"] if method == "weaknet" else r["slices"] for r in rs})
        if len(ps) < 2 or len(params) < 2:
            continue
        grid_iou = np.full((len(params), len(ps)), np.nan)
        grid_eff = np.full((len(params), len(ps)), np.nan)
        for r in rs:
            i = params.index(r["points"] if method == "weaknet" else r["slices"])
            grid_iou[i, ps.index(r["samples"])] = r["iou_mean"]
            grid_eff[i, ps.index(r["samples"])] = r["effort_pct"]
        if np.isnan(grid_iou).any():
            continue
        xx = np.tile(np.asarray(ps, float), (len(params), 1))
        levels = np.round(np.linspace(np.nanmin(grid_iou), np.nanmax(grid_iou), 6)[1:-1], 3)
        cs = ax.contour(xx, grid_eff, grid_iou, levels=levels, colors=COLOURS[method], linestyles=style)
        ax.clabel(cs, fontsize=7, fmt="%.3f")
        ax.plot([], [], color=COLOURS[method], linestyle=style, label=f"{LABELS[method]} iso-IoU")
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_yscale("log")
    ax.set_xlabel("annotated training cases P")
    ax.set_ylabel("effort per case (% of full, log)")
    ax.set_title("iso-IoU curves (lower-left is cheaper)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_overlay(image: np.ndarray, spacing, masks: dict[str, np.ndarray], path: Path, title: str = "",
                 styles: dict[str, tuple[str, str]] | None = None) -> Path:
    """Axial and coronal slices through the truth's centre: image in grey, one contour per mask.

    image and masks (D, H, W); spacing (x, y, z) mm sets the aspect; ``masks`` keys: 'truth', 'template',
    'weaknet', 'slices', 'full' (any subset), or any key given a (colour, legend label) in ``styles``.
    """
    styles = {**{k: (COLOURS[k], {"truth": "truth"}.get(k, LABELS.get(k, k))) for k in COLOURS}, **(styles or {})}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    truth = masks["truth"]
    k = int(np.argmax(truth.sum(axis=(1, 2))))
    j = int(np.argmax(truth.sum(axis=(0, 2))))
    lo, hi = np.percentile(image, [1, 99])
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2), dpi=90)
    views = [("axial", lambda a: a[k], spacing[1] / spacing[0]),
             ("coronal", lambda a: a[:, j], spacing[2] / spacing[0])]
    for ax, (name, cut, aspect) in zip(axes, views):
        ax.imshow(cut(image), cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest",
                  origin="lower" if name == "coronal" else "upper")
        for key, m in masks.items():
            sl = cut(m)
            if sl.any():
                ax.contour(sl, [0.5], colors=styles[key][0], linewidths=1.6 if key == "truth" else 1.1,
                           linestyles="dashed" if key == "template" else "solid")
        ax.set_title(f"{name} {k if name == 'axial' else j}", fontsize=9)
        ax.set_axis_off()
    handles = [Line2D([], [], color=styles[key][0], linestyle="dashed" if key == "template" else "solid",
                      label=styles[key][1]) for key in masks]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ report

def headline(summary: list[dict], n_points: int | None = None) -> dict:
    """The comparison at one N (default: the N closest to 25) and the largest P.

    {'N', 'P', 'template', 'weaknet', 'weaknet_effort', 'train_template', 'full', 'ratio', 'ablation',
     'slices': [(S, IoU, effort %)]} — IoUs are test means; 'ablation' is the λ = 0 net (NaN if not run).
    """
    wk = [r for r in summary if r["method"] == "weaknet"]
    if not wk:
        return {}
    p = max(r["samples"] for r in wk)
    ns = sorted({r["points"] for r in wk})
    n = n_points if n_points in ns else min(ns, key=lambda v: abs(v - 25))
    w = next(r for r in wk if r["samples"] == p and r["points"] == n)
    t = next((r for r in summary if r["method"] == "template" and r["points"] == n), None)
    f = next((r for r in summary if r["method"] == "full" and r["samples"] == p), None)
    a = next((r for r in summary if r["method"] == "weaknet0" and r["samples"] == p and r["points"] == n), None)
    return {"N": n, "P": p, "weaknet": w["iou_mean"], "weaknet_effort": w["effort_pct"],
            "train_template": w["train_template_iou"], "template": t["iou_mean"] if t else math.nan,
            "full": f["iou_mean"] if f else math.nan, "ratio": w["ratio_to_full"],
            "ablation": a["iou_mean"] if a else math.nan,
            "slices": [(r["slices"], r["iou_mean"], r["effort_pct"]) for r in summary
                       if r["method"] == "slices" and r["samples"] == p]}


def verdict(h: dict) -> list[str]:
    """Plain-language checks of the method's claims on this run."""
    if not h:
        return []
    out = [f"Weak-Net (N={h['N']}) test IoU {h['weaknet']:.3f} vs the templates it was trained on "
           f"{h['train_template']:.3f}: " + ("better" if h["weaknet"] > h["train_template"] else "NOT better"),
           f"Weak-Net test IoU {h['weaknet']:.3f} vs the template alone on the test cases (N={h['N']}) "
           f"{h['template']:.3f}: " + ("better" if h["weaknet"] > h["template"] else "NOT better")]
    for s, s_iou, s_eff in sorted(h["slices"], key=lambda v: v[2]):
        if s_eff < 0.9 * h["weaknet_effort"]:
            continue  # clearly cheaper than the clicks: not a fair comparison for the claim
        out.append(f"Weak-Net at {h['weaknet_effort']:.1f}% effort vs the slice baseline S={s} at {s_eff:.1f}%: "
                   f"IoU {h['weaknet']:.3f} vs {s_iou:.3f} — "
                   + ("Weak-Net wins" if h["weaknet"] > s_iou else "slice baseline wins")
                   + f" (slices cost {s_eff / h['weaknet_effort']:.1f}× the clicks' effort)")
    if not math.isnan(h["ratio"]):
        out.append(f"Weak-Net reaches {100 * h['ratio']:.0f}% of full supervision's IoU ({h['full']:.3f}); "
                   f"the paper reports {PAPER_RATIO_TO_FULL}")
    if not math.isnan(h.get("ablation", math.nan)):
        out.append(f"ablation: the same templates with λ = 0 (no reconstruction term) give IoU {h['ablation']:.3f} "
                   f"vs {h['weaknet']:.3f} with it")
    return out


def write_report(exp, overlays: bool = True, max_overlays: int = 4, title: str = "WeakNet experiment",
                 notes: list[str] | None = None) -> dict:
    """Write results.csv, summary.csv, summary.md, iou_vs_effort.png, iso_iou.png (when the grid allows),
    overlays/*.png and report.html into ``exp.output``. Returns {'summary', 'headline', 'files'}."""
    out = exp.output
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(exp.rows)
    files = [write_csv(exp.rows, out / "results.csv"), write_csv(summary, out / "summary.csv")]
    h = headline(summary)
    checks = verdict(h)
    (out / "summary.md").write_text(table_text(summary, markdown=True) + "\n\n" +
                                    "".join(f"- {c}\n" for c in checks))
    files.append(out / "summary.md")
    files.append(plot_iou_vs_effort(summary, out / "iou_vs_effort.png", f"{exp.dataset.name}: test IoU vs effort"))
    iso = plot_iso_iou(summary, out / "iso_iou.png")
    if iso:
        files.append(iso)
    overlay_files = []
    if overlays and h:
        (out / "overlays").mkdir(exist_ok=True)
        s_min = min((s for s, _, _ in h["slices"]), default=None)
        for c in exp.test[:max_overlays]:
            masks = {"truth": c.label.array}
            for key, p, param in (("template", 0, h["N"]), ("weaknet", h["P"], h["N"]), ("weaknet0", h["P"], h["N"]),
                                  ("slices", h["P"], s_min), ("full", h["P"], 0)):
                m = exp.predictions.get((key, p, param, c.name))
                if m is not None:
                    masks[key] = m
            overlay_files.append(plot_overlay(c.image.array, c.image.geometry.spacing, masks,
                                              out / "overlays" / f"{c.name}.png",
                                              f"{c.name}: truth, template N={h['N']}, predictions"))
    files += overlay_files
    _write_html(out / "report.html", title, exp, summary, checks, iso is not None, overlay_files, notes or [])
    files.append(out / "report.html")
    return {"summary": summary, "headline": h, "files": files}


def _write_html(path: Path, title: str, exp, summary, checks, has_iso: bool, overlay_files, notes) -> None:
    head = ["method", "P", "annotation", "effort % of full", "IoU mean ± std", "Dice", "HD95 mm", "MSD mm",
            "IoU / full", "train-template IoU"]
    rows = table_text(summary, markdown=True).splitlines()[2:]
    cells = ["<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r.strip("|").split("|")) + "</tr>"
             for r in rows]
    cfg = exp.config
    first = next(iter(exp.models.values()), None)
    tc = TrainConfig.from_dict(first["config"]) if first else exp.train_config
    planned = "; ".join(first.get("plan", [])) if first else ""
    imgs = ['<img src="iou_vs_effort.png" alt="IoU vs effort">']
    if has_iso:
        imgs.append('<img src="iso_iou.png" alt="iso-IoU">')
    ov = "".join(f'<figure><img src="overlays/{p.name}" alt="{html.escape(p.stem)}"></figure>' for p in overlay_files)
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;font-size:14px}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:nth-child(-n+3){{text-align:left}}th{{background:#f2f2f2}}img{{max-width:100%}}figure{{margin:0.5em 0}}
.checks li{{margin:0.3em 0}}code{{background:#f4f4f4;padding:1px 4px}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Dataset <b>{html.escape(exp.dataset.name)}</b> ({html.escape(exp.dataset.modality)}):
{len(exp.pool)} training-pool cases, {len(exp.test)} held-out test cases. Points per case N = {cfg.points},
slices per case S = {cfg.slices}, annotated cases P = {exp.samples}, seed {cfg.seed}.
Training: {tc.epochs} epochs × {tc.steps_per_epoch} steps, patch {list(tc.patch)}, batch {tc.batch_size},
{tc.base_channels} base channels, depth {tc.depth}, λ = {tc.lambda_:g}, d = {tc.boundary_distance:g} mm,
γ = {tc.gamma:g}, device {html.escape(str(tc.device))}{' (plan of the first model: ' + html.escape(planned) + ')'
                                                          if planned else ''}.</p>
<h2>Results on the test cases</h2>
<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(cells)}</table>
<p>Effort: a clicked point counts 1, a labelled slice its contour length in pixels; % of labelling every slice
(averaged over the three planes). The paper reports Weak-Net at {PAPER_RATIO_TO_FULL} of full supervision.</p>
<ul class="checks">{''.join(f'<li>{html.escape(c)}</li>' for c in checks + notes)}</ul>
<h2>IoU vs effort</h2>{''.join(imgs)}
<h2>Overlays</h2><p>Green: truth; yellow dashed: template from N points; red: Weak-Net; orange: Weak-Net with
λ = 0 (ablation); blue: U-Net on slices; magenta: full supervision.</p>{ov}
<p>Files: <a href="results.csv">results.csv</a> (per case), <a href="summary.csv">summary.csv</a>,
<a href="summary.md">summary.md</a>; trained models and datasets under <code>runs/</code>.</p>
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
