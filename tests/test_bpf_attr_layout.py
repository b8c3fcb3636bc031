"""The ctypes layouts of the bpf(2) attributes agree with the kernel's own header, as the C
compiler lays it out (linux/bpf.h from linux-libc-dev): every field the installed header has sits
at the same offset with the same size. Fields newer than the header are checked by offset only
against the kernel source's order (the test below names them)."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

import needs

from netprof.loader.syscall import BtfInfo, BtfLoadAttr, ProgLoadAttr

HEADER = Path("/usr/include/linux/bpf.h")

# (ctypes structure, the C type its fields are members of)
LAYOUTS = [(ProgLoadAttr, "union bpf_attr"), (BtfLoadAttr, "union bpf_attr"), (BtfInfo, "struct bpf_btf_info")]


def _c_layout(tmp_path: Path, c_type: str, names: list[str]) -> dict[str, tuple[int, int]]:
    lines = [f'printf("%s %zu %zu\\n", "{n}", offsetof({c_type}, {n}), sizeof((({c_type} *)0)->{n}));'
             for n in names]
    source = tmp_path / "layout.c"
    source.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <linux/bpf.h>\nint main(void) {\n"
                      + "\n".join(lines) + "\nreturn 0;\n}\n")
    gcc = needs.tool("gcc")
    subprocess.run([gcc, "-o", str(tmp_path / "layout"), str(source)], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "layout")], check=True, capture_output=True, text=True).stdout
    return {name: (int(off), int(size)) for name, off, size in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("structure, c_type", LAYOUTS, ids=lambda v: getattr(v, "__name__", v))
def test_fields_sit_where_the_kernel_header_puts_them(tmp_path, structure, c_type):
    if not HEADER.is_file():
        needs.missing(f"{HEADER} is not installed (Debian: apt-get install linux-libc-dev)")
    text = HEADER.read_text()
    # the fields this header knows (a field newer than it is not in its text)
    names = [name for name, *_ in structure._fields_ if re.search(rf"\b{name}\b\s*(\[[^]]*\])?;", text)]
    assert len(names) >= len(structure._fields_) - 3, f"{HEADER} is much older than netprof's layouts"
    c = _c_layout(tmp_path, c_type, names)
    ours = {name: (getattr(structure, name).offset, getattr(structure, name).size) for name in names}
    assert ours == c


def test_prog_load_ends_with_the_fields_of_linux_6_14():
    # include/uapi/linux/bpf.h: ... __u32 log_true_size; __s32 prog_token_fd; __u32 fd_array_cnt;
    assert ProgLoadAttr.fd_array.offset == 120
    assert (ProgLoadAttr.log_true_size.offset, ProgLoadAttr.prog_token_fd.offset,
            ProgLoadAttr.fd_array_cnt.offset) == (140, 144, 148)
    assert ctypes.sizeof(ProgLoadAttr) == 152


def test_multi_link_attrs_sit_where_the_running_kernel_puts_them(tmp_path):
    """link_create.uprobe_multi (6.6) and .kprobe_multi (5.18) against the running kernel's own
    union bpf_attr: its BTF, as bpftool writes it out as C, laid out by gcc."""
    from netprof.loader.attach import kprobe_multi_extra, uprobe_multi_extra
    from netprof.loader.syscall import LinkCreateAttr

    bpftool = needs.tool("bpftool")
    header = tmp_path / "vmlinux.h"
    header.write_text(subprocess.run([bpftool, "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "c"],
                                     check=True, capture_output=True, text=True).stdout)
    fields = {"uprobe_multi": ("path", "offsets", "ref_ctr_offsets", "cookies", "cnt", "flags", "pid"),
              "kprobe_multi": ("flags", "cnt", "syms", "addrs", "cookies")}
    lines = [f'printf("{kind}.{f} %lu %lu\\n", (unsigned long)__builtin_offsetof(union bpf_attr, link_create.{kind}.{f}), '
             f'(unsigned long)sizeof(((union bpf_attr *)0)->link_create.{kind}.{f}));'
             for kind, names in fields.items() for f in names]
    source = tmp_path / "multi.c"  # vmlinux.h defines what libc's headers would too: no libc header
    source.write_text('#include "vmlinux.h"\nint printf(const char *, ...);\nint main(void) {\n'
                      + "\n".join(lines) + "\nreturn 0;\n}\n")
    subprocess.run([needs.tool("gcc"), "-o", str(tmp_path / "multi"), str(source)], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "multi")], check=True, capture_output=True, text=True).stdout
    where = {name: (int(off), int(size)) for name, off, size in (line.split() for line in out.splitlines())}

    def laid_out(extra: tuple[int, ...]) -> bytes:
        attr = LinkCreateAttr()
        for i, value in enumerate(extra):
            attr.extra[i] = value
        return bytes(attr)

    values = {"path": 0x1111, "offsets": 0x2222, "ref_ctr_offsets": 0, "cookies": 0x3333, "cnt": 5, "flags": 1,
              "pid": 42}
    raw = laid_out(uprobe_multi_extra(values["path"], values["offsets"], values["cookies"], values["cnt"],
                                      values["flags"], values["pid"]))
    for f in fields["uprobe_multi"]:
        offset, size = where[f"uprobe_multi.{f}"]
        assert int.from_bytes(raw[offset:offset + size], "little") == values[f], f
    values = {"flags": 1, "cnt": 7, "syms": 0x4444, "addrs": 0, "cookies": 0x5555}
    raw = laid_out(kprobe_multi_extra(values["flags"], values["cnt"], values["syms"], values["cookies"]))
    for f in fields["kprobe_multi"]:
        offset, size = where[f"kprobe_multi.{f}"]
        assert int.from_bytes(raw[offset:offset + size], "little") == values[f], f
