"""vm/run's host side, without booting a guest: the console passes through without the terminal
resets the guest's firmware sends, and root boots only from a cache folder that root alone controls."""

from __future__ import annotations

import importlib.util
import io
import os
import threading
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("netprof_vm", Path(__file__).parent.parent / "vm/netprof_vm.py")
netprof_vm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(netprof_vm)

# What QEMU printed here at the start of a boot (SeaBIOS), then the guest's own colour codes.
BOOT = (b"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\nBooting from ROM..\x1bc\x1b[?7l\x1b[2J"
        b"[    4.5] reboot\r\n\x1b[1;32mok\x1b[0m \x1b[2K prompt$ ")


def forward(chunks: list[bytes]) -> bytes:
    read_end, write_end = os.pipe()
    out = io.BytesIO()
    reader = threading.Thread(target=netprof_vm._forward, args=(os.fdopen(read_end, "rb"), out))
    reader.start()
    with os.fdopen(write_end, "wb", buffering=0) as w:
        for chunk in chunks:
            w.write(chunk)
    reader.join(5)
    return out.getvalue()


@pytest.mark.parametrize("split", [None, 1, 2, 3, 5, 7])
def test_console_drops_resets_and_keeps_everything_else(split):
    chunks = [BOOT] if split is None else [BOOT[i:i + split] for i in range(0, len(BOOT), split)]
    out = forward(chunks)
    assert b"\x1bc" not in out and b"\x1b[?7l" not in out and b"\x1b[2J" not in out
    assert out == BOOT.replace(b"\x1bc", b"").replace(b"\x1b[?7l", b"").replace(b"\x1b[2J", b"")


def test_console_does_not_hold_back_an_ordinary_escape():
    """An interactive prompt that ends in a colour code must appear at once, not at the next read."""
    read_end, write_end = os.pipe()
    out = io.BytesIO()
    reader = threading.Thread(target=netprof_vm._forward, args=(os.fdopen(read_end, "rb"), out))
    reader.start()
    os.write(write_end, b"root@guest:~# \x1b[0m")
    for _ in range(100):
        if out.getvalue() == b"root@guest:~# \x1b[0m":
            break
        threading.Event().wait(0.01)
    assert out.getvalue() == b"root@guest:~# \x1b[0m"
    os.close(write_end)
    reader.join(5)


@pytest.mark.root
def test_cache_folder_must_belong_to_root_alone(tmp_path):
    good = tmp_path / "cache"
    os.chmod(tmp_path, 0o755)
    assert netprof_vm.trusted_folder(good) == good
    os.chmod(good, 0o777)
    with pytest.raises(SystemExit, match="only root can change"):
        netprof_vm.trusted_folder(good)
    os.chmod(good, 0o755)
    os.chown(good, 65534, 65534)  # a user's folder, as $HOME/.cache is under sudo -E
    with pytest.raises(SystemExit, match="only root can change"):
        netprof_vm.trusted_folder(good / "linux")
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    with pytest.raises(SystemExit, match="only root can change"):
        netprof_vm.trusted_folder(link / "x")
