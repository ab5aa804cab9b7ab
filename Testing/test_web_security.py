"""The annotator's data root, uploads and error handling: paths from the browser never leave --data-root,
uploads are size-limited and validated as volumes, a failing callback is shown and the server survives."""

from __future__ import annotations

import os

import numpy as np
import pytest

from weaknet.errors import InputError
from weaknet.volume import Geometry, Volume, write_volume

testing = pytest.importorskip("weaknet_web.testing")
from weaknet_web.files import store_upload  # noqa: E402
from weaknet_web.sandbox import DataRoot  # noqa: E402


def small_volume(path):
    return write_volume(Volume(np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32),
                               Geometry.create((16, 16, 8))), path)


@pytest.fixture
def root(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    small_volume(outside / "secret.nrrd")
    os.symlink(outside, data / "link")
    os.symlink(outside / "secret.nrrd", data / "sub" / "secret_link.nrrd")
    small_volume(data / "sub" / "ok.nrrd")
    return data


def test_data_root_confines_paths(root):
    dr = DataRoot(root)
    assert dr.resolve("sub/ok.nrrd", must_exist=True) == (root / "sub" / "ok.nrrd").resolve()
    for bad, reason in (("../outside/secret.nrrd", "'..'"), ("sub/../../x", "'..'"),
                        ("/etc/passwd", "absolute"), ("C:/Windows", "absolute"),
                        ("link/secret.nrrd", "out of the data root"),
                        ("sub/secret_link.nrrd", "out of the data root"), ("", "empty"),
                        ("sub/missing.nrrd", "no such file")):
        with pytest.raises(InputError, match=reason):
            dr.resolve(bad, must_exist=True)
    assert dr.list_volumes() == ["sub/ok.nrrd"]  # the links out are not offered


def test_uploads_validated(root, tmp_path):
    dr = DataRoot(root)
    content = small_volume(tmp_path / "up.nrrd").read_bytes()
    assert store_upload(dr, "../../up.nrrd", content, 10**6) == "uploads/up.nrrd"
    assert store_upload(dr, "up.nrrd", content, 10**6) == "uploads/up_2.nrrd"  # never overwrites
    with pytest.raises(InputError, match="over the upload limit"):
        store_upload(dr, "big.nrrd", content, 100)
    with pytest.raises(InputError, match="not a volume file name"):
        store_upload(dr, "notes.txt", b"hello", 10**6)
    with pytest.raises(InputError, match="rejected"):
        store_upload(dr, "fake.nrrd", b"NRRD0004\ngarbage\n", 10**6)
    with pytest.raises(InputError, match="empty"):
        store_upload(dr, "empty.nrrd", b"", 10**6)
    assert sorted(p.name for p in (root / "uploads").iterdir()) == ["up.nrrd", "up_2.nrrd"]  # no leftovers


@pytest.mark.slow
def test_browser_errors_shown_server_survives(root, tmp_path):
    good = small_volume(tmp_path / "good.nrrd")
    fake = tmp_path / "fake.nrrd"
    fake.write_bytes(b"NRRD0004\nnot a volume\n")
    big = tmp_path / "big.nrrd"
    big.write_bytes(b"0" * 200_000)
    with testing.chromium() as browser, testing.running_server(
            root, volume="sub/ok.nrrd", log_path=tmp_path / "server.log",
            extra_args=("--max-upload-mb", "0.1")) as server:
        page = server.open_page(browser)
        click = lambda testid: page.page.locator(f'[data-testid="{testid}"]').click()  # noqa: E731
        errors = 0

        def expect_error(fragment):
            nonlocal errors
            errors += 1
            page.wait_state("error_count", f"v >= {errors}")
            assert fragment in page.state("error_message")
            assert page.page.locator('[data-testid="error-bar"]').is_visible()

        for key, path, fragment in (("points_file", "../escape.mrk.json", "'..'"),
                                    ("seg_file", "/tmp/escape.seg.nrrd", "absolute"),
                                    ("label_file", "link/escape.nii.gz", "out of the data root")):
            page.set_state(key, path)
            click(f"save-{key}")
            expect_error(fragment)
        page.set_state("points_file", "link/secret.mrk.json")
        click("load-points_file")
        expect_error("out of the data root")
        page.set_state("volume_choice", "sub/secret_link.nrrd")
        click("open-volume")
        expect_error("out of the data root")
        assert not (tmp_path / "escape.mrk.json").exists() and not (tmp_path / "outside" / "escape.nii.gz").exists()

        page.set_state("wl_min_max", ["low", "high"])  # a non-WeakNet exception inside a callback
        expect_error("Internal error: ValueError")

        upload = page.page.locator('[data-testid="upload"] input[type=file]')
        upload.set_input_files(str(big))
        expect_error("over the upload limit")
        upload.set_input_files(str(fake))
        expect_error("rejected")
        upload.set_input_files(str(good))
        page.wait_state("volume_name", "v === 'uploads/good.nrrd'")
        assert "uploads/good.nrrd" in page.state("volume_choices")
        page.set_state("volume_choice", "sub/ok.nrrd")  # back to a volume from the data root's list
        click("open-volume")
        page.wait_state("volume_name", "v === 'sub/ok.nrrd'")
        page.rerender()  # still serving frames

        # a client that skips the page's size check: the websocket layer refuses the message unread
        page.page.evaluate("() => { window.load_files_by_chunks([new File([new Uint8Array(20e6)], 'huge.nrrd')],"
                           " {trigger_name: 'weaknet_upload'}); }")
        log = tmp_path / "server.log"
        for _ in range(200):
            if "exceeds the allocation limit" in log.read_text(errors="replace"):
                break
            page.page.wait_for_timeout(50)
        assert "exceeds the allocation limit" in log.read_text(errors="replace")
        assert not list((root / "uploads").glob("huge*"))
        server.check_alive()
        page = server.open_page(browser)  # a new tab is served as before
        page.rerender()

        # the built-in phantom, layouts and the window slider still work
        page.page.locator('[data-testid="open-sample"]').click()
        page.wait_state("volume_name", "v === 'samples/phantom_bean.nrrd'")
        assert (root / "samples" / "phantom_bean.nrrd").is_file()
        page.rerender()
        lo, hi = page.state("wl_range")
        shown = page.screenshot_view("Red").mean()
        page.set_state("wl_min_max", [lo, lo + 0.05 * (hi - lo)])  # narrow window at the bottom: brighter
        page.rerender()
        assert page.screenshot_view("Red").mean() > shown + 20
        page.set_state("layout_name", "Axial only")
        page.wait_frames(page.trigger("weaknet_render"), views=["Red"])
        assert page.page.locator('[data-view="Green"]').count() == 0
        page.set_state("layout_name", "Four-up")
        page.wait_frames(page.trigger("weaknet_render"), views=["Red", "Green", "Yellow", "ThreeD"])
        server.check_alive()
    assert f"at {server.url}" in (tmp_path / "server.log").read_text(encoding="utf-8")  # `weaknet app` printed its URL


def test_cli_defaults_and_paths(root, tmp_path):
    from weaknet.cli import build_parser
    from weaknet.commands.app import resolve_paths

    args = build_parser().parse_args(["app"])
    assert args.host == "127.0.0.1"  # this machine only unless told otherwise
    assert resolve_paths(str(root / "sub" / "ok.nrrd"), None) == ((root / "sub").resolve(), "ok.nrrd")
    assert resolve_paths(str(root / "sub" / "ok.nrrd"), str(root)) == (root.resolve(), "sub/ok.nrrd")
    assert resolve_paths(str(root), None) == (root.resolve(), None)
    with pytest.raises(InputError, match="outside the data root"):
        resolve_paths(str(tmp_path / "outside" / "secret.nrrd"), str(root))
    with pytest.raises(InputError, match="no such file"):
        resolve_paths(str(tmp_path / "nope.nrrd"), None)
