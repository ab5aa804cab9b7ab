"""``weaknet shape-prior``: fitted template meshes of one structure → a statistical shape prior (.npz)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "shape-prior", help="learn a shape prior (mean shape + PCA modes) from earlier template fits",
        description="Build a statistical shape prior from meshes written by 'weaknet fit-template --mesh' "
                    "for the same structure: the meshes are brought into vertex correspondence, aligned "
                    "(similarity Procrustes) and reduced to a mean shape and PCA modes. Use it with "
                    "'weaknet fit-template --prior'. Exit status 2 with a one-line message for bad input.")
    p.add_argument("--meshes", nargs="+", required=True, metavar="MESH",
                   help="at least 3 fitted meshes of one structure (.vtp, .vtk, .stl, .obj, .ply)")
    p.add_argument("--output", required=True, help="prior to write (.npz)")
    p.add_argument("--structure", help="the structure's name (default: the mesh files' common stem)")
    p.add_argument("--modes", type=int, default=None, help="keep at most this many modes (default: all, "
                                                            "at most meshes − 1)")
    return p


def run(args) -> int:
    from pathlib import Path

    from ..errors import InputError
    from ..shape_prior import prior_from_files

    if Path(args.output).suffix.lower() != ".npz":
        raise InputError(f"{args.output}: a shape prior is written as .npz")
    if args.modes is not None and args.modes < 0:
        raise InputError(f"--modes must be >= 0, got {args.modes}")
    prior = prior_from_files(args.meshes, args.structure, args.modes)
    prior.save(args.output)
    share = prior.variances / max(prior.variances.sum(), 1e-30)
    print(f"wrote {args.output}: shape prior of {prior.structure!r} from {prior.meshes} meshes "
          f"({prior.vertex_count} vertices), mean RMS radius {prior.size_mm:.1f} mm, {len(prior.variances)} "
          f"modes (" + ", ".join(f"{100 * s:.0f} %" for s in share) + " of the variance)")
    if prior.tuning:
        plain = prior.tuning["plain"]
        print(f"normal pull {prior.normal_pull:g}, chosen leaving each mesh out (fits through 10 and 25 of its "
              "vertices; mean surface distance in RMS radii): " + ", ".join(
                  f"{c:g}: {e:.4f}" for c, e in prior.tuning.items() if c != "plain")
              + f"; without the prior {plain:.4f}"
              + (" — the prior did not beat the plain template on these meshes" if prior.worse_than_plain else ""))
    return 0
