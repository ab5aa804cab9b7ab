"""``weaknet fit-template``: clicked surface points → template mask in an image's grid (+ optional mesh)."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser(
        "fit-template", help="fit an Active Surface template through clicked points and write its mask",
        description="Fit a closed template mesh through sparse points clicked on an object's surface and "
                    "write it as a {0,1} mask with exactly the image's geometry (size, spacing, origin, "
                    "direction); print how far the clicks lie from the mask's surface (mm). Exit status 0 "
                    "on success, 2 with a one-line message for bad input.")
    p.add_argument("--image", required=True, help="reference volume (NIfTI, NRRD, MHA or a DICOM folder)")
    p.add_argument("--points", required=True,
                   help="clicked points: Slicer .mrk.json (LPS or RAS), .fcsv, or .csv with header x,y,z (LPS mm)")
    p.add_argument("--output", required=True, help="mask to write (.nii.gz, .nrrd, .seg.nrrd, .mha)")
    p.add_argument("--mesh", help="also write the fitted mesh in LPS mm (.vtp, .vtk, .stl, .obj, .ply)")
    p.add_argument("--iterations", type=int, default=None,
                   help="semi-implicit steps of each of the two fitting passes (default 60)")
    p.add_argument("--subdivisions", type=int, default=4,
                   help="icosphere subdivisions of the template: 4 = 2,562 vertices (default), 5 = 10,242")
    p.add_argument("--prior", help="shape prior (.npz from weaknet shape-prior): the fit starts from its mean "
                                   "shape and modes fitted to the points")
    p.add_argument("--structure", help="with --prior: the structure these points outline; an error if the "
                                       "prior is of another one")
    return p


def run(args) -> int:
    import numpy as np

    from ..errors import InputError
    from ..mesh import check_mesh_path, write_mesh
    from ..points import read_points
    from ..template import fit_template
    from ..volume import read_volume, write_volume

    if args.iterations is not None and args.iterations < 1:
        raise InputError(f"--iterations must be >= 1, got {args.iterations}")
    if not 1 <= args.subdivisions <= 6:
        raise InputError(f"--subdivisions must be between 1 and 6, got {args.subdivisions}")
    if args.mesh:
        check_mesh_path(args.mesh)
    image = read_volume(args.image)
    points = read_points(args.points)
    options = {"subdivisions": args.subdivisions}
    if args.iterations is not None:
        options["iterations"] = args.iterations
    if args.structure and not args.prior:
        raise InputError("--structure names the structure of a --prior; pass --prior PRIOR.npz too")
    rest = None
    if args.prior:
        from ..mesh import icosphere
        from ..shape_prior import ShapePrior

        prior = ShapePrior.load(args.prior)
        prior.check(icosphere(args.subdivisions)[1], args.structure, args.prior)
        options.update(prior.surface_options())
        rest = options["rest_shape"]
    template = fit_template(points, image.geometry, **options)
    if rest is not None:
        print(f"prior {prior.structure!r}: pose and {len(prior.variances)} mode weights fitted, points to "
              f"the prior's shape: median {rest.last.residual_mm:.2f} mm"
              + ("; note: on its earlier fits, left out one at a time, the template without a prior came closer"
                 if prior.worse_than_plain else ""))
    try:
        write_volume(template.volume(), args.output)
    except RuntimeError as exc:
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), "unknown error").strip()
        raise InputError(f"{args.output}: cannot write the mask ({first[:160]}); use .nii.gz, .nrrd, "
                         ".seg.nrrd or .mha in a writable folder") from None
    if args.mesh:
        write_mesh(template.vertices, template.faces, args.mesh)
    print(f"wrote {args.output}: {int(template.mask.sum())} voxels inside the template"
          + (f"; mesh {args.mesh}" if args.mesh else ""))
    d = template.click_distances(points)
    print(f"clicked points to the mask's surface: median {np.median(d):.2f} mm, 90th percentile "
          f"{np.percentile(d, 90):.2f} mm, max {d.max():.2f} mm (point {int(np.argmax(d)) + 1})")
    return 0
