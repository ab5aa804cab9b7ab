"""The page: a drawer with the workflow (volume, points, files, training) beside Slicer's views."""

from __future__ import annotations

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import html
from trame.widgets import vuetify3 as v


def build_ui(app) -> SinglePageWithDrawerLayout:
    """Build the page for ``app`` (an AnnotatorApp); returns the trame layout."""
    ctrl = app.server.controller
    with SinglePageWithDrawerLayout(app.server, full_height=True) as layout:
        layout.title.set_text("WeakNet annotator")
        with layout.toolbar:
            v.VSpacer()
            html.Div("{{ volume_name }}", classes="text-caption mr-4", data_testid="volume-name")
            v.VSelect(v_model=("layout_name",), items=("layout_names",), density="compact", hide_details=True,
                      style="max-width: 180px", variant="outlined", label="Layout")
            v.VProgressLinear(v_if=("busy",), indeterminate=True, absolute=True, location="bottom")

        with layout.drawer as drawer:
            drawer.width = 340
            with v.VContainer(classes="pa-2"):
                _volume_panel(ctrl)

        with layout.content:
            with v.VContainer(fluid=True, classes="pa-0 fill-height"):
                app.layout_manager.initialize_layout_grid(layout)

        with v.VSnackbar(v_model=("error_visible",), color="error", timeout=-1, location="top",
                         data_testid="error-bar"):
            html.Span("{{ error_message }}")
            with v.Template(v_slot_actions=True):
                v.VBtn("Close", click="error_visible = false", variant="text")
    return layout


def _volume_panel(ctrl) -> None:
    html.Div("Volume", classes="text-subtitle-2 mb-1")
    v.VSelect(v_model=("volume_choice",), items=("volume_choices",), label="From the data root",
              density="compact", hide_details=True)
    with html.Div(classes="d-flex ga-1 my-1"):
        v.VBtn("Open", click=ctrl.open_choice, size="small", data_testid="open-volume")
        v.VBtn("Sample phantom", click=ctrl.open_sample, size="small", data_testid="open-sample")
        v.VBtn(icon="mdi-refresh", click=ctrl.refresh_volumes, size="small", variant="text")
    v.VRangeSlider(v_model=("wl_min_max",), min=("wl_range[0]",), max=("wl_range[1]",),
                   label="Window", density="compact", hide_details=True, strict=True)
    v.VSwitch(v_model=("vr_enabled",), label="Volume rendering (slow without a GPU)", density="compact",
              hide_details=True, color="primary")
