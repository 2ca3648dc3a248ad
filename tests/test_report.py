"""`raywalk report`: the pure parts in milliseconds, runs built in storage, and a real render's
report loaded in headless Chromium (skipped, saying why, where no browser is installed)."""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from PIL import Image

from raywalk.cli import main
from raywalk.report import page as report_module
from raywalk.report.page import build_report, shell_commands, write_report
from raywalk.report.pictures import ShownPicture, pictures_section, thumbnail_png
from raywalk.report.stats import (
    completion_times,
    node_stats,
    retried_chunks,
    throughput,
    walk_parameters,
    worker_restarts,
    worker_stats,
)
from raywalk.run.lock import RunLock

from builders import cli, run, synthetic_run, timing_rows, write_job

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


# ---------------------------------------------------------------------------- pure parts


def test_completion_times_from_written_spread_each_chunk_over_its_render_seconds():
    index = timing_rows(
        {0: ("w1", "n1", [1.0, 2.0]), 1: ("w2", "n1", [1.0, 1.0]), 2: ("w1", "n1", [0.5, 0.5])},
        written={0: 103.0, 1: 102.0, 2: 104.0},
    )
    clock, times = completion_times(index)
    assert clock == "written"
    # Chunk 0 began at 100 (its 3 s before 103), the earliest: the origin.
    assert times["w1"].tolist() == [1.0, 3.0, 3.5, 4.0]
    assert times["w2"].tolist() == [1.0, 2.0]


def test_completion_times_without_written_use_each_workers_cumulative_seconds():
    index = timing_rows({1: ("w1", "n1", [2.0, 2.0]), 0: ("w1", "n1", [1.0, 1.0]), 2: ("w2", "n2", [3.0, 3.0])})
    clock, times = completion_times(index)
    assert clock == "seconds"
    assert times["w1"].tolist() == [1.0, 2.0, 4.0, 6.0]  # chunk order, whatever the row order
    assert times["w2"].tolist() == [3.0, 6.0]
    index = timing_rows({0: ("w1", "n1", [1.0])}, written={0: 5.0})
    index["written"] = [None]  # a row from before the column existed: no wall clock
    assert completion_times(index)[0] == "seconds"


@pytest.mark.parametrize("written", [None, {c: 10.0 + 2 * c for c in range(6)}])
def test_throughput_counts_every_frame_once_in_equal_bins(written):
    index = timing_rows({c: ("w1" if c % 2 else "w2", "n1", [1.0, 1.0]) for c in range(6)}, written=written)
    series = throughput(index, bins=3)
    assert series.clock == ("seconds" if written is None else "written")
    assert len(series.starts) == 3 and series.starts[0] == 0
    assert set(series.workers) == {"w1", "w2"}
    frames = series.total * series.bin_seconds / 60
    assert frames.sum() == pytest.approx(12)
    for rates in series.workers.values():
        assert (rates * series.bin_seconds / 60).sum() == pytest.approx(6)
    np.testing.assert_allclose(series.total, sum(series.workers.values()))
    if written is None:  # two workers at 1 frame/s each, side by side from 0 to 6 s
        np.testing.assert_allclose(series.total, [120] * 3)


def test_throughput_of_an_empty_index():
    series = throughput(timing_rows({}))
    assert series.workers == {} and len(series.total) == 0


def test_per_worker_and_per_node_seconds():
    index = timing_rows({0: ("w1", "n1", [1.0, 3.0]), 1: ("w2", "n1", [2.0, 2.0]), 2: ("w1", "n2", [2.0, 2.0])})
    w1, w2 = worker_stats(index)
    assert (w1.name, w1.frames, w1.mean, w1.median, w1.seconds, w1.members) == ("w1", 4, 2.0, 2.0, 8.0, ("n1", "n2"))
    assert (w2.name, w2.frames, w2.mean, w2.members) == ("w2", 2, 2.0, ("n1",))
    n1, n2 = node_stats(index)
    assert (n1.name, n1.frames, n1.seconds, n1.members) == ("n1", 4, 8.0, ("w1", "w2"))
    assert (n2.name, n2.frames, n2.p90) == ("n2", 2, 2.0)


def test_retries_and_restarts_inferred():
    index = timing_rows(
        {0: ("w1", "n1", [1.0, 1.0]), 1: ("w1", "n2", [1.0, 1.0]), 2: ("w2", "n1", [1.0, 1.0])}, attempt={1: 3}
    )
    assert retried_chunks(index) == {1: (3, 2)}
    assert worker_restarts(index) == {"w1": 1}  # an actor seen on two nodes restarted at least once


def test_walk_parameters_are_the_numeric_columns_the_schema_does_not_name():
    table = pa.table(
        {
            "frame": [0],
            "seconds": [0.1],
            "row": pa.array([0], pa.int32()),
            "t_row": [0.0],
            "written": [1.0],
            "note": ["x"],
        }
    )
    assert walk_parameters(table) == ["row", "t_row"]


def test_commands_are_shell_quoted():
    uri = "s3://bucket/my run?endpoint_override=host:9000&scheme=http"
    commands = {what: shlex.split(command) for what, command in shell_commands(uri, missing=True)}
    assert ["raywalk", "resume", uri] in commands.values()
    assert ["raywalk", "resume", uri, "--verify"] in commands.values()
    assert ["raywalk", "status", uri] in commands.values()
    assert ["raywalk", "assemble", uri] in commands.values()
    assert ["raywalk", "assemble", uri, "--partial"] in commands.values()
    assert not any("--partial" in c for _, c in shell_commands(uri, missing=False))


# ---------------------------------------------------------------------------- runs built in storage


def test_a_run_without_any_frame(tmp_path):
    store = synthetic_run(str(tmp_path / "run"))
    with RunLock(store, {"job": "synthetic"}).held():  # a render in progress
        url = write_report(store)
    page = Path(url).read_text()
    assert f"a driver held the run: host {socket.gethostname()}, pid {os.getpid()}" in page
    assert url == str(tmp_path / "run" / "report.html")
    assert "0 of 12 frames done, 12 missing (0-11), 0 failed chunks." in page
    assert "No frames rendered yet." in page and "RANDOM WEIGHTS" in page
    assert "Not assembled yet: synthetic.gif, synthetic.mp4, synthetic-contact.png" in page
    assert not list((tmp_path / "run").glob(".tmp-*"))  # written whole, through a temp name


def test_a_location_without_a_run_is_one_line_and_exit_2(tmp_path):
    result = cli("report", tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"raywalk: error: {tmp_path}: holds no raywalk run (no manifest.json)\n"
    assert not (tmp_path / "report.html").exists()


def test_report_has_help():
    result = CliRunner().invoke(main, ["report", "--help"])
    assert result.exit_code == 0 and "--open" in result.output and "reads offline" in result.output


def test_outputs_are_embedded_or_linked_by_size(tmp_path, monkeypatch):
    store = synthetic_run(str(tmp_path / "run"), done=range(12))
    gif = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(gif, format="GIF")
    store.write_bytes("synthetic.gif", gif.getvalue())
    store.write_bytes("synthetic.mp4", b"\x00" * 4000)
    monkeypatch.setattr(report_module, "INLINE_LIMIT", 3000)
    with RunLock(store, {"job": "synthetic"}).held():  # the driver that just finished, writing its report
        page = build_report(store)
    assert "A driver holds the run" not in page  # a finished run: nobody needs to know
    assert '<img class="out anim" alt="gif synthetic.gif" src="data:image/gif;base64,' in page
    assert '<a href="synthetic.mp4">synthetic.mp4</a> (0.00 MB, too large to embed)' in page
    monkeypatch.setattr(report_module, "INLINE_LIMIT", 8 << 20)
    assert '<video class=anim controls loop muted playsinline src="data:video/mp4;base64,' in build_report(store)


def test_a_thousand_frame_run_reports_in_under_two_seconds(tmp_path):
    store = synthetic_run(
        str(tmp_path / "run"), frames=1000, done=[f for f in range(1000) if f // 15 != 7], chunk_size=15, workers=4
    )
    store.write_failure(7, {"attempts": 3, "error": "CUDA out of memory", "frames": "105-119"})
    started = time.perf_counter()
    page = Path(write_report(store)).read_text()
    seconds = time.perf_counter() - started
    print(f"1,000-frame report in {seconds:.2f} s, {len(page) / 1e3:.0f} kB")
    assert seconds < 2.0
    assert "985 of 1000 frames done, 15 missing (105-119), 1 failed chunk." in page
    assert "CUDA out of memory" in page and "wall-clock time from the index" in page


def test_a_run_in_an_object_store(s3_endpoint):
    uri = s3_endpoint.uri("runs/report")
    store = synthetic_run(uri, done=range(8), written=False)
    url = write_report(store)
    assert url == f"s3://{s3_endpoint.bucket}/runs/report/report.html"
    page = store.read_bytes("report.html").decode()
    assert "8 of 12 frames done, 4 missing (8-11)" in page and "cumulative render seconds" in page
    assert f"raywalk resume {shlex.quote(uri)}" in page.replace("&amp;", "&").replace("&#x27;", "'")


HARBOUR = Path(__file__).resolve().parent.parent / "jobs" / "images" / "harbour.png"


def shown_pictures() -> list[ShownPicture]:
    """The harbour as a keyframe picture (its thumbnail embedded) and a second one linked by path."""
    pixels = np.asarray(Image.open(HARBOUR).convert("RGB"))
    digest = hashlib.sha256(HARBOUR.read_bytes()).hexdigest()
    return [
        ShownPicture(thumbnail_png(pixels), f"pictures/{digest}.png", "crop", 0.2, digest, "keyframe 0"),
        ShownPicture("pictures/b.png", "pictures/<b>.png", "pad", 0.55, "ab" * 32),
    ]


def test_pictures_section_shows_each_picture_with_fit_strength_and_hash():
    assert pictures_section([]) == ""
    first, second = shown_pictures()
    thumb = Image.open(io.BytesIO(first.thumbnail))
    assert thumb.size == (192, 144) and thumb.format == "PNG"  # the longer side 192, the shape kept
    assert Image.open(io.BytesIO(thumbnail_png(np.zeros((20, 30, 3), np.uint8)))).size == (30, 20)  # never enlarged
    html = pictures_section([first, second])
    assert html.startswith("<h2>Pictures</h2>")
    assert f'<img class="out pic" alt="picture {first.name}" src="data:image/png;base64,' in html
    assert f"keyframe 0 · <code>{first.name}</code><br>fit crop · strength 0.2 · sha256 " in html
    assert f'<abbr title="{first.sha256}">{first.sha256[:12]}</abbr>' in html
    assert 'src="pictures/b.png"' in html and "<code>pictures/&lt;b&gt;.png</code><br>fit pad · strength 0.55" in html


def test_the_report_shows_pictures_after_the_outputs_only_when_there_are_some(tmp_path):
    store = synthetic_run(str(tmp_path / "run"), done=range(12))
    assert "<h2>Pictures</h2>" not in build_report(store)
    page = build_report(store, pictures=shown_pictures()[:1])
    assert page.index("<h2>Outputs</h2>") < page.index("<h2>Pictures</h2>") < page.index("<h2>Failures")
    assert pictures_section(shown_pictures()[:1]) in page


# ---------------------------------------------------------------------------- a real render, in a browser


def find_browser() -> tuple[str, str] | None:
    """(Chromium binary, chromedriver) on PATH, or None."""
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium driven by selenium, logging the page's console."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    found = find_browser()
    if found is None:
        missing = "no Chromium and chromedriver on PATH: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):  # .ci/run installs them: in CI a missing browser is a failure, not a skip
            pytest.fail(f"{missing} (.ci/run should have installed them)")
        pytest.skip(missing)
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    yield driver
    driver.quit()


def load(browser: WebDriver, path: Path) -> dict[str, Any]:
    """Open a local page; what it logged, which images it drew, what it fetched, and its text."""
    browser.get(path.as_uri())
    return {
        "severe": [e for e in browser.get_log("browser") if e["level"] == "SEVERE"],
        "images": browser.execute_script("return [...document.images].map(i => [i.alt, i.complete && i.naturalWidth])"),
        "svg_plots": browser.execute_script(
            "return [...document.images].filter(i => i.src.startsWith('data:image/svg+xml')).length"
        ),
        "resources": browser.execute_script(
            "return performance.getEntriesByType('resource').map(r => r.name.slice(0, 5))"
        ),
        "text": browser.execute_script("return document.body.innerText"),
    }


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory, ray_connected: dict[str, str]) -> Path:
    """A real render (FakeRenderer's failing sibling), 12 frames, chunk 1 (frames 4-7) failed, then a
    partial assembly of its GIF and contact sheet, as a user would preview it."""

    tmp = tmp_path_factory.mktemp("report")
    out = tmp / "out"
    job = write_job(
        tmp,
        renderer="pipeline_doubles:BrokenRenderer",
        options={"fail_frames": [5]},
        walk={"kind": "text_walk", "frames": 12, "step_size": 1.0},
        outputs={"gif": {"fps": 5}, "contact_sheet": {"every": 1, "columns": 4}},
    )
    outcome, _ = run(job, out)
    assert outcome.missing == [4, 5, 6, 7]
    preview = cli("assemble", out, "--partial")
    assert preview.returncode == 0, preview.stderr
    return out


def test_report_of_a_real_render_in_a_browser(failed_run, browser, tmp_path):
    opened = tmp_path / "opened"
    recorder = f"{shlex.quote(sys.executable)} -c \"import sys; open({str(opened)!r}, 'w').write(sys.argv[1])\" %s"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "raywalk.cli", "report", str(failed_run), "--open"],
        capture_output=True,
        text=True,
        env={**os.environ, "BROWSER": recorder},
    )
    assert result.returncode == 0, result.stderr
    page = failed_run / "report.html"
    assert result.stdout == f"{page}\n"
    assert opened.read_text() == page.as_uri()  # --open handed the page to the web browser
    print(f"raywalk report (CLI, end to end) in {time.perf_counter() - started:.2f} s")

    seen = load(browser, page)
    assert seen["severe"] == []
    assert seen["images"] and all(width for _, width in seen["images"]), seen["images"]
    alts = [alt for alt, _ in seen["images"]]
    assert {
        "gif preview/walk.gif",
        "contact_sheet preview/walk-contact.png",
        "frames per minute over time, per worker and total",
        "seconds per frame per worker",
        "walk parameters against frame",
    } <= set(alts)
    assert seen["svg_plots"] == 3
    assert set(seen["resources"]) <= {"data:"}  # nothing fetched from anywhere: one self-contained file
    text = seen["text"]
    assert "8 of 12 frames done, 4 missing (4-7), 1 failed chunk." in text
    assert "RANDOM WEIGHTS" in text
    assert "renderer exploded on frames [5]" in text
    assert f"raywalk resume {shlex.quote(str(failed_run))}" in text

    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(1100, browser.execute_script("return document.body.scrollHeight") + 40)
    shot = ARTIFACTS / "report.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


def test_report_pictures_in_a_browser(browser, tmp_path):
    store = synthetic_run(str(tmp_path / "run"), done=range(12))
    seen = load(browser, Path(write_report(store, pictures=shown_pictures()[:1])))
    assert seen["severe"] == []
    drawn = dict(seen["images"])
    name = shown_pictures()[0].name
    assert drawn[f"picture {name}"] == 192  # the embedded thumbnail decoded at its own width
    assert f"keyframe 0 · {name}\nfit crop · strength 0.2 · sha256 " in seen["text"]


def test_report_with_wall_clock_times_in_a_browser(browser, tmp_path):
    store = synthetic_run(str(tmp_path / "run"), frames=60, done=range(40), chunk_size=5, workers=3, attempts={2: 3})
    seen = load(browser, Path(write_report(store)))
    assert seen["severe"] == []
    assert seen["svg_plots"] == 3 and all(width for _, width in seen["images"])
    assert "40 of 60 frames done, 20 missing (40-59), 0 failed chunks." in seen["text"]
    assert "wall-clock time from the index's written times" in seen["text"]
    assert "5 index row(s) come from a second or later attempt, in 1 chunk(s)." in seen["text"]
