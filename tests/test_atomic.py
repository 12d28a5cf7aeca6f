"""Generated files are replaced whole: concurrent writers never collide, a failed write changes nothing."""
import errno
import io
import os
import stat
import threading

import pytest
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from rich.console import Console

from wavemix_profile.store.atomic import replacing, write_text
from wavemix_profile.commands.outputs import write_outputs
from wavemix_profile.render import charts
from wavemix_profile.core.results import Result, Settings


def test_a_writer_failing_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "results.csv"
    path.write_bytes(b"old,content\n1,2\n")
    with pytest.raises(OSError) as caught:
        with replacing(path) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"new,cont")  # half written, then the disk fills up
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert caught.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old,content\n1,2\n"
    assert os.listdir(tmp_path) == ["results.csv"]


def test_write_text_replaces_with_a_hidden_temporary_and_honours_the_umask(tmp_path):
    path = tmp_path / "report.md"
    names = []
    with replacing(path) as tmp:
        names.append(tmp.name)
        tmp.write_text("x", encoding="utf-8")
    assert names[0].startswith(".report.md.") and tmp.parent == tmp_path
    write_text(path, "# new\n")
    assert path.read_text(encoding="utf-8") == "# new\n"
    assert os.listdir(tmp_path) == ["report.md"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as open() would, not mkstemp's 0600


def _results(*models):
    """Stored results with nothing to chart, so writing the outputs is quick enough to race often."""
    return [Result(settings=Settings(model=m, image_size=32), model_name=m, family="convolutional",
                   environment=None, params_total=1000) for m in models]


def test_two_threads_writing_the_same_outputs_both_succeed_and_leave_no_temporaries(tmp_path):
    errors = []

    def write(results):
        try:
            for _ in range(40):
                write_outputs(results, tmp_path, command="test", console=Console(file=io.StringIO()))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(_results(m),)) for m in ("tiny-a", "tiny-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(os.listdir(tmp_path)) == ["report.md", "results.csv"]
    assert (tmp_path / "results.csv").read_text(encoding="utf-8").count("tiny-") == 1  # one writer's, whole


class _DiskFullInSvg(Artist):
    """Draws nothing on PNG; fails like a full disk halfway through writing the SVG."""

    def draw(self, renderer):
        if not isinstance(renderer, RendererAgg):  # the SVG backend's (mixed-mode) renderer
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _failing_chart(results):
    fig = Figure()
    fig.subplots().plot([1, 2], [3, 4])
    fig.add_artist(_DiskFullInSvg())
    return fig


def test_a_chart_failing_midway_leaves_the_old_chart(tmp_path, monkeypatch):
    old = b"<svg>the previous chart</svg>"
    (tmp_path / "broken.svg").write_bytes(old)
    monkeypatch.setattr(charts, "CHARTS", (("broken", _failing_chart),))
    with pytest.raises(OSError, match="No space left"):
        charts.write_charts([], tmp_path)
    assert (tmp_path / "broken.svg").read_bytes() == old  # savefig straight to the file truncates it first
    assert sorted(os.listdir(tmp_path)) == ["broken.png", "broken.svg"]
    assert (tmp_path / "broken.png").read_bytes().startswith(b"\x89PNG")
