"""``weaknet demo``: points beat slices, end to end on phantoms, in about 5 minutes on a CPU."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub):
    p = sub.add_parser(
        "demo", help="end-to-end comparison on phantoms: template vs Weak-Net vs slices vs full (≈5 min CPU)",
        description="Generate phantoms with distracting edges, simulate point and slice annotation, fit "
                    "templates, train Weak-Net, the slice baseline and full supervision, predict held-out "
                    "phantoms and write a report folder (report.html, results.csv, plots, overlays).")
    p.add_argument("--output", type=Path, default=Path("weaknet-demo"), help="report folder (default weaknet-demo)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="small phantoms, N=25, S=1,2, short training (default; ≈5 min on 2 CPU cores)")
    size.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="the whole grid: N=10,25,50, S=1,2,4, P=6,12,18 with iso-IoU curves (wants a GPU)")
    p.add_argument("--modality", default="CT", choices=["CT", "MRI", "EM"], help="phantom appearance (default CT)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(mode="quick")
    return p


def run(args) -> int:
    from ..demo import run_demo
    from ..report import table_text, verdict

    exp = run_demo(args.output, args.mode, args.device, args.seed, args.modality,
                   progress=lambda m: print(m, flush=True))
    print()
    print(table_text(exp.report["summary"]))
    print()
    for line in verdict(exp.report["headline"]):
        print("-", line)
    print(f"\nwall time {exp.seconds:.0f} s; report: {args.output / 'report.html'}")
    return 0
