"""The page: a drawer with the workflow (volume, points, files, training) beside Slicer's views."""

from __future__ import annotations

from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v

from WeakNetSlicerLib.training import FORM_FIELDS

from .training import form_key


def build_ui(app) -> SinglePageWithDrawerLayout:
    """Build the page for ``app`` (an AnnotatorApp); returns the trame layout."""
    ctrl = app.server.controller
    with SinglePageWithDrawerLayout(app.server, full_height=True) as layout:
        layout.title.set_text("WeakNet annotator")
        with layout.toolbar:
            v.VSpacer()
            html.Div("{{ volume_name }}", classes="text-caption mr-4", raw_attrs=['data-testid="volume-name"'])
            v.VSelect(v_model=("layout_name",), items=("layout_names",), density="compact", hide_details=True,
                      style="max-width: 180px", variant="outlined", label="Layout")
            v.VProgressLinear(v_if=("busy",), indeterminate=True, absolute=True, location="bottom")

        with layout.drawer as drawer:
            drawer.width = 340
            with v.VContainer(classes="pa-2"):
                _volume_panel(ctrl)
                v.VDivider(classes="my-2")
                _points_panel(ctrl)
                v.VDivider(classes="my-2")
                _files_panel(ctrl)
                v.VDivider(classes="my-2")
                _training_panel(ctrl)

        with layout.content:
            with v.VContainer(fluid=True, classes="pa-0 fill-height"):
                app.layout_manager.initialize_layout_grid(layout)

        with v.VSnackbar(v_model=("info_visible",), color="success", timeout=3000, location="bottom",
                         raw_attrs=['data-testid="info-bar"']):
            html.Span("{{ info_message }}")
        with v.VDialog(v_model=("overwrite_visible",), max_width=460):
            with v.VCard(raw_attrs=['data-testid="overwrite-dialog"']):
                v.VCardTitle("Replace an existing file?")
                v.VCardText("{{ overwrite_file }} already exists. Saving replaces it; its contents are lost.")
                with v.VCardActions():
                    v.VSpacer()
                    v.VBtn("Cancel", click="overwrite_visible = false", variant="text",
                           raw_attrs=['data-testid="overwrite-cancel"'])
                    v.VBtn("Replace", click=ctrl.confirm_overwrite, color="error", variant="text",
                           raw_attrs=['data-testid="overwrite-confirm"'])
        client.ClientTriggers(mounted="trame.trigger('weaknet_whoami').then((id) => { my_client = id; })")
        with v.VSnackbar(model_value=("error_count > error_seen && (!error_client || error_client === my_client)",),
                         color="error", timeout=-1, location="top", raw_attrs=['data-testid="error-bar"']):
            html.Span("{{ error_message }}")
            with v.Template(v_slot_actions=True):
                v.VBtn("Close", click="error_seen = error_count", variant="text",
                       raw_attrs=['data-testid="error-close"'])
    return layout


def _volume_panel(ctrl) -> None:
    html.Div("Volume", classes="text-subtitle-2 mb-1")
    v.VFileInput(
        label="Upload a volume (.nrrd, .nii.gz, .mha, .tif)", density="compact", hide_details=True,
        prepend_icon="mdi-upload", raw_attrs=['data-testid="upload"'],
        change=("const f = $event.target.files;"
                " if (!f || !f.length) { return; }"
                " if (f[0].size > max_upload_bytes) {"
                "   trame.trigger('weaknet_upload_refused', [f[0].name, f[0].size]); }"
                " else { busy = true; window.load_files_by_chunks([f[0]], {trigger_name: 'weaknet_upload'})"
                "   .finally(() => { busy = false; }); }"))
    v.VSelect(v_model=("volume_choice",), items=("volume_choices",), label="From the data root",
              density="compact", hide_details=True)
    with html.Div(classes="d-flex ga-1 my-1"):
        v.VBtn("Open", click=ctrl.open_choice, size="small", raw_attrs=['data-testid="open-volume"'])
        v.VBtn("Sample phantom", click=ctrl.open_sample, size="small", raw_attrs=['data-testid="open-sample"'])
        v.VBtn(icon="mdi-refresh", click=ctrl.refresh_volumes, size="small", variant="text")
    v.VRangeSlider(v_model=("wl_min_max",), min=("wl_range[0]",), max=("wl_range[1]",),
                   label="Window", density="compact", hide_details=True, strict=True)
    with html.Div(classes="d-flex flex-wrap ga-1 mb-1"):
        v.VBtn("{{ name }}", v_for="name in window_presets", key="name", size="x-small", variant="tonal",
               click=(ctrl.window_preset, "[name]"), raw_attrs=[':data-preset="name"'])
    v.VSwitch(v_model=("vr_enabled",), label="Volume rendering (slow without a GPU)", density="compact",
              hide_details=True, color="primary")
    html.Div("OpenGL: {{ gpu_renderer }}", classes="text-caption")


KEYS_JS = r"""
(() => {
  if (window.weaknetKeys) { return; }
  window.weaknetKeys = true;
  let hovered = 'Red';
  document.addEventListener('mouseover', (e) => {
    for (let el = e.target; el && el.querySelector; el = el.parentElement) {
      const tag = el.querySelector(':scope > [data-view]');
      if (tag) { hovered = tag.getAttribute('data-view'); return; }
    }
  });
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName))) { return; }
    const ctrl = e.ctrlKey || e.metaKey, key = e.key.toLowerCase();
    let call = null;
    if (ctrl && key === 'z' && !e.shiftKey) { call = ['undo']; }
    else if (ctrl && (key === 'y' || (key === 'z' && e.shiftKey))) { call = ['redo']; }
    else if (!ctrl && (e.key === 'Delete' || e.key === 'Backspace')) { call = ['delete']; }
    else if (e.key === 'Escape') { call = ['escape']; }
    else if (!ctrl && key === 's') { call = ['suggest']; }
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') { call = ['point', e.key === 'ArrowRight' ? 1 : -1]; }
    else if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
      if (['Red', 'Green', 'Yellow'].includes(hovered)) { call = ['slice', hovered, e.key === 'ArrowUp' ? 1 : -1]; }
    }
    if (call) { e.preventDefault(); window.trame.trigger('weaknet_key', call); }
  });
})();
"""
"""Keyboard shortcuts (outside text fields): Ctrl+Z undo, Ctrl+Y / Ctrl+Shift+Z redo, Delete the selected
point, Esc leave place mode, ← → previous/next point (jump to it), ↑ ↓ one slice in the view under the mouse,
S jump to where to click next (the suggestion)."""


def _confirm(model: str, title: str, text: str, action, testid: str) -> None:
    """A yes/no dialog shown while client-side ``model`` is true; Yes runs ``action``."""
    with v.VDialog(v_model=(model,), max_width=420):
        with v.VCard(raw_attrs=[f'data-testid="{testid}-dialog"']):
            v.VCardTitle(title)
            v.VCardText(text)
            with v.VCardActions():
                v.VSpacer()
                v.VBtn("Cancel", click=f"{model} = false", variant="text")
                v.VBtn("Yes", click=(f"{model} = false; trigger('{action}')"), color="error", variant="text",
                       raw_attrs=[f'data-testid="{testid}-yes"'])


def _points_panel(ctrl) -> None:
    client.Script(KEYS_JS)
    html.Div("Objects and their points", classes="text-subtitle-2 mb-1")
    with v.VList(density="compact", classes="py-0", raw_attrs=['data-testid="object-list"']):
        with v.VListItem(v_for="o in object_list", key="o.name", classes="px-1",
                         active=("o.name === active_object",), click="active_object = o.name",
                         raw_attrs=[':data-object="o.name"']):
            with v.Template(v_slot_prepend=True):
                html.Input(type="color", value=("o.color",), classes="mr-2",
                           style="width: 22px; height: 22px; border: none; padding: 0; background: none;",
                           change=(ctrl.set_object_color, "[o.name, $event.target.value]"),
                           click="$event.stopPropagation()", raw_attrs=['data-testid="object-color"'])
            html.Span("{{ o.name }} · {{ o.points }} pts", classes="text-body-2")
            with v.Template(v_slot_append=True), html.Div(click="$event.stopPropagation()"):
                v.VBtn(icon=("o.visible ? 'mdi-eye' : 'mdi-eye-off'",), size="x-small", variant="text",
                       click=(ctrl.set_object_visible, "[o.name, !o.visible]"),
                       raw_attrs=['data-testid="object-visible"'])
    with html.Div(classes="d-flex ga-1 align-center"):
        v.VTextField(v_model=("rename_text",), label="Rename the active object", density="compact",
                     hide_details=True, raw_attrs=['data-testid="rename-text"'])
        v.VBtn(icon="mdi-pencil", click=ctrl.rename_object, size="small", variant="text",
               raw_attrs=['data-testid="rename-object"'])
        v.VBtn(icon="mdi-delete", click="confirm_remove_object = true", size="small", variant="text",
               raw_attrs=['data-testid="remove-object"'])
        v.VBtn("Add object", click=ctrl.add_object, size="small", raw_attrs=['data-testid="add-object"'])
    v.VSlider(v_if=("object_list.find(o => o.name === active_object)",),
              model_value=("(object_list.find(o => o.name === active_object) || {opacity: 1}).opacity",),
              end=(ctrl.set_object_opacity, "[active_object, $event]"), min=0, max=1, step=0.05,
              label="Opacity", density="compact", hide_details=True, raw_attrs=['data-testid="object-opacity"'])
    _confirm("confirm_remove_object", "Delete the object?",
             "{{ active_object }}: its points and template are deleted (also from the autosave).",
             "weaknet_remove_object", "remove-object")
    with html.Div(classes="d-flex ga-2"):
        v.VSwitch(v_model=("place_mode",), label="Click to place (off: drag points; Esc)", density="compact",
                  hide_details=True, color="primary")
        v.VSwitch(v_model=("wl_drag",), label="Drag: W/L", density="compact", hide_details=True,
                  color="secondary", raw_attrs=['data-testid="wl-drag"'])
    v.VSwitch(v_model=("use_prior",), label="Use earlier objects of this name as a prior", density="compact",
              hide_details=True, color="primary", disabled=("!active_object",), loading=("building_prior",),
              raw_attrs=[
                  'data-testid="use-prior"', 'title="Fit from a shape prior learned from at least 3 earlier objects '
                  'of this name (a trailing number aside; this volume and those in annotations/): fewer points for '
                  'the same template"'])
    html.Div("{{ active_object }}: {{ n_points }} points · effort {{ effort }} clicks", classes="text-body-2 my-1",
             raw_attrs=['data-testid="point-count"'])
    html.Div("{{ objects.length }} object(s), {{ total_points }} points in all", classes="text-caption",
             raw_attrs=['data-testid="total-count"'])
    with html.Div(classes="d-flex ga-1 mb-1"):
        v.VBtn("Undo", click=ctrl.undo_point, size="small", prepend_icon="mdi-undo", disabled=("!can_undo",),
               raw_attrs=['data-testid="undo"', 'title="Ctrl+Z"'])
        v.VBtn("Redo", click=ctrl.redo_point, size="small", prepend_icon="mdi-redo", disabled=("!can_redo",),
               raw_attrs=['data-testid="redo"', 'title="Ctrl+Y"'])
        v.VBtn("Re-fit", click=ctrl.refit, size="small", prepend_icon="mdi-refresh",
               raw_attrs=['data-testid="refit"'])
        v.VBtn("Clear", click="confirm_clear = true", size="small", prepend_icon="mdi-delete-sweep",
               disabled=("!n_points",), raw_attrs=['data-testid="clear"'])
    _confirm("confirm_clear", "Remove all points?",
             "All {{ n_points }} points of {{ active_object }} are removed (Undo brings them back).",
             "weaknet_clear", "clear")
    v.VAlert(text=("status",), type=("status_level === 'info' ? 'info' : status_level",), density="compact",
             variant="tonal", classes="text-caption", raw_attrs=['data-testid="status"'])
    with v.VList(density="compact", max_height=160, classes="overflow-y-auto", raw_attrs=['data-testid="points"']):
        with v.VListItem(v_for="p in points", key="p.i", classes="text-caption py-0",
                         active=("p.i === selected_point",), click=(ctrl.select_point, "[p.i]"),
                         raw_attrs=[':data-point="p.i"']):
            html.Span("#{{ p.i + 1 }}  R {{ p.ras[0] }}  A {{ p.ras[1] }}  S {{ p.ras[2] }}")
            with v.Template(v_slot_append=True), html.Div(click="$event.stopPropagation()"):
                v.VBtn(icon="mdi-close", size="x-small", variant="text", click=(ctrl.delete_point, "[p.i]"))


def _files_panel(ctrl) -> None:
    html.Div("Files (paths relative to the data root)", classes="text-subtitle-2 mb-1")
    for key, label, save, load in (("points_file", "Points (.mrk.json)", ctrl.save_points, ctrl.load_points),
                                   ("seg_file", "Segmentation (.seg.nrrd)", ctrl.save_segmentation,
                                    ctrl.load_segmentation),
                                   ("label_file", "Labelmap (.nii.gz)", ctrl.save_labelmap, ctrl.load_labelmap)):
        with html.Div(classes="d-flex ga-1 align-center mb-1"):
            v.VTextField(v_model=(key,), label=label, density="compact", hide_details=True)
            v.VBtn(icon="mdi-content-save", click=save, size="small", variant="text",
                   raw_attrs=[f'data-testid="save-{key}"'])
            if load is not None:
                v.VBtn(icon="mdi-folder-open", click=load, size="small", variant="text",
                       raw_attrs=[f'data-testid="load-{key}"'])
    html.Div("Autosaved to annotations/ after every change. Loaded segmentations show beside the templates "
             "(yellow).", classes="text-caption")


def _training_panel(ctrl) -> None:
    html.Div("Training", classes="text-subtitle-2 mb-1")
    with html.Div(classes="d-flex ga-1 align-center"):
        v.VCombobox(v_model=("train_set",), items=("train_sets",), label="Training set (folder)", density="compact",
                    hide_details=True, raw_attrs=['data-testid="train-set"'])
        v.VSelect(v_model=("train_modality",), items=("train_modalities",), label="Modality", density="compact",
                  hide_details=True, style="max-width: 100px", raw_attrs=['data-testid="train-modality"'])
    html.Div("{{ train_modality_hint }}", classes="text-caption", raw_attrs=['data-testid="modality-hint"'])
    with html.Div(classes="d-flex ga-1 align-center mb-1"):
        v.VBtn("Add to training set", click=ctrl.add_to_training_set, size="small",
               raw_attrs=['data-testid="add-training"'])
        html.Div("{{ train_set }}/: {{ train_set_info }}", classes="text-caption",
                 raw_attrs=['data-testid="train-set-info"'])
    with v.VDialog(v_model=("modality_conflict_visible",), max_width=480):
        with v.VCard(raw_attrs=['data-testid="modality-dialog"']):
            v.VCardTitle("Another modality")
            v.VCardText("{{ modality_conflict }} Were its volumes {{ train_modality }} all along (relabel the set), "
                        "or start a set of {{ train_modality }} volumes of its own?")
            with v.VCardActions():
                v.VSpacer()
                v.VBtn("Cancel", click="modality_conflict_visible = false", variant="text")
                v.VBtn("Relabel the set", click=(ctrl.resolve_conflict, "['relabel']"), variant="text",
                       raw_attrs=['data-testid="modality-relabel"'])
                v.VBtn("New set", click=(ctrl.resolve_conflict, "['new']"), color="primary", variant="text",
                       raw_attrs=['data-testid="modality-new-set"'])
    with v.VRow(dense=True):
        for name, label in FORM_FIELDS.items():
            with v.VCol(cols=4):
                if name == "device":
                    v.VCombobox(v_model=(form_key(name),), items=("train_devices",), label=label,
                                placeholder=(f"train_placeholders.{name}",), persistent_placeholder=True,
                                density="compact", hide_details=True)
                else:
                    v.VTextField(v_model=(form_key(name),), label=label, placeholder=(f"train_placeholders.{name}",),
                                 persistent_placeholder=True, density="compact", hide_details=True)
    with html.Div(classes="d-flex ga-1 my-1"):
        v.VBtn("Train", click=ctrl.start_training, size="small", color="primary",
               disabled=("train_state === 'running'",), raw_attrs=['data-testid="train"'])
        v.VBtn("Cancel", click=ctrl.cancel_training, size="small", disabled=("train_state !== 'running'",),
               raw_attrs=['data-testid="cancel-training"'])
    v.VProgressLinear(model_value=("train_progress",), height=6, color="primary", classes="my-1")
    html.Div("{{ train_message }}", classes="text-caption", raw_attrs=['data-testid="train-message"'])
    v.VSparkline(v_if=("loss_curve.length > 1",), model_value=("loss_curve",), height=60, line_width=1,
                 smooth=True, color="primary", auto_draw=False)
    with html.Div(classes="d-flex ga-1 align-center mt-1"):
        v.VSelect(v_model=("model_choice",), items=("models",), label="Model", density="compact",
                  hide_details=True)
        v.VBtn(icon="mdi-refresh", click=ctrl.refresh_models, size="small", variant="text")
        v.VBtn("Apply", click=ctrl.apply_model, size="small", disabled=("prediction_state === 'running'",),
               raw_attrs=['data-testid="apply-model"'])
    with html.Div(classes="d-flex ga-1 align-center"):
        v.VBtn("Start from model", click=ctrl.start_from_model, size="small", prepend_icon="mdi-auto-fix",
               disabled=("!model_choice || proposal_state === 'running'",), raw_attrs=[
                   'data-testid="start-from-model"',
                   'title="Run the model and start an object from its prediction; clicks then correct it"'])
        v.VProgressCircular(v_if=("proposal_state === 'running'",), indeterminate=True, size=16, width=2,
                            color="primary")
        v.VBtn("Cancel", click=ctrl.cancel_proposal, size="small", v_if=("proposal_state === 'running'",),
               raw_attrs=['data-testid="cancel-proposal"'])
    html.Div("{{ proposal_message }}", classes="text-caption", raw_attrs=['data-testid="proposal-message"'])
    v.VProgressLinear(v_if=("prediction_state === 'running'",), indeterminate=True, height=4, color="success",
                      classes="my-1", raw_attrs=['data-testid="apply-progress"'])
    html.Div("{{ prediction_message }}", classes="text-caption", raw_attrs=['data-testid="prediction-message"'])
    with html.Div(classes="d-flex ga-1 align-center", v_if=("prediction_present || prediction_state === 'running'",)):
        v.VSwitch(v_model=("prediction_visible",), label="Show prediction", density="compact", hide_details=True,
                  color="success", disabled=("!prediction_present",), raw_attrs=['data-testid="prediction-visible"'])
        v.VBtn("Cancel", click=ctrl.cancel_apply, size="small", v_if=("prediction_state === 'running'",),
               raw_attrs=['data-testid="cancel-apply"'])
        v.VBtn("Remove", click=ctrl.remove_prediction, size="small", prepend_icon="mdi-delete",
               v_if=("prediction_present",), raw_attrs=['data-testid="remove-prediction"'])
