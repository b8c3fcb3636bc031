"""The on-disk cache of assembled probe programs (netprof/probes/cache.py): a warm entry gives the
very program the assembler builds, any change of source misses, and nothing in the folder that
is corrupt, a symbolic link or someone else's is trusted; a warm capture never imports netprof.asm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netprof.format.layout import ENTRY, EXIT
from netprof.loader import debug_info
from netprof.loader.program import Prebuilt
from netprof.probes import cache, interface, span_probe

ROOT = Path(__file__).resolve().parent.parent
SPAN = ("span_probe.span_program", 7, ENTRY, interface.Arg(112), False)
MAPS = {"control": 5, "events": 6, "lost": 9, "follow": 11}


@pytest.fixture
def folder(tmp_path) -> Path:
    out = tmp_path / "programs"
    out.mkdir(mode=0o700)
    return out


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The programs the cache had to build (each a miss)."""
    made: list[str] = []
    real = cache._build

    def counting(builder, args):
        made.append(builder)
        return real(builder, args)

    monkeypatch.setattr(cache, "_build", counting)
    return made


def entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def test_cold_and_warm_give_the_program_the_assembler_builds(folder, builds):
    cold = cache.program(*SPAN, folder=folder)
    warm = cache.program(*SPAN, folder=folder)
    assert builds == ["span_probe.span_program"]  # the second came from disk
    assert len(entries(folder)) == 1
    built = span_probe.span_program(*SPAN[1:]).link()
    assert cold.encode(MAPS) == warm.encode(MAPS) == built.encode(MAPS)
    assert cold.map_slots == warm.map_slots == tuple(built.map_slots())
    assert warm.debug == cold.debug == debug_info.build(built, "")
    assert b"\0np_work\0" in debug_info.renamed(warm.debug, "np_work").btf  # the name load() gives it


def test_each_program_and_argument_has_its_entry(folder, builds):
    cache.program(*SPAN, folder=folder)
    cache.program("span_probe.span_program", 7, EXIT, interface.Arg(80), False, folder=folder)
    cache.program("span_probe.span_program", 7, ENTRY, interface.Arg(112), True, folder=folder)
    cache.program("packets.xdp_program", 3, 64, folder=folder)
    assert len(builds) == 4 and len(entries(folder)) == 4


def test_a_changed_source_misses_and_removes_the_old_entries(folder, builds, monkeypatch):
    cache.program(*SPAN, folder=folder)
    cache.program("packets.xdp_program", 3, 64, folder=folder)
    (folder / "notes.txt").write_text("not the cache's")
    old = entries(folder)
    monkeypatch.setattr(cache, "source_hash", lambda: "0123abcd")
    cache.program(*SPAN, folder=folder)
    assert len(builds) == 3
    names = sorted(p.name for p in entries(folder))
    assert len(names) == 2 and names[0].startswith("0123abcd-") and names[1] == "notes.txt"
    assert not any(p.exists() for p in old if p.name != "notes.txt")


def test_the_source_hash_follows_every_source_file(tmp_path, monkeypatch):
    package = tmp_path / "netprof"
    for part in ("asm", "probes", "format", "loader"):
        shutil.copytree(ROOT / "netprof" / part, package / part)
    monkeypatch.setattr(cache, "_PACKAGE", package)
    first = cache.source_hash.__wrapped__()
    assert first == cache.source_hash.__wrapped__()
    for changed in ("asm/builder.py", "probes/span_probe.py", "format/record_layouts.py", "loader/debug_info.py"):
        with (package / changed).open("a") as f:
            f.write("# changed\n")
        assert cache.source_hash.__wrapped__() != first, changed
        first = cache.source_hash.__wrapped__()
    (package / "probes" / "new_probe.py").write_text("")
    assert cache.source_hash.__wrapped__() != first


@pytest.mark.parametrize("damage", ["garbage", "truncated", "code changed", "other key", "empty"])
def test_a_corrupt_entry_is_built_again(folder, builds, damage):
    cache.program(*SPAN, folder=folder)
    (entry,) = entries(folder)
    data = entry.read_bytes()
    if damage == "garbage":
        data = os.urandom(300)
    elif damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "code changed":
        fields = json.loads(data)
        fields["code"] = "b7" + fields["code"][2:] if not fields["code"].startswith("b7") else "bf" + fields["code"][2:]
        data = json.dumps(fields).encode()
    elif damage == "other key":
        fields = json.loads(data)
        fields["key"] = "span_probe.span_program(8, 1, None, False)"
        data = json.dumps(fields).encode()
    else:
        data = b""
    entry.write_bytes(data)
    again = cache.program(*SPAN, folder=folder)
    assert builds == ["span_probe.span_program"] * 2
    assert again.encode(MAPS) == span_probe.span_program(*SPAN[1:]).encode(MAPS)
    cache.program(*SPAN, folder=folder)  # written again, whole
    assert len(builds) == 2


def test_a_symbolic_link_is_not_followed(folder, tmp_path, builds):
    cache.program(*SPAN, folder=folder)
    (entry,) = entries(folder)
    elsewhere = tmp_path / "elsewhere.json"
    shutil.copy(entry, elsewhere)
    original = elsewhere.read_bytes()
    entry.unlink()
    entry.symlink_to(elsewhere)
    cache.program(*SPAN, folder=folder)
    assert len(builds) == 2  # the link's target was not read ...
    assert not entry.is_symlink() and elsewhere.read_bytes() == original  # ... nor written through


def test_an_entry_others_may_write_is_not_trusted(folder, builds):
    cache.program(*SPAN, folder=folder)
    (entry,) = entries(folder)
    entry.chmod(0o666)
    cache.program(*SPAN, folder=folder)
    assert len(builds) == 2


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_an_entry_owned_by_another_user_is_not_trusted(folder, builds):
    cache.program(*SPAN, folder=folder)
    (entry,) = entries(folder)
    os.chown(entry, 65534, 65534)
    cache.program(*SPAN, folder=folder)
    assert len(builds) == 2
    assert entry.stat().st_uid == os.geteuid()  # replaced by one of its own


def test_a_folder_others_may_write_is_not_used(tmp_path, builds):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    first = cache.program(*SPAN, folder=shared)
    cache.program(*SPAN, folder=shared)
    assert len(builds) == 2 and not list(shared.iterdir())
    assert first.encode(MAPS) == span_probe.span_program(*SPAN[1:]).encode(MAPS)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a folder away")
def test_a_folder_of_another_user_is_not_used_by_root(tmp_path, builds):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    cache.program(*SPAN, folder=theirs)
    assert builds and not list(theirs.iterdir())


def test_root_uses_its_own_folder_whatever_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cache.folder_path() == cache.ROOT_FOLDER
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cache.folder_path() == tmp_path / "netprof" / "programs"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    assert cache.folder_path() == tmp_path / ".cache" / "netprof" / "programs"


def test_arguments_the_key_cannot_name_are_built_not_cached(folder, builds):
    class Loose:
        offset, size = 112, 8

        def __repr__(self):
            return "Arg(112)"

    with pytest.raises(cache.Uncacheable):
        cache._canonical(Loose())
    with pytest.raises(ValueError, match="module.function"):
        cache.program("span_program", 1, ENTRY, folder=folder)


def test_a_prebuilt_program_names_every_map(folder):
    prebuilt = cache.program(*SPAN, folder=folder)
    with pytest.raises(ValueError, match="'events' is not resolved"):
        prebuilt.encode({"control": 5})
    assert isinstance(prebuilt, Prebuilt)


WARM_CAPTURE = """
import sys
from netprof.cli import main
rc = main(["attach", "tracepoint:syscalls:sys_enter_getpid", "--net", "-d", "0.2", "-o", sys.argv[1]])
print("asm imported" if any(m.startswith("netprof.asm") for m in sys.modules) else "asm not imported")
sys.exit(rc)
"""


@pytest.mark.root
def test_a_warm_capture_does_not_import_the_assembler(tmp_path):
    runs = []
    for n in range(2):  # the first fills root's cache if it was cold
        done = subprocess.run([sys.executable, "-c", WARM_CAPTURE, str(tmp_path / f"{n}.trace")], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        runs.append(done.stdout.strip().splitlines()[-1])
    assert runs[1] == "asm not imported"


@pytest.mark.root
def test_a_cached_program_loads_as_the_built_one(folder):
    import ctypes

    from netprof.loader.maps import Map
    from netprof.loader.program import load
    from netprof.loader.ringbuf import RingBuffer
    from netprof.loader.syscall import MapType, ProgType

    with RingBuffer.create(1 << 16, "np_cache_ev") as events, \
            Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint32, max_entries=1,
                       name="np_cache_ctl") as control, \
            Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=8,
                       name="np_cache_lost") as lost:
        maps = {"events": events.map, "control": control, "lost": lost}
        cache.program(*SPAN, folder=folder)
        warm = cache.program(*SPAN, folder=folder)
        with load(warm, ProgType.KPROBE, name="np_cached", maps=maps) as cached, \
                load(span_probe.span_program(*SPAN[1:]), ProgType.KPROBE, name="np_built", maps=maps) as built:
            assert cached.tag == built.tag
            assert cached.info().btf_id != 0  # its debug info was accepted
