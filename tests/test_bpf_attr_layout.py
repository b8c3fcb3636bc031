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
