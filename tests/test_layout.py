"""The capture path's plain record layouts agree with the construct declarations they come from."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netprof.format import layout, records

ROOT = Path(__file__).resolve().parent.parent


def test_generated_layouts_are_up_to_date():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "tools/gen_record_layouts.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (ROOT / "netprof/format/record_layouts.py").read_text() == gen.source(), \
        "records.py changed: run tools/gen_record_layouts.py"


@pytest.mark.parametrize("plain, declared", [(layout.SPAN, records.SPAN_DTYPE), (layout.MEMORY, records.MEMORY_DTYPE),
                                             (layout.THROUGHPUT, records.THROUGHPUT_DTYPE)])
def test_layout_dtype_is_the_construct_dtype(plain, declared):
    assert plain.dtype() == declared
    assert plain.size == declared.itemsize


@pytest.mark.parametrize("snaplen", [8, 64, 1024])
def test_xdp_layout_follows_the_snap_length(snaplen):
    assert layout.xdp_packet(snaplen).dtype() == records.dtype_of(records.xdp_packet(snaplen))


def test_xdp_layout_rejects_bad_snap_lengths():
    for bad in (0, 12, -8):
        with pytest.raises(ValueError, match="multiple of 8"):
            layout.xdp_packet(bad)


def test_pack_matches_construct_build():
    values = dict(ts=123456789012, arg=2**64 - 1, pid=4242, tid=4243, probe=7, cpu=1, kind=records.EXIT)
    assert layout.SPAN.pack(*values.values()) == records.SPAN_EVENT.build(values)
    decoded = np.frombuffer(layout.MEMORY.pack(5, 6, 7), layout.MEMORY.dtype())[0]
    assert (int(decoded["ts"]), int(decoded["pid"]), int(decoded["bytes"])) == (5, 6, 7)


def test_capture_path_imports_neither_numpy_nor_construct():
    code = ("import sys, netprof.session, netprof.format.tracefile, netprof.loader.ringbuf; "
            "print(sorted(m for m in ('numpy', 'construct') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_core_imports_no_gui():
    """netprof runs on servers and guests: importing it, its CLI, capture and analysis pulls in no
    vispy and no Qt (the viewer is a package of its own)."""
    code = ("import sys, netprof, netprof.cli, netprof.session, netprof.trace, netprof.report, netprof.export; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('vispy', 'PySide6', 'netprof_viz')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_view_without_the_viewer_is_one_line(tmp_path):
    import viz_trace

    viz_trace.write(tmp_path / "t.trace")
    code = ("import sys; sys.modules['netprof_viz'] = None; from netprof import cli; "
            f"sys.exit(cli.main(['view', {str(tmp_path / 't.trace')!r}, '--png', {str(tmp_path / 't.png')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "netprof-viz" in result.stderr and "make install" in result.stderr
