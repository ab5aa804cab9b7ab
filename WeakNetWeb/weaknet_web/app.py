"""The WeakNet browser annotator: a trame-slicer application around the MRML annotation session."""

from __future__ import annotations

import logging
from pathlib import Path

from trame.app import TrameApp
from trame.app.file_upload import ClientFile
from trame_slicer import module as trame_slicer_module
from trame_slicer.core import SlicerApp
from trame_slicer.core.volume_window_level import VolumeWindowLevel

from weaknet.errors import InputError

from .annotation import ANNOTATIONS, AnnotationPanel
from .errors import calling_client, report_to
from .files import output_path, store_upload
from .sandbox import DataRoot
from .training import MODELS, TRAINING, TrainingPanel
from .ui import build_ui
from .views import LAYOUTS, FrameCounter, make_layout_manager, register_counting_factories

log = logging.getLogger("weaknet_web")

SAMPLE_NAME = "samples/phantom_bean.nrrd"
WINDOW_PRESETS = {"CT soft tissue": (350.0, 40.0), "CT lung": (1400.0, -500.0), "CT bone": (1000.0, 400.0)}
"""Window/level (HU) of Slicer's CT-Abdomen, CT-Lung and CT-Bone display presets."""
AUTO_WINDOW = "Auto (0.1–99.9 %)"
"""The preset for any modality (MRI): the 0.1 and 99.9 percentiles of the volume's intensities."""
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "software")


def opengl_renderer(render_window) -> str:
    """The OpenGL renderer of a render window (e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)' without a GPU)."""
    render_window.Render()
    for line in (render_window.ReportCapabilities() or "").splitlines():
        if "renderer string" in line.lower():
            return line.split(":", 1)[1].strip()
    return "unknown"


class AnnotatorApp(TrameApp):
    """One server, one Slicer scene, one annotation session shared by every connected tab.

    All callbacks run on the server's event loop one at a time, so edits from several tabs are serialized;
    every tab shows the same session.
    """

    def __init__(self, server=None, *, data_root: str | Path, volume: str | None = None,
                 max_upload_mb: float = 512.0, volume_rendering: bool | None = None, sample: bool = False):
        super().__init__(server)
        self.server.enable_module(trame_slicer_module)
        self.data_root = DataRoot(data_root)
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.slicer = SlicerApp()
        self.frames = FrameCounter(self.server)
        register_counting_factories(self.slicer.view_manager, self.server, self.frames)
        self.layout_manager = make_layout_manager(self.slicer, self.server)
        self.volume_node = None
        self.volume_path: Path | None = None
        self.loaded_segmentation = None
        self.annotation = AnnotationPanel(self)
        self.annotation.controller.later = self.annotation.after_frames  # clicks are answered on the loop
        views = self.slicer.view_manager
        self.annotation.ignore_drags(views.get_threed_views(), views.get_views())
        self.annotation.rotate_while_placing(views.get_threed_views())
        self.annotation.render_pointer_view(views.get_views())
        self.training = TrainingPanel(self)
        self._init_state(volume_rendering)
        self._bind()
        self.ui = build_ui(self)
        if volume or sample:
            guard = report_to(self.state, self.server, self.data_root.path)
            start = (lambda: self.open_volume(volume)) if volume else self.open_sample
            self.server.controller.on_server_ready.add(lambda **_: guard(start)())

    def shutdown(self) -> None:
        """The server stops: every template reaches the autosave folder and no training or inference
        process outlives the server."""
        self.annotation.controller.flush()
        self.training.stop()

    # ----------------------------------------------------------------------------------------- state
    def _init_state(self, volume_rendering: bool | None) -> None:
        s = self.state
        s.gpu_renderer = opengl_renderer(self.slicer.view_manager.get_threed_views()[0].render_window())
        software = any(name in s.gpu_renderer.lower() for name in SOFTWARE_RENDERERS)
        if software:  # 8× multisampling doubles a render's cost on llvmpipe (slice views never use it)
            for view in self.slicer.view_manager.get_threed_views():
                view.render_window().SetMultiSamples(0)
        if volume_rendering is None:  # auto: on with a GPU, off with a software renderer (~2 s a frame)
            volume_rendering = not software
        s.trame__title = "WeakNet annotator"
        s.layout_name = LAYOUTS[0]
        s.layout_names = list(LAYOUTS)
        s.volume_choices = self.data_root.list_volumes()
        s.volume_choice = None
        s.volume_name = ""
        s.wl_range = [0.0, 1.0]
        s.wl_min_max = [0.0, 1.0]
        s.vr_enabled = bool(volume_rendering)
        s.error_message = ""
        s.error_client = ""  # the tab whose action failed ("" every tab)
        s.error_count = 0
        s.my_client = ""  # each tab's own wslink client id and the last error it closed: never sent
        s.error_seen = 0
        s.confirm_clear = s.confirm_remove_object = False  # the page's yes/no dialogs, one tab each
        s.client_only("my_client", "error_seen", "confirm_clear", "confirm_remove_object")
        s.busy = False
        s.info_message = ""
        s.info_visible = False
        s.points_file = s.seg_file = s.label_file = ""
        s.rename_text = ""
        s.suggestion = None  # RAS mm of the last "where to click next" (key S)
        s.wl_drag = False  # left-drag in a slice view adjusts the window (Slicer's Adjust window/level mode)
        s.orientation = {}  # per slice view: the anatomical letters at its edges and along its normal
        s.window_presets = list(WINDOW_PRESETS) + [AUTO_WINDOW]
        s.overwrite_file = ""  # an existing file a save would replace, awaiting the user's confirmation
        s.overwrite_which = ""
        s.overwrite_visible = False
        s.max_upload_bytes = self.max_upload_bytes

    def _bind(self) -> None:
        guard = report_to(self.state, self.server, self.data_root.path)
        s = self.state
        s.change("layout_name")(guard(lambda layout_name, **_: self.layout_manager.set_layout(layout_name)))
        s.change("wl_min_max")(guard(lambda wl_min_max, **_: self.set_display_range(*wl_min_max)))
        s.change("vr_enabled")(guard(lambda vr_enabled, **_: self.set_volume_rendering(vr_enabled)))
        ctrl = self.server.controller
        ctrl.open_choice = guard(lambda: self.open_volume(s.volume_choice))
        ctrl.open_sample = guard(self.open_sample)
        ctrl.refresh_volumes = guard(lambda: setattr(s, "volume_choices", self.data_root.list_volumes()))
        a = self.annotation
        s.change("place_mode")(guard(self._place_mode_changed))
        s.change("wl_drag")(guard(lambda wl_drag, **_: self.set_wl_drag(wl_drag)))
        s.change("active_object")(guard(lambda active_object, **_: a.select_object(active_object)))
        s.change("use_prior")(guard(lambda use_prior, **_: a.set_prior(use_prior)))
        ctrl.add_object = guard(a.add_object)
        ctrl.undo_point = guard(a.undo)
        ctrl.redo_point = guard(a.redo)
        ctrl.clear_points = guard(a.clear)
        ctrl.refit = guard(a.refit)
        ctrl.delete_point = guard(a.delete_point)
        ctrl.select_point = guard(a.select_point)
        ctrl.rename_object = guard(lambda: a.rename(s.active_object, s.rename_text))
        ctrl.set_object_color = guard(a.set_color)
        ctrl.set_object_visible = guard(lambda name, visible: a.set_shown(name, visible=visible))
        ctrl.set_object_opacity = guard(lambda name, opacity: a.set_shown(name, opacity=opacity))
        ctrl.window_preset = guard(self.window_preset)
        self.server.trigger("weaknet_key")(guard(self.key))
        self.server.trigger("weaknet_clear")(guard(a.clear))
        self.server.trigger("weaknet_remove_object")(guard(lambda: a.remove_object(s.active_object)))
        ctrl.save_points = guard(lambda: self.save("points_file"))
        ctrl.load_points = guard(self.load_points)
        ctrl.save_segmentation = guard(lambda: self.save("seg_file"))
        ctrl.save_labelmap = guard(lambda: self.save("label_file"))
        ctrl.confirm_overwrite = guard(self.confirm_overwrite)
        ctrl.load_segmentation = guard(lambda: self.load_segmentation("seg_file"))
        ctrl.load_labelmap = guard(lambda: self.load_segmentation("label_file"))
        t = self.training
        ctrl.add_to_training_set = guard(t.add_to_training_set)
        ctrl.resolve_conflict = guard(t.resolve_conflict)
        s.change("train_set")(guard(lambda **_: t.set_changed()))
        ctrl.start_training = guard(t.start)
        ctrl.cancel_training = guard(t.cancel)
        ctrl.apply_model = guard(t.apply)
        ctrl.start_from_model = guard(t.start_from_model)
        ctrl.cancel_proposal = guard(t.cancel_proposal)
        ctrl.cancel_apply = guard(t.cancel_apply)
        ctrl.remove_prediction = guard(t.remove_prediction)
        s.change("prediction_visible")(guard(lambda prediction_visible, **_:
                                             t.set_prediction_visible(prediction_visible)))
        ctrl.refresh_models = guard(lambda: setattr(s, "models", t.list_models()))
        self.server.trigger("weaknet_upload")(guard(self.upload_chunk))
        self.server.trigger("weaknet_upload_refused")(guard(self.upload_refused))
        self._upload_files: list[dict] = []
        self.server.trigger("weaknet_whoami")(lambda: calling_client(self.server))
        self.server.trigger("weaknet_debug")(self.debug_info)
        self.server.trigger("weaknet_render")(self.changed)

    # ----------------------------------------------------------------------------------------- volumes
    def open_volume(self, relative: str | None) -> None:
        """Load the volume at ``relative`` (a path under the data root) and show it in the slice views."""
        if not relative:
            raise InputError("choose a volume first")
        path = self.data_root.resolve(relative, must_exist=True)
        from weaknet.volume import read_volume

        read_volume(path)  # validates: readable, 3-D, scalar (clear InputError otherwise)
        self._show(path)

    def open_sample(self) -> None:
        """Write the built-in phantom under the data root (once) and open it."""
        path = self.data_root.resolve(SAMPLE_NAME)
        if not path.exists():
            from weaknet.phantoms import make_phantom
            from weaknet.volume import write_volume

            phantom = make_phantom("bean", modality="CT", seed=0)
            write_volume(phantom.image, path)
            write_volume(phantom.label, path.with_name(path.name.replace(".nrrd", "_label.nrrd")))
        self.state.volume_choices = self.data_root.list_volumes()
        self._show(path)

    def _load_node(self, path: Path):
        """A volume node for ``path``: Slicer's reader, else (TIFF, which slicer-core's readers lack) the voxels
        read by SimpleITK in a node of their own (no file: its autosave folder keeps a copy)."""
        from WeakNetSlicerLib import nodes
        from weaknet.filenames import split_suffix
        from weaknet.volume import read_volume

        if not path.name.lower().endswith((".tif", ".tiff")):
            loaded = self.slicer.io_manager.load_volumes([path.as_posix()])
            if loaded:
                return loaded[0]
        try:
            return nodes.add_volume_node(self.slicer.scene, read_volume(path), split_suffix(path.name)[0])
        except InputError:
            raise InputError(f"{self.data_root.relative(path)}: this volume could not be loaded") from None

    def _show(self, path: Path) -> None:
        node = self._load_node(path)
        self.annotation.close()
        self.training.remove_prediction()
        self.remove_loaded_segmentation()
        if self.volume_node is not None:
            self.slicer.scene.RemoveNode(self.volume_node)
        self.volume_node, self.volume_path = node, path
        dm = self.slicer.display_manager
        dm.show_volume_in_slice_background(self.volume_node)
        dm.show_volume_in_slice_foreground(None)
        for view in self.slicer.view_manager.get_slice_views():
            view.set_visible_in_3d(True)  # the three planes give the 3D view its context and camera bounds
        dm.reset_views()
        self.set_volume_rendering(self.state.vr_enabled)
        display = VolumeWindowLevel.get_volume_display_node(self.volume_node)
        display.AddObserver("ModifiedEvent", lambda *_: self._window_changed())  # a mouse drag (view mode)
        lo, hi = VolumeWindowLevel.get_volume_scalar_range(self.volume_node)
        shown = VolumeWindowLevel.get_volume_display_range(self.volume_node)
        with self.state:
            self.state.volume_name = self.data_root.relative(path)
            self.state.volume_choice = self.state.volume_name
            self.state.wl_range = [float(lo), float(hi)]
            self.state.wl_min_max = [float(shown[0]), float(shown[1])]
            stem = "exports/" + self.annotation.controller.session_folder(self.volume_node).name
            self.state.points_file = f"{stem}/points.mrk.json"
            self.state.seg_file = f"{stem}/templates.seg.nrrd"
            self.state.label_file = f"{stem}/templates_label.nii.gz"
            self.state.orientation = self._orientation()
        self.annotation.open(self.volume_node)
        self.training.volume_opened(self.volume_node)

    def set_display_range(self, lo: float, hi: float) -> None:
        """Window/level as the displayed intensity range [lo, hi]."""
        if self.volume_node is None:
            return
        VolumeWindowLevel.set_volume_node_display_min_max_range(self.volume_node, float(lo), float(hi))
        self.changed()

    def window_preset(self, name: str) -> None:
        """Window/level from a preset (:data:`WINDOW_PRESETS`, HU) or :data:`AUTO_WINDOW`; the slider follows."""
        if self.volume_node is None:
            raise InputError("open a volume first")
        if name == AUTO_WINDOW:
            lo, hi = VolumeWindowLevel.get_volume_auto_min_max_range(self.volume_node)
        elif name in WINDOW_PRESETS:
            lo, hi = VolumeWindowLevel.window_level_to_min_max(*WINDOW_PRESETS[name])
        else:
            raise InputError(f"no window preset {name!r}; choose one of {', '.join(self.state.window_presets)}")
        with self.state:
            r = self.state.wl_range
            self.state.wl_range = [min(r[0], float(lo)), max(r[1], float(hi))]
            self.state.wl_min_max = [float(lo), float(hi)]

    def _place_mode_changed(self, place_mode, **_) -> None:
        if place_mode:
            self.state.wl_drag = False
        self.annotation.set_place_mode(place_mode)

    def set_wl_drag(self, on: bool) -> None:
        """Left-drag in a slice view adjusts window/level (place mode goes off), or back to moving points."""
        import slicer

        if self.annotation.controller.session is None:
            return
        interaction = self.slicer.scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
        if on:
            self.annotation.set_place_mode(False)
            self.state.place_mode = False
            interaction.SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.AdjustWindowLevel)
        elif interaction.GetCurrentInteractionMode() == slicer.vtkMRMLInteractionNode.AdjustWindowLevel:
            interaction.SetCurrentInteractionMode(slicer.vtkMRMLInteractionNode.ViewTransform)

    def _window_changed(self) -> None:
        """The volume's window/level changed in the scene (Slicer's mouse drag in a slice view with place mode
        off): the page's slider follows."""
        from .annotation import flush_soon

        if self.volume_node is None:
            return
        lo, hi = (round(float(v), 6) for v in VolumeWindowLevel.get_volume_display_range(self.volume_node))
        shown = self.state.wl_min_max or [None, None]
        if shown[0] is None or abs(shown[0] - lo) > 1e-3 or abs(shown[1] - hi) > 1e-3:
            self.state.wl_min_max = [lo, hi]
            flush_soon(self.state)

    def _orientation(self) -> dict:
        from trame_slicer.app.logic import get_view_trame_id

        from .views import orientation_labels

        return {get_view_trame_id(self.server, v): orientation_labels(v.get_view_node().GetXYToRAS())
                for v in self.slicer.view_manager.get_slice_views()}

    def key(self, action: str, *args) -> None:
        """A keyboard shortcut from the page: undo, redo, delete (the selected point), escape (leave place
        mode), point ±1 (select the previous/next point and jump to it), slice VIEW ±1 (one slice), suggest (jump
        to where to click next)."""
        a = self.annotation
        if action == "undo":
            a.undo()
        elif action == "redo":
            a.redo()
        elif action == "delete":
            a.delete_selected()
        elif action == "escape":
            self.state.place_mode = False
        elif action == "point":
            current, step = self.state.selected_point, int(args[0])
            current = -1 if current is None else int(current)
            a.select_point(current + step if current >= 0 else (0 if step > 0 else -1))
        elif action == "slice":
            self.step_slice(str(args[0]), int(args[1]))
        elif action == "suggest":
            a.jump_to_suggestion()

    def step_slice(self, view_id: str, steps: int) -> None:
        """Move slice view ``view_id`` (its trame id, e.g. "Red") by ``steps`` slices."""
        from trame_slicer.app.logic import get_view_trame_id

        for view in self.slicer.view_manager.get_slice_views():
            if get_view_trame_id(self.server, view) == view_id:
                lo, hi = view.get_slice_range()
                value = view.get_slice_value() + steps * view.get_slice_step()
                view.set_slice_value(min(hi, max(lo, value)))
                self.changed()
                return

    def set_volume_rendering(self, enabled: bool) -> None:
        """Volume rendering in the 3D view (off by default: ~2 s a frame without a GPU)."""
        if self.volume_node is None:
            return
        vr = self.slicer.volume_rendering
        display = vr.get_vr_display_node(self.volume_node)
        if enabled and display is None:
            display = vr.create_display_node(self.volume_node)
        if display is not None:
            display.SetVisibility(bool(enabled))
        self.changed()

    # ----------------------------------------------------------------------------------------- files
    def save(self, which: str, overwrite: bool = False) -> Path | None:
        """Write the file named by state ``which`` (points_file | seg_file | label_file) under the data root.

        An input is never replaced: the open volume's file, any volume file opened in this scene, and the
        folders the app manages (annotations/, training/, models/) are refused. Any other existing file is
        replaced only with ``overwrite`` (the page asks first: ``overwrite_visible``); returns None then.
        """
        from weaknet.volume import Volume, write_volume

        relative = self.state[which]
        suffixes = {"points_file": (".mrk.json", ".fcsv", ".csv"), "seg_file": (".seg.nrrd",),
                    "label_file": (".nii.gz", ".nii", ".nrrd")}[which]
        path = output_path(self.data_root, relative, suffixes)
        self._refuse_input(path)
        if path.exists() and not overwrite:
            with self.state:
                self.state.overwrite_file = self.data_root.relative(path)
                self.state.overwrite_which = which
                self.state.overwrite_visible = True
            return None
        if which == "points_file":
            self.annotation.save_points(path)
        elif which == "seg_file":
            self.annotation.save_segmentation(path)
        else:
            labels, geometry = self.annotation.labelmap()
            write_volume(Volume(labels, geometry), path)
        self.inform(f"saved {self.data_root.relative(path)}")
        return path

    def confirm_overwrite(self) -> None:
        """The user confirmed replacing ``state.overwrite_file``: save again, unless the name changed since."""
        which, relative = self.state.overwrite_which, self.state.overwrite_file
        with self.state:
            self.state.overwrite_visible = False
            self.state.overwrite_file = self.state.overwrite_which = ""
        if which and self.data_root.resolve(self.state[which]) == self.data_root.resolve(relative):
            self.save(which, overwrite=True)

    def _refuse_input(self, path: Path) -> None:
        """InputError when ``path`` is an input the app must never replace (see :meth:`save`)."""
        from WeakNetSlicerLib import nodes

        name = self.data_root.relative(path)
        opened = {nodes.node_file(n) for n in nodes.nodes_of_class(self.slicer.scene, "vtkMRMLVolumeNode")}
        if path == self.volume_path or path in opened:
            raise InputError(f"{name} is an opened volume (an input): it is never overwritten; "
                             "choose another file name, e.g. under exports/")
        if name.split("/", 1)[0] in (ANNOTATIONS, TRAINING, MODELS):
            raise InputError(f"{name}: {name.split('/', 1)[0]}/ is managed by the app (autosave, training set, "
                             "models); save under exports/ or another folder")

    def load_segmentation(self, which: str) -> None:
        """Show a segmentation file (state ``which``: seg_file = .seg.nrrd, label_file = a labelmap on the open
        volume's grid) beside the templates, e.g. a reference to compare with; replaces the last one loaded."""
        from WeakNetSlicerLib import nodes
        from weaknet.volume import read_volume

        session = self.annotation.require()
        path = self.data_root.resolve(self.state[which], must_exist=True)
        scene = self.slicer.scene
        self.remove_loaded_segmentation()
        if path.name.lower().endswith(".seg.nrrd"):
            node = nodes.read_node(scene, "vtkMRMLSegmentationNode", path, f"loaded {path.name}")
        else:
            labels = read_volume(path)
            labels.geometry.require_match(session.geometry, what=path.name, ref="the open volume")
            node = nodes.add_labelmap_segmentation(scene, labels, session.volume_node, f"loaded {path.name}")
        self.loaded_segmentation = node
        count = node.GetSegmentation().GetNumberOfSegments()
        self.inform(f"loaded {self.data_root.relative(path)} ({count} segment{'s' if count != 1 else ''})")
        self.changed()

    def remove_loaded_segmentation(self) -> None:
        node, self.loaded_segmentation = self.loaded_segmentation, None
        if node is not None and self.slicer.scene.IsNodePresent(node):
            self.slicer.scene.RemoveNode(node)

    def load_points(self) -> None:
        path = self.data_root.resolve(self.state.points_file, must_exist=True)
        self.annotation.load_points(path)
        self.inform(f"loaded points from {self.data_root.relative(path)}")

    def upload_chunk(self, files: list[dict]) -> None:
        """trame-slicer's chunk loader sends the chosen files in chunks, then an empty list."""
        if files:
            self._upload_files.extend(files)
            return
        received, self._upload_files = self._upload_files, []
        if not received:
            raise InputError("nothing was uploaded")
        upload = ClientFile(received[0])
        relative = store_upload(self.data_root, upload.name or "", upload.content, self.max_upload_bytes)
        self.state.volume_choices = self.data_root.list_volumes()
        self.open_volume(relative)
        self.inform(f"uploaded {relative}")

    def upload_refused(self, name: str, size: int) -> None:
        raise InputError(f"{name}: {size / 2**20:.1f} MB is over the upload limit of "
                         f"{self.max_upload_bytes / 2**20:.0f} MB; copy it into the data root instead")

    def inform(self, message: str) -> None:
        with self.state:
            self.state.info_message = message
            self.state.info_visible = True

    # ----------------------------------------------------------------------------------------- views
    def changed(self, render: bool = True) -> int:
        """Note that what the views show changed: bump the revision and re-render every view; returns the
        revision (a frame tagged with it in ``state.frames`` shows the change). ``render=False`` after a change
        of MRML nodes: Slicer's displayable managers already asked exactly the views showing them to render
        (one render per changed view); the others count as up to date. Views held back while the mouse
        hovered (:meth:`AnnotationPanel.render_pointer_view`) render too (the panel releases them before it
        reports a change with ``render=False``)."""
        if not render:
            return self.frames.bump(settle=True)
        self.annotation.release_views()
        revision = self.frames.bump()
        for view in self.slicer.view_manager.get_views():
            view.schedule_render()
        return revision

    def debug_info(self) -> dict:
        """Geometry of the slice views for tests and benchmarks: per trame view id, its orientation, the
        4×4 XY→RAS matrix (row-major; XY = render-window pixels, origin bottom-left) and its size in pixels."""
        from trame_slicer.app.logic import get_view_trame_id

        views = {}
        for view in self.slicer.view_manager.get_slice_views():
            node = view.get_view_node()
            m = node.GetXYToRAS()
            views[get_view_trame_id(self.server, view)] = {
                "orientation": node.GetOrientation(),
                "xy_to_ras": [m.GetElement(r, c) for r in range(4) for c in range(4)],
                "size": list(view.render_window().GetSize()),
                "offset": view.get_slice_value(),
            }
        cameras = [list(v.renderer().GetActiveCamera().GetPosition()) for v in
                   self.slicer.view_manager.get_threed_views()]
        return {"views": views, "revision": self.frames.revision, "volume": self.state.volume_name,
                "cameras_3d": cameras,
                "points_ras": self.annotation.debug(), "renders": dict(self.frames.renders)}
