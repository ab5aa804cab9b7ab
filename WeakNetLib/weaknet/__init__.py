"""WeakNet: truly weakly-supervised 3D segmentation from sparse surface points.

Pure compute (numpy, scipy, torch, vtk, SimpleITK); never imports Slicer or Qt.
"""

__version__ = "0.1.0"
