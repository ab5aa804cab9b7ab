"""MRML nodes ⇄ WeakNetLib values: volume node geometry ⇄ :class:`weaknet.volume.Geometry` (LPS), voxel
arrays ⇄ nodes, masks ⇄ segments, control points ⇄ (N, 3) LPS arrays, and node files (.mrk.json, .seg.nrrd).

Slicer's nodes are in RAS; all RAS↔LPS conversion goes through :mod:`weaknet.coords`. Arrays are numpy
(D, H, W) = (k, j, i) like everywhere in WeakNetLib; VTK image data share that memory order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from weaknet.coords import lps_matrix_to_ras, lps_to_ras, ras_matrix_to_lps, ras_to_lps
from weaknet.errors import InputError
from weaknet.volume import Geometry, Volume

LABELMAP = "Binary labelmap"
CLOSED_SURFACE = "Closed surface"


def matrix_to_array(m: vtk.vtkMatrix4x4) -> np.ndarray:
    """(4, 4) float array of a ``vtkMatrix4x4``."""
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def array_to_matrix(a: np.ndarray) -> vtk.vtkMatrix4x4:
    """``vtkMatrix4x4`` of a (4, 4) array."""
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(a[r, c]))
    return m


def volume_geometry(node: "slicer.vtkMRMLScalarVolumeNode") -> Geometry:
    """The LPS :class:`Geometry` of a volume node (its IJK→RAS matrix: oblique, anisotropic, any origin).

    Raises :class:`InputError` when the node has no voxels. A parent transform is not applied: harden it
    first (Slicer: Transforms module → Harden).
    """
    image = node.GetImageData() if node is not None else None
    if image is None or min(image.GetDimensions()) < 1 or image.GetNumberOfPoints() == 0:
        raise InputError("the volume node holds no image; load a volume first")
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk_to_lps = ras_matrix_to_lps(matrix_to_array(m))
    axes = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    return Geometry.create(image.GetDimensions(), spacing, ijk_to_lps[:3, 3], axes / spacing)


def set_volume_geometry(node, geometry: Geometry) -> None:
    """Give a volume node the IJK→RAS matrix of an LPS :class:`Geometry`."""
    node.SetIJKToRASMatrix(array_to_matrix(lps_matrix_to_ras(geometry.index_to_lps)))


def volume_array(node) -> np.ndarray:
    """The voxels of a scalar volume node as a (D, H, W) numpy view (single component)."""
    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"volume '{node.GetName()}' holds no voxels")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"volume '{node.GetName()}' has {image.GetNumberOfScalarComponents()} components per "
                         "voxel; WeakNet needs a scalar volume")
    i, j, k = image.GetDimensions()
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(k, j, i)


def node_volume(node) -> Volume:
    """A :class:`Volume` (copy of the voxels, LPS geometry) of a scalar volume node."""
    return Volume(np.array(volume_array(node)), volume_geometry(node))


def image_data(array: np.ndarray) -> vtk.vtkImageData:
    """A ``vtkImageData`` holding a copy of a (D, H, W) array, unit spacing, origin 0."""
    arr = np.ascontiguousarray(array)
    image = vtk.vtkImageData()
    image.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    scalars = numpy_support.numpy_to_vtk(arr.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def add_volume_node(scene, volume: Volume, name: str, labelmap: bool = False):
    """Add a scalar (or labelmap) volume node holding ``volume``; returns the node (with display node)."""
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name)
    node.SetAndObserveImageData(image_data(volume.array))
    set_volume_geometry(node, volume.geometry)
    node.CreateDefaultDisplayNodes()
    return node


def oriented_mask(mask: np.ndarray | None, geometry: Geometry,
                  offset: tuple[int, int, int] = (0, 0, 0)) -> "slicer.vtkOrientedImageData":
    """A ``vtkOrientedImageData`` labelmap (uint8 0/1) on ``geometry``'s grid.

    mask: (D, H, W) block of the grid starting at voxel ``offset`` (k, j, i), e.g. a template's bounding box
    (the image's extent is that box, so nothing outside it is stored), or None for an empty labelmap.
    """
    oriented = slicer.vtkOrientedImageData()
    if mask is not None and np.asarray(mask).size:
        block = np.asarray(mask)
        oriented.ShallowCopy(image_data(block if block.dtype == np.uint8 and block.max(initial=0) <= 1
                                        else (block > 0).astype(np.uint8)))
        k, j, i = (int(o) for o in offset)
        d, h, w = block.shape
        oriented.SetExtent(i, i + w - 1, j, j + h - 1, k, k + d - 1)
    else:  # no voxels, but an unsigned char type (Slicer's converters refuse a labelmap without one)
        oriented.SetExtent(0, -1, 0, -1, 0, -1)
        oriented.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    oriented.SetImageToWorldMatrix(array_to_matrix(lps_matrix_to_ras(geometry.index_to_lps)))
    return oriented


def surface_polydata(vertices_lps: np.ndarray, faces: np.ndarray) -> vtk.vtkPolyData:
    """A triangle ``vtkPolyData`` in RAS (what segments' closed surfaces use) from an LPS mesh."""
    from weaknet.mesh import to_polydata

    return to_polydata(lps_to_ras(vertices_lps), faces)


def set_segment(segmentation_node, segment_id: str, name: str, color: tuple[float, float, float],
                mask: np.ndarray | None, geometry: Geometry, surface: vtk.vtkPolyData | None = None,
                offset: tuple[int, int, int] = (0, 0, 0)) -> str:
    """Create or replace one segment: binary labelmap (source; drawn in the slice views) from ``mask``
    (D, H, W) on ``geometry`` — the whole grid, or a block of it starting at voxel ``offset`` (k, j, i), or
    None for an empty segment — and, when given, the closed surface (3D views) set directly from ``surface``
    (RAS) so the 3D view shows the fitted mesh itself. Returns the segment id."""
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetSourceRepresentationName() != LABELMAP:
        segmentation_node.SetSourceRepresentationToBinaryLabelmap()
    labelmap = oriented_mask(mask, geometry, offset)
    segment = segmentation.GetSegment(segment_id)
    if segment is None:
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(*color)
        segment.AddRepresentation(LABELMAP, labelmap)
        segmentation.AddSegment(segment, segment_id)
    else:
        # Drop the old surface first: Slicer would otherwise re-derive it from the new labelmap (marching
        # cubes, ~50 ms at 128×128×48) only for it to be replaced. The segment keeps its own labelmap layer,
        # so other objects' segments are left untouched.
        segment.RemoveRepresentation(CLOSED_SURFACE)
        segment.AddRepresentation(LABELMAP, labelmap)
    # The mask is 0/1 in a layer of its own. Writing a .seg.nrrd merges segments into shared layers and gives
    # them label values 2, 3...; a segment left with value 2 over a 0/1 mask would show and export no voxel.
    segment.SetLabelValue(1)
    if surface is not None:
        segment.AddRepresentation(CLOSED_SURFACE, surface)
    return segment_id


def segment_tag(segment: "slicer.vtkSegment", tag: str) -> str | None:
    """The value of a segment's tag (saved with it in a .seg.nrrd), or None when it has none."""
    value = vtk.reference("")
    return str(value.get()) if segment.GetTag(tag, value) else None


LABEL_COLORS = ((0.95, 0.85, 0.2), (0.2, 0.85, 0.95), (0.9, 0.4, 0.9))
"""Colours of the segments made from a labelmap's values (yellow, cyan, magenta, then again)."""


def add_labelmap_segmentation(scene, labels: Volume, reference_volume_node, name: str):
    """A new segmentation node with one segment per non-zero value of ``labels`` (ids ``label_<value>``),
    on the reference volume's geometry. Raises :class:`InputError` when the labelmap is empty."""
    values = [int(v) for v in np.unique(labels.array) if v > 0]
    if not values:
        raise InputError(f"{name}: the labelmap is empty")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    for i, value in enumerate(values):
        set_segment(node, f"label_{value}", f"label {value}", LABEL_COLORS[i % len(LABEL_COLORS)],
                    labels.array == value, labels.geometry)
    return node


def segment_mask(segmentation_node, segment_id: str, reference_volume_node) -> np.ndarray:
    """Export one segment to a uint8 (D, H, W) mask on the reference volume's grid (Slicer's own export)."""
    scene = segmentation_node.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__weaknet_export")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, ids, labelmap, reference_volume_node):
            raise InputError(f"segment '{segment_id}' could not be exported to a labelmap")
        if labelmap.GetImageData() is None:  # an empty segment exports no voxels
            return np.zeros(volume_geometry(reference_volume_node).shape, np.uint8)
        return (volume_array(labelmap) > 0).astype(np.uint8)
    finally:
        scene.RemoveNode(labelmap)


def control_points_lps(markups_node) -> np.ndarray:
    """Defined control points (N, 3) of a markups node in LPS mm (world positions: transforms applied)."""
    count = markups_node.GetNumberOfControlPoints()
    if count and markups_node.GetNumberOfDefinedControlPoints() == count:  # all defined: one call
        positions = vtk.vtkPoints()
        positions.SetDataTypeToDouble()
        markups_node.GetControlPointPositionsWorld(positions)
        return ras_to_lps(numpy_support.vtk_to_numpy(positions.GetData()).astype(float).reshape(-1, 3))
    pts = []
    for i in range(markups_node.GetNumberOfControlPoints()):
        if markups_node.GetNthControlPointPositionStatus(i) != markups_node.PositionDefined:
            continue
        p = [0.0, 0.0, 0.0]
        markups_node.GetNthControlPointPositionWorld(i, p)
        pts.append(p)
    return ras_to_lps(np.asarray(pts, dtype=float).reshape(-1, 3))


def set_control_points_lps(markups_node, points_lps: np.ndarray) -> None:
    """Replace a markups node's control points with (N, 3) LPS points (one modification)."""
    pts = vtk.vtkPoints()
    for p in lps_to_ras(np.asarray(points_lps, dtype=float).reshape(-1, 3)):
        pts.InsertNextPoint(*p)
    markups_node.SetControlPointPositionsWorld(pts)


def nodes_of_class(scene, cls: str) -> list:
    """Every node of class ``cls`` in the scene (e.g. "vtkMRMLSegmentationNode")."""
    return [scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls))]


def node_file(node) -> Path | None:
    """The file a node was read from or last written to (resolved), or None when it has none on disk."""
    storage = node.GetStorageNode()
    name = storage.GetFileName() if storage is not None else None
    return Path(name).resolve() if name and Path(name).is_file() else None


def write_node(node, path: str | Path) -> Path:
    """Write a node with its default storage node (format from the extension: .mrk.json, .seg.nrrd, .nrrd).

    Raises :class:`InputError` naming the file when writing fails; the node is left unchanged.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    storage = node.GetStorageNode()
    if storage is None:
        node.AddDefaultStorageNode()
        storage = node.GetStorageNode()
    storage.SetFileName(str(p))
    if hasattr(storage, "SetCoordinateSystem"):  # markups: files are LPS like everything in WeakNetLib
        storage.SetCoordinateSystem(slicer.vtkMRMLStorageNode.CoordinateSystemLPS)
    if not storage.WriteData(node):
        raise InputError(f"{p}: could not be written ({storage.GetWriteStateAsString() or 'write failed'})")
    return p


def read_node(scene, cls: str, path: str | Path, name: str | None = None):
    """Add a node of class ``cls`` read from ``path`` (e.g. vtkMRMLMarkupsFiducialNode + .mrk.json,
    vtkMRMLSegmentationNode + .seg.nrrd). Raises :class:`InputError` when the file cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    node = scene.AddNewNodeByClass(cls, name or p.name.split(".")[0])
    node.AddDefaultStorageNode()
    storage = node.GetStorageNode()
    storage.SetFileName(str(p))
    if not storage.ReadData(node):
        scene.RemoveNode(node)
        raise InputError(f"{p}: could not be read as {cls.replace('vtkMRML', '').replace('Node', '')}")
    node.CreateDefaultDisplayNodes()
    return node
