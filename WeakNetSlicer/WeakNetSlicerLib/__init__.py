"""WeakNet's bridge to 3D Slicer's MRML scene.

Needs only Slicer's core libraries (``slicer`` MRML nodes and logics, ``vtk``), numpy and ``weaknet``,
so it runs inside desktop Slicer and, headless, under PyPI's ``slicer-core``. Slicer works in RAS,
WeakNetLib in LPS: every conversion goes through :mod:`weaknet.coords`.

- :mod:`.scene`    a headless Slicer core scene with the Volumes/Segmentations/Markups logics registered
- :mod:`.nodes`    volume node geometry ⇄ :class:`weaknet.volume.Geometry`, arrays ⇄ nodes, node I/O
- :mod:`.session`  :class:`AnnotationSession`: clicked points → live template segment, autosave, reopen
- :mod:`.training` training set from annotated volumes, background training, model → segmentation node
"""
