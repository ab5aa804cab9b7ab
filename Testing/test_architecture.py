"""The rooms' rules, read from the source: who may import whom, lint (ruff), and one source of training
defaults (no front end repeats a TrainConfig default or the modality list)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from weaknet.config import TrainConfig
from weaknet.dataset import MODALITIES

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "WeakNetLib" / "weaknet"
BRIDGE = ROOT / "WeakNetSlicer" / "WeakNetSlicerLib"
DESKTOP = ROOT / "WeakNetSlicer" / "WeakNetSlicer.py"
WEB = ROOT / "WeakNetWeb" / "weaknet_web"
QT = {"qt", "ctk", "PythonQt", "slicer.util", "SampleData", "PyTorchUtils"}
TRAME = {"trame", "trame_slicer", "trame_rca", "trame_server", "trame_client", "trame_vuetify"}
FRONT_ENDS = {"WeakNetSlicer", "weaknet_web"}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, at top level) of every absolute import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [(a.name, n.lineno, id(n) in top) for a in n.names]
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            out.append((n.module, n.lineno, id(n) in top))
    return out


def _hits(path: Path, banned: set[str]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {m}" for m, line, _ in _imports(path)
            if m in banned or m.split(".")[0] in banned]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_library_imports_no_bridge_front_end_qt_or_trame():
    banned = QT | TRAME | FRONT_ENDS | {"slicer", "WeakNetSlicerLib"}
    bad = [f"{p.relative_to(ROOT)}:{line} imports {m}" for p in _files(LIBRARY) for m, line, top in _imports(p)
           if (m.split(".")[0] in banned or m in banned)
           # `weaknet app` only launches the web front end, importing it inside the command
           and not (p == LIBRARY / "commands" / "app.py" and m.startswith("weaknet_web") and not top)]
    assert bad == []


def test_bridge_imports_no_qt_trame_or_front_end():
    bad = [h for path in _files(BRIDGE) for h in _hits(path, QT - {"slicer.util"} | TRAME | FRONT_ENDS)]
    assert bad == []
    # slicer.util is Slicer's GUI-side helper module: the bridge may use only what it has under slicer-core
    for path in _files(BRIDGE):
        source = path.read_text(encoding="utf-8")
        uses = {n.attr for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Attribute)
                and ast.unparse(n.value) == "slicer.util"}
        assert uses <= {"launchConsoleProcess"}, (path.name, uses)


def test_front_ends_do_not_import_each_other():
    assert _hits(DESKTOP, TRAME | {"weaknet_web"}) == []
    assert [h for p in _files(WEB) for h in _hits(p, QT | {"WeakNetSlicer"})] == []


def _normal(name: str) -> str:
    return name.lower().replace("_", "")


SETTINGS = {_normal(f.name): f.name for f in fields(TrainConfig)}


def _literal_defaults(path: Path) -> list[str]:
    """Assignments of a number (or a non-empty string) to a name that spells a TrainConfig field, e.g.
    ``epochs: int = 20``, ``s.train_epochs = 10``, ``lambdaWeight = 1e-4``, ``device=... = "auto"``."""
    out = []
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets, value = [], None
        if isinstance(n, ast.Assign):
            targets, value = n.targets, n.value
        elif isinstance(n, ast.AnnAssign) and n.value is not None:
            targets, value = [n.target], n.value
        for t in targets:
            name = t.attr if isinstance(t, ast.Attribute) else t.id if isinstance(t, ast.Name) else None
            if name is None or not isinstance(value, ast.Constant) or value.value in ("", None) \
                    or isinstance(value.value, bool):
                continue
            key = _normal(name).removeprefix("train").removesuffix("weight")
            if key in SETTINGS:
                out.append(f"{path.name}:{n.lineno} {ast.unparse(n)}")
    return out


def _literal_lists(path: Path, values: set[str]) -> list[str]:
    """List/tuple literals holding every one of ``values`` (a repeated modality or device list)."""
    out = []
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, (ast.List, ast.Tuple)):
            items = {e.value for e in n.elts if isinstance(e, ast.Constant)}
            if values <= items:
                out.append(f"{path.name}:{n.lineno} {ast.unparse(n)}")
    return out


def test_front_ends_repeat_no_training_default_and_no_modality_list():
    front = [DESKTOP, *_files(WEB)]
    assert [hit for p in front for hit in _literal_defaults(p)] == []
    assert [hit for p in front + _files(BRIDGE) for hit in _literal_lists(p, set(MODALITIES))] == []
    assert [hit for p in front for hit in _literal_lists(p, {"cpu", "cuda"})] == []
    ui = (ROOT / "WeakNetSlicer" / "Resources" / "UI" / "WeakNetSlicer.ui").read_text(encoding="utf-8")
    assert not any(f"<string>{m}</string>" in ui for m in MODALITIES)  # the combo box is filled from MODALITIES


def test_the_default_check_catches_a_hard_coded_default(tmp_path):
    sample = tmp_path / "panel.py"
    sample.write_text('class P:\n    epochs: int = 20\n    lambdaWeight = 1e-4\n\n'
                      'def init(s):\n    s.train_steps_per_epoch = 20\n    s.train_device = "auto"\n'
                      '    s.train_epochs = ""\n    s.train_modalities = ["CT", "MRI", "EM"]\n', encoding="utf-8")
    assert len(_literal_defaults(sample)) == 4 and len(_literal_lists(sample, set(MODALITIES))) == 1


def test_ruff_finds_nothing():
    """The lint of CI (ruff.toml), run over the whole repository."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is missing: ./dev setup installs it (pinned in constraints.txt)"
    result = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
