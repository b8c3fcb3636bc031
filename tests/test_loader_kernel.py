"""netprof.loader on this machine's real kernel: maps, loads, verifier errors, every attach type,
the ring buffer. Each test leaves nothing attached (checked by conftest after every test)."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import construct
import numpy as np
import pytest

import needs

from netprof.asm import (
    FP, R0, R1, R2, R3, R4, R5, R6, R7, R8, U8, U16, U32, U64, Add, And, AtomicAdd, Call, CallFunc, CallKfunc, Exit,
    Helper, If, JEq, JGt, JNe, Label, Load, LoadBtfId, LoadImm64, LoadMapPtr, Mov, Program, Return, Rsh, Store, parse,
)
from netprof.loader import attach, debug_info, elf, kernel_btf, xdp
from netprof.loader.btf import Kind, vmlinux
from netprof.loader.features import features
from netprof.loader.maps import Map, possible_cpus
from netprof.loader.program import VerifierError, load
from netprof.loader.ringbuf import RingBuffer
from netprof.loader.syscall import AttachType, BpfError, MapType, ProgType, prog_test_run

pytestmark = pytest.mark.root


@pytest.fixture(scope="module", autouse=True)
def needs_root():
    if os.geteuid() != 0:
        pytest.fail("the kernel tests need root: run them with sudo (CI runs as root)")


def count_into(counts: str, key: int = 0) -> list:
    """counts[key] += 1 (an array map of u64)."""
    return [
        Store(FP, -4, key, U32), LoadMapPtr(R1, counts), Mov(R2, FP), Add(R2, -4),
        Call(Helper.map_lookup_elem), JEq(R0, 0, "__done"), Mov(R1, 1), AtomicAdd(R0, 0, R1),
        Label("__done"),
    ]


def only_pid(pid: int, skip: str) -> list:
    """Jump to ``skip`` unless the current thread group is ``pid``."""
    return [Call(Helper.get_current_pid_tgid), Rsh(R0, 32), JNe(R0, pid, skip)]


@pytest.fixture
def counts():
    with Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=4,
                    name="nptest_counts") as m:
        yield m


# --- maps -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
                                      MapType.LRU_HASH, MapType.LRU_PERCPU_HASH])
def test_keyed_maps(map_type):
    with Map.create(map_type, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=64, name="nptest") as m:
        for i in range(40):
            m[i] = i * i
        percpu = map_type in (MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH)
        expect = (lambda v: [v] * possible_cpus()) if percpu else (lambda v: v)
        assert m[7] == expect(49)
        assert m.get(1000) is None
        with pytest.raises(KeyError):
            m[1000]
        items = dict(m.items())
        assert {k: items[k] for k in range(40)} == {i: expect(i * i) for i in range(40)}
        if map_type in (MapType.ARRAY, MapType.PERCPU_ARRAY):
            assert len(m) == 64 and items[63] == expect(0)
        else:
            assert len(m) == 40 and set(m) == set(range(40))
            del m[3]
            assert 3 not in m and len(m) == 39
        if percpu:
            m[5] = list(range(possible_cpus()))
            assert m[5] == list(range(possible_cpus()))


def test_typed_values_with_construct_and_ctypes_structures():
    record = construct.Struct("packets" / construct.Int64ul, "bytes" / construct.Int64ul)

    class Key(ctypes.Structure):
        _fields_ = [("ifindex", ctypes.c_uint32), ("direction", ctypes.c_uint32)]

    with Map.create(MapType.HASH, key=Key, value=record, max_entries=8, name="nptest") as m:
        m[Key(3, 1)] = {"packets": 5, "bytes": 1500}
        value = m[Key(3, 1)]
        assert (value.packets, value.bytes) == (5, 1500)
        ((key, _),) = m.items()
        assert (key.ifindex, key.direction) == (3, 1)


def test_other_map_types_create_and_refuse_keyed_access():
    for map_type, sizes in [(MapType.RINGBUF, dict(max_entries=4096)),
                            (MapType.PERF_EVENT_ARRAY, dict(max_entries=possible_cpus())),
                            (MapType.STACK_TRACE, dict(key_size=4, value_size=8 * 127, max_entries=16))]:
        with Map.create(map_type, name="nptest", **sizes) as m:
            assert m.id > 0
            if map_type == MapType.STACK_TRACE:
                assert list(m.raw_keys()) == []
            else:
                with pytest.raises(TypeError):
                    m.get(b"\0\0\0\0")


def test_map_errors_say_what_was_attempted():
    with pytest.raises(BpfError, match="create hash map 'nptest'"):
        Map.create(MapType.HASH, key_size=4, value_size=8, max_entries=0, name="nptest")


# --- program load and verifier errors ---------------------------------------------------------

def test_verifier_error_points_at_the_source_line():
    source = textwrap.dedent("""\
        r1 = 0
        r0 = *(u64 *)(r1 + 8)       # dereferences a number, not a pointer
        exit
    """)
    with pytest.raises(VerifierError) as info:
        load(parse(source), ProgType.SOCKET_FILTER, name="nptest_bad")
    err = info.value
    assert err.slot == 1
    assert "invalid mem access 'scalar'" in str(err)
    assert "line 2" in str(err) and "r0 = *(u64 *)(r1 + 8)" in str(err)


def test_verifier_error_points_at_the_builder_line_and_label():
    program = Program(Mov(R0, 0), Label("body"), Mov(R2, 1), Load(R1, R3, 0, U64), Exit())
    with pytest.raises(VerifierError) as info:
        load(program, ProgType.SOCKET_FILTER, name="nptest_bad")
    assert info.value.slot == 2
    assert f"{__file__}:" in info.value.source
    assert "R3 !read_ok" in str(info.value)


def test_verifier_log_grows_until_it_fits():
    # 30,000 instructions verified one by one, then a failure at the very end: a log of megabytes.
    body = [Mov(R1, i & 0xFF) for i in range(30000)]
    with pytest.raises(VerifierError) as info:
        load(Program(Mov(R0, 0), body, Mov(R0, R5), Exit()), ProgType.SOCKET_FILTER, name="nptest_big")
    assert len(info.value.log) > 1 << 16
    assert info.value.slot == 30001


def test_program_info_and_maps_resolved_by_object(counts):
    with load(Program(count_into("counts"), Return(0)), ProgType.SOCKET_FILTER, name="nptest_info",
              maps={"counts": counts}) as prog:
        assert prog.id > 0 and len(prog.tag) == 16
        prog_test_run(prog.fd, bytes(64), repeat=10)
    assert counts[0] == 10


def test_bpftool_shows_the_source_lines_of_a_loaded_program():
    program = Program(
        Mov(R0, 0),
        LoadImm64(R2, 1 << 40),
        CallFunc("double_it"),
        Exit(),
        Label("double_it"),
        Mov(R0, 21),
        Add(R0, R0),
        Exit(),
    )
    first = program.instructions[0].location.line
    with load(program, ProgType.SOCKET_FILTER, name="nptest_linum") as prog:
        info = prog.info()
        assert (info.nr_func_info, info.nr_line_info) == (2, 7)
        assert prog_test_run(prog.fd, bytes(64))[0] == 42
        out = subprocess.run([needs.tool("bpftool"), "prog", "dump", "xlated", "id", str(prog.id), "linum"],
                             capture_output=True, text=True, check=True).stdout
    assert "int nptest_linum(void * ctx):" in out and "int double_it(void * ctx):" in out
    for offset, text in enumerate(["Mov(R0, 0),", "LoadImm64(R2, 1 << 40),", 'CallFunc("double_it"),', "Exit(),",
                                   None, "Mov(R0, 21),", "Add(R0, R0),", "Exit(),"]):
        if text is not None:
            assert f"; {text} [file:{__file__} line_num:{first + offset} line_col:1]" in out


def test_the_verifier_log_shows_the_source_lines():
    program = Program(Mov(R0, 0),
                      Load(R1, R3, 0, U64),
                      Exit())
    with pytest.raises(VerifierError) as info:
        load(program, ProgType.SOCKET_FILTER, name="nptest_bad")
    line = program.instructions[1].location.line
    assert f"; Load(R1, R3, 0, U64), @ {os.path.basename(__file__)}:{line}" in info.value.log
    assert "R3 !read_ok" in str(info.value)


def refused_debug_info(linked, name, build=debug_info.build):
    """Debug info the kernel refuses: a line record past the end of the program."""
    info = build(linked, name)
    past_the_end = debug_info.LINE_INFO.pack(linked.slot_count + 5, 0, 0, 0)
    return debug_info.DebugInfo(info.btf, info.func_info, info.line_info + past_the_end)


def test_a_kernel_refusing_the_debug_info_still_loads_the_program(monkeypatch, caplog):
    monkeypatch.setattr(debug_info, "build", refused_debug_info)
    with caplog.at_level("DEBUG", logger="netprof.loader.program"):
        with load(Program(Mov(R0, 3), Exit()), ProgType.SOCKET_FILTER, name="nptest_nodebug") as prog:
            assert prog.info().nr_line_info == 0
            assert prog_test_run(prog.fd, bytes(64))[0] == 3
    assert "loaded without its debug info (func_info, line_info): the kernel refused it" in caplog.text


def test_a_bad_program_with_refused_debug_info_is_explained_by_its_own_fault(monkeypatch):
    monkeypatch.setattr(debug_info, "build", refused_debug_info)
    with pytest.raises(VerifierError) as info:
        load(Program(Mov(R0, 0), Load(R1, R3, 0, U64), Exit()), ProgType.SOCKET_FILTER, name="nptest_bad")
    assert "R3 !read_ok" in str(info.value) and info.value.slot == 1


def test_a_kfunc_call_module_index_reads_the_fd_array():
    # No module with BTF here to call into: vmlinux's BTF at fd_array[1] shows the kernel read the
    # array (it refuses it for not being a module's), where without the array it says there is none.
    kfunc = vmlinux().find("bpf_rcu_read_lock", Kind.FUNC)
    program = Program(CallKfunc(kfunc, module=1), Return(0))
    with kernel_btf.open_kernel("vmlinux") as btf:
        with pytest.raises(VerifierError) as info:
            load(program, ProgType.SOCKET_FILTER, name="nptest_kfunc", fd_array=[0, btf])
    assert "BTF fd for kfunc is not a module BTF" in info.value.log
    with pytest.raises(VerifierError) as info:
        load(program.encode(), ProgType.SOCKET_FILTER, name="nptest_kfunc")  # bytes: the kernel's check
    assert "kfunc offset > 0 without fd_array is invalid" in info.value.log
    assert info.value.errno == errno.EPROTO
    with pytest.raises(ValueError, match=r"module 1 needs fd_array\[1\].*fd_array has 0 entries"):
        load(program, ProgType.SOCKET_FILTER, name="nptest_kfunc")


def test_program_loads_a_kernel_symbol_by_btf_id_and_btf_fd():
    # The kernel's address of a function, found through the BTF the fd names (this kernel's
    # kallsyms has no variables, which is what ksyms are usually for).
    function = vmlinux().find("bpf_rcu_read_lock", Kind.FUNC)
    with kernel_btf.open_kernel("vmlinux") as btf:
        program = Program(LoadBtfId(R1, function, btf_fd=btf.fd), Return(7))
        with load(program, ProgType.SOCKET_FILTER, name="nptest_ksym") as prog:
            assert prog_test_run(prog.fd, bytes(64))[0] == 7
    with pytest.raises(VerifierError, match="invalid module BTF object FD"):
        load(Program(LoadBtfId(R1, function, btf_fd=999_999), Return(0)), ProgType.SOCKET_FILTER, name="nptest_ksym")


def test_missing_map_is_an_asm_error():
    from netprof.asm import AsmError

    with pytest.raises(AsmError, match="map 'counts' is not resolved"):
        load(Program(count_into("counts"), Return(0)), ProgType.SOCKET_FILTER, name="nptest")


# --- attach -----------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["bpf_link", "ioctl"])
def test_tracepoint_counts_real_events(counts, method):
    program = Program(only_pid(os.getpid(), "out"), count_into("counts"), Label("out"), Return(0))
    with load(program, ProgType.TRACEPOINT, name="nptest_tp", maps={"counts": counts}) as prog:
        with attach.attach_tracepoint(prog, "syscalls:sys_enter_getpid", method=method) as link:
            assert link.via == method
            for _ in range(1000):
                os.getpid()
    assert counts[0] == 1000


def test_a_bpf_cookie_reaches_the_program(counts):
    """One program on two events, told apart by the cookie each link carries."""
    program = Program(
        Mov(R6, R1),
        only_pid(os.getpid(), "out"),
        Mov(R1, R6), Call(Helper.get_attach_cookie), Mov(R7, R0),
        Store(FP, -4, 0, U32), LoadMapPtr(R1, "counts"), Mov(R2, FP), Add(R2, -4),
        Call(Helper.map_lookup_elem), JEq(R0, 0, "out"), AtomicAdd(R0, 0, R7),
        Label("out"), Return(0))
    with load(program, ProgType.TRACEPOINT, name="nptest_cookie", maps={"counts": counts}) as prog:
        with attach.attach_tracepoint(prog, "syscalls:sys_enter_getpid", cookie=1), \
                attach.attach_tracepoint(prog, "syscalls:sys_enter_getppid", cookie=1000):
            for _ in range(30):
                os.getpid()
            for _ in range(7):
                os.getppid()
        with pytest.raises(ValueError, match="cookie needs a bpf_link"):
            attach.attach_tracepoint(prog, "syscalls:sys_enter_getpid", method="ioctl", cookie=5)
    assert counts[0] == 30 * 1 + 7 * 1000


def test_raw_tracepoint_counts_real_events(counts):
    getpid_nr = {"x86_64": 39, "aarch64": 172}[os.uname().machine]
    program = Program(
        Mov(R6, R1),
        only_pid(os.getpid(), "out"),
        Load(R1, R6, 8, U64), JNe(R1, getpid_nr, "out"),  # bpf_raw_tracepoint_args.args[1]: syscall nr
        count_into("counts"), Label("out"), Return(0),
    )
    with load(program, ProgType.RAW_TRACEPOINT, name="nptest_rawtp", maps={"counts": counts}) as prog:
        with attach.attach_raw_tracepoint(prog, "sys_enter"):
            for _ in range(500):
                os.getpid()
    assert counts[0] == 500


def test_unknown_tracepoint_is_a_clear_error(counts):
    with load(Program(Return(0)), ProgType.TRACEPOINT, name="nptest_tp") as prog:
        with pytest.raises(BpfError, match="no tracepoint net:no_such_event"):
            attach.attach_tracepoint(prog, "net:no_such_event")


@pytest.mark.parametrize("method", ["bpf_link", "ioctl"])
def test_uprobe_and_uretprobe_count_calls_and_read_registers(target_program, counts, method):
    btf = vmlinux()
    arg0 = btf.member_offset("struct pt_regs", "di")
    ret = btf.member_offset("struct pt_regs", "ax")
    target = elf.resolve(str(target_program), "work")
    def count_and_sum(register_offset: int, count_key: int, sum_key: int) -> Program:
        """counts[count_key] += 1; counts[sum_key] += the pt_regs register at register_offset."""
        return Program(Mov(R6, R1), count_into("counts", count_key),
                       Load(R7, R6, register_offset, U64), Store(FP, -4, sum_key, U32), LoadMapPtr(R1, "counts"),
                       Mov(R2, FP), Add(R2, -4), Call(Helper.map_lookup_elem), JEq(R0, 0, "out"),
                       AtomicAdd(R0, 0, R7), Label("out"), Return(0))

    entry, exit_ = count_and_sum(arg0, 0, 2), count_and_sum(ret, 1, 3)
    with load(entry, ProgType.KPROBE, name="nptest_up", maps={"counts": counts}) as p1, \
            load(exit_, ProgType.KPROBE, name="nptest_uret", maps={"counts": counts}) as p2:
        with attach.attach_uprobe(p1, target.path, target.offset, method=method), \
                attach.attach_uprobe(p2, target.path, target.offset, ret=True, method=method):
            out = subprocess.run([str(target_program), "2000"], capture_output=True, text=True, check=True)
    n = 2000
    assert counts[0] == n and counts[1] == n
    assert counts[2] == sum(range(n))                     # the first argument of every call
    assert counts[3] == int(out.stdout) == sum(2 * i + 1 for i in range(n))  # every return value


def test_uprobe_for_one_pid_only(target_program, counts):
    target = elf.resolve(str(target_program), "work")
    with load(Program(count_into("counts"), Return(0)), ProgType.KPROBE, name="nptest_up",
              maps={"counts": counts}) as prog:
        child = subprocess.Popen([str(target_program), "300", "300"], stdout=subprocess.DEVNULL)
        with attach.attach_uprobe(prog, target.path, target.offset, pid=child.pid):
            other = subprocess.run([str(target_program), "100"], capture_output=True, check=True)
            assert other.returncode == 0
            child.wait(timeout=10)
    assert counts[0] == 300


@pytest.mark.parametrize("method", ["bpf_link", "ioctl"])
def test_kprobe_attaches_where_the_kernel_has_kprobes_and_says_why_not_here(counts, method):
    have = features().has("kprobe")
    with load(Program(only_pid(os.getpid(), "out"), count_into("counts"), Label("out"), Return(0)),
              ProgType.KPROBE, name="nptest_kp", maps={"counts": counts}) as prog:
        for ret in (False, True):
            if not have:
                with pytest.raises(BpfError, match="this kernel has no kprobes") as info:
                    attach.attach_kprobe(prog, "__x64_sys_getpid", ret=ret)
                assert info.value.errno == errno.EOPNOTSUPP
                continue
            with attach.attach_kprobe(prog, "__x64_sys_getpid", ret=ret, method=method) as link:
                assert link.via == method
                for _ in range(200):
                    os.getpid()
        if have:
            assert counts[0] == 400
            with pytest.raises(BpfError, match="not in kallsyms"):
                attach.attach_kprobe(prog, "no_such_function_at_all")


def test_fentry_attaches_where_the_kernel_allows_and_says_why_not_here(counts):
    btf = vmlinux()
    fn = btf.function("__task_pid_nr_ns")
    program = Program(only_pid(os.getpid(), "out"), count_into("counts"), Label("out"), Return(0))
    for attach_type in (AttachType.TRACE_FENTRY, AttachType.TRACE_FEXIT):
        try:
            prog = load(program, ProgType.TRACING, name="nptest_fentry", maps={"counts": counts},
                        expected_attach_type=attach_type, attach_btf_id=fn.id)
        except BpfError as err:
            assert not features().has("fentry")
            assert "refuses fentry/fexit programs" in str(err)
            continue
        with prog, attach.attach_tracing(prog):
            for _ in range(100):
                os.getpid()
    if features().has("fentry"):
        assert counts[0] >= 200


# --- XDP ----------------------------------------------------------------------------------------

def xdp_udp_counter(port: int) -> Program:
    """Count UDP/IPv4 packets to ``port``; always XDP_PASS."""
    return Program(
        Load(R2, R1, 0, U32), Load(R3, R1, 4, U32),          # data, data_end
        Mov(R4, R2), Add(R4, 14 + 20 + 8), JGt(R4, R3, "pass"),
        Load(R5, R2, 12, U16), JNe(R5, 0x0008, "pass"),    # ETH_P_IP, big-endian
        Load(R5, R2, 23, U8), JNe(R5, 17, "pass"),         # IPPROTO_UDP (fixed 20-byte header assumed)
        Load(R5, R2, 36, U16), JNe(R5, socket.htons(port), "pass"),
        count_into("counts"),
        Label("pass"), Return(2),                                  # XDP_PASS
    )



def send_udp_from(netns: str, address: str, port: int, count: int) -> None:
    script = (f"import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              f"for i in range({count}):\n s.sendto(b'netprof',('{address}',{port})); time.sleep(0.002)\n")
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", script], check=True, timeout=30)


@pytest.mark.parametrize("method", ["bpf_link", "netlink"])
def test_xdp_counts_packets_then_detaches(veth_pair, counts, method):
    host, netns, _, host_ip = veth_pair
    with load(xdp_udp_counter(9999), ProgType.XDP, name="nptest_xdp", maps={"counts": counts}) as prog:
        with xdp.attach_xdp(prog, host, method=method) as link:
            assert link.via == method and link.mode in ("native", "generic")
            assert f"prog/xdp id {prog.id}" in subprocess.run(["ip", "link", "show", host], capture_output=True,
                                                               text=True).stdout
            record = link.record
            assert (record is not None and record.path.exists()) == (method == "netlink")
            send_udp_from(netns, host_ip, 9999, 50)
            time.sleep(0.1)
        assert record is None or not record.path.exists()
    assert counts[0] == 50
    assert "xdp" not in subprocess.run(["ip", "link", "show", host], capture_output=True, text=True).stdout


def test_auto_attaches_xdp_through_a_link_where_the_kernel_has_them(veth_pair):
    assert xdp.xdp_links_supported()  # Linux 6.18 here; the probe itself touches no real interface
    with load(Program(Mov(R0, 2), Exit()), ProgType.XDP, name="nptest_xdp") as prog:
        with xdp.attach_xdp(prog, veth_pair[0]) as link:
            assert link.via == "bpf_link" and link.record is None


@pytest.mark.parametrize("method", ["bpf_link", "netlink"])
def test_xdp_modes_and_busy(veth_pair, counts, method):
    host = veth_pair[0]
    with load(xdp_udp_counter(1), ProgType.XDP, name="nptest_xdp", maps={"counts": counts}) as prog:
        with xdp.attach_xdp(prog, host, mode="generic", method=method) as link:
            assert link.mode == "generic"
            for other in ("bpf_link", "netlink"):
                with pytest.raises(BpfError, match="already attached"):
                    xdp.attach_xdp(prog, host, mode="generic", method=other)
            if method == "netlink":
                with xdp.attach_xdp(prog, host, mode="generic", replace=True, method="netlink") as again:
                    assert again.prog_id == link.prog_id
        with pytest.raises(BpfError, match="no such interface"):
            xdp.attach_xdp(prog, "npnosuchif0", method=method)


KILLED_ATTACHER = """
import os, signal, sys
from netprof.asm import Program, Mov, Exit, R0
from netprof.loader.program import load
from netprof.loader.syscall import ProgType
from netprof.loader.xdp import attach_xdp
prog = load(Program(Mov(R0, 2), Exit()), ProgType.XDP, name="nptest_dead")
link = attach_xdp(prog, sys.argv[1], mode="generic", method=sys.argv[2])
print(link.prog_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_owner_takes_its_xdp_link_with_it(veth_pair):
    host = veth_pair[0]
    result = subprocess.run([sys.executable, "-c", KILLED_ATTACHER, host, "bpf_link"], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert "xdp" not in subprocess.run(["ip", "link", "show", host], capture_output=True, text=True).stdout


def test_netprof_detach_removes_only_what_a_dead_netprof_left(veth_pair, tmp_path):
    host = veth_pair[0]
    result = subprocess.run([sys.executable, "-c", KILLED_ATTACHER, host, "netlink"], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    prog_id = int(result.stdout)
    assert f"prog/xdp id {prog_id}" in subprocess.run(["ip", "link", "show", host], capture_output=True,
                                                       text=True).stdout
    detach = subprocess.run([sys.executable, "-m", "netprof", "detach"], capture_output=True, text=True)
    assert detach.returncode == 0, detach.stderr
    assert f"detached XDP program {prog_id} from {host}" in detach.stdout
    assert "xdp" not in subprocess.run(["ip", "link", "show", host], capture_output=True, text=True).stdout


def test_detach_reaches_into_the_namespace_of_the_record(veth_pair):
    """A netlink attachment made inside another network namespace by a netprof that died there."""
    _, netns, _, _ = veth_pair
    peer = "npP" + netns[2:]
    result = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", KILLED_ATTACHER, peer, "netlink"],
                            capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    prog_id = int(result.stdout)
    show = ["ip", "-n", netns, "link", "show", peer]
    assert f"prog/xdp id {prog_id}" in subprocess.run(show, capture_output=True, text=True).stdout
    detach = subprocess.run([sys.executable, "-m", "netprof", "detach"], capture_output=True, text=True)
    assert f"detached XDP program {prog_id} from {peer}" in detach.stdout, detach.stdout + detach.stderr
    assert "xdp" not in subprocess.run(show, capture_output=True, text=True).stdout


def test_a_record_from_a_deleted_namespace_is_forgotten(tmp_path):
    netns = f"npgone{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "add", "npG0", "type", "veth", "peer", "name", "npG1"],
                       check=True)
        result = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", KILLED_ATTACHER, "npG0",
                                 "netlink"], capture_output=True, text=True)
        assert result.returncode == -signal.SIGKILL, result.stderr
        inode = os.stat(f"/run/netns/{netns}").st_ino
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)
    [path] = xdp.records_folder().glob(f"{inode}-*.json")
    detach = subprocess.run([sys.executable, "-m", "netprof", "detach"], capture_output=True, text=True)
    assert detach.returncode == 0 and "no longer attached" in detach.stdout, detach.stdout + detach.stderr
    assert not path.exists()


def test_detach_leaves_programs_netprof_did_not_attach(veth_pair):
    from pyroute2 import IPRoute

    host = veth_pair[0]
    with load(Program(Mov(R0, 2), Exit()), ProgType.XDP, name="nptest_other") as prog, IPRoute() as ipr:
        index = ipr.link_lookup(ifname=host)[0]
        xdp._set(ipr, index, prog.fd, xdp.XDP_FLAGS_SKB_MODE)
        try:
            # --all, but only on this test's interface: other captures may be running on the machine
            assert xdp.detach_stale(everything=True, interfaces=[host]) == []
            assert xdp.current(ipr, index)[0] == prog.id
        finally:
            xdp._set(ipr, index, -1, xdp.XDP_FLAGS_SKB_MODE)


# --- ring buffer ----------------------------------------------------------------------------------

RECORD = np.dtype([("ts", "<u8"), ("cpu", "<u4"), ("pid", "<u4"), ("seq", "<u8"), ("tag", "<u8")])


def ringbuf_writer(flags: int = 1) -> Program:
    """On each getpid of this process: {ktime, cpu, pid, per-CPU sequence, 0x6e70} into "events"."""
    return Program(
        only_pid(os.getpid(), "out"),
        Call(Helper.ktime_get_ns), Store(FP, -32, R0, U64),
        Call(Helper.get_smp_processor_id), Store(FP, -24, R0, U32),
        Call(Helper.get_current_pid_tgid), Rsh(R0, 32), Store(FP, -20, R0, U32),
        Store(FP, -36, 0, U32), LoadMapPtr(R1, "seq"), Mov(R2, FP), Add(R2, -36),
        Call(Helper.map_lookup_elem), JEq(R0, 0, "out"),
        Load(R8, R0, 0, U64), Add(R8, 1), Store(R0, 0, R8, U64), Store(FP, -16, R8, U64),
        LoadImm64(R1, 0x6E70), Store(FP, -8, R1, U64),
        LoadMapPtr(R1, "events"), Mov(R2, FP), Add(R2, -32), Mov(R3, 32), Mov(R4, flags),
        Call(Helper.ringbuf_output),
        Label("out"), Return(0),
    )


def test_ring_buffer_delivers_every_record_in_order_per_cpu():
    seq = Map.create(MapType.PERCPU_ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=1,
                     name="nptest_seq")
    with RingBuffer.create(1 << 20, "nptest_events") as rb, seq:
        with load(ringbuf_writer(), ProgType.TRACEPOINT, name="nptest_rb",
                  maps={"events": rb.map, "seq": seq}) as prog:
            with attach.attach_tracepoint(prog, "syscalls:sys_enter_getpid"):
                got = []
                for _ in range(20):
                    for _ in range(1000):
                        os.getpid()
                    got.append(rb.read(RECORD))
        got.append(rb.read(RECORD))
        records = np.concatenate(got)
    assert len(records) == 20000
    assert set(records["pid"]) == {os.getpid()} and set(records["tag"]) == {0x6E70}
    for cpu in np.unique(records["cpu"]):
        mine = records[records["cpu"] == cpu]
        assert np.all(np.diff(mine["seq"].astype(np.int64)) == 1)   # nothing lost, nothing reordered
        assert np.all(np.diff(mine["ts"].astype(np.int64)) >= 0)


def test_ring_buffer_skips_discarded_records_and_reads_mixed_sizes():
    # Run n: reserve 16 bytes {n, 0x16}, submitted when n is even, discarded when odd;
    # then output 24 bytes {n, 0x24, 0}.
    counter = Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=1,
                         name="nptest_n")
    program = Program(
        Store(FP, -4, 0, U32), LoadMapPtr(R1, "n"), Mov(R2, FP), Add(R2, -4), Call(Helper.map_lookup_elem),
        JEq(R0, 0, "out"), Load(R7, R0, 0, U64), Add(R7, 1), Store(R0, 0, R7, U64),
        LoadMapPtr(R1, "events"), Mov(R2, 16), Mov(R3, 0), Call(Helper.ringbuf_reserve), JEq(R0, 0, "out"),
        Store(R0, 0, R7, U64), Store(R0, 8, 0x16, U64), Mov(R1, R0), Mov(R2, 0), Mov(R8, R7), And(R8, 1),
        If(JEq(R8, 0, 0), [Call(Helper.ringbuf_submit)], orelse=[Call(Helper.ringbuf_discard)]),
        Store(FP, -24, R7, U64), Store(FP, -16, 0x24, U64), Store(FP, -8, 0, U64),
        LoadMapPtr(R1, "events"), Mov(R2, FP), Add(R2, -24), Mov(R3, 24), Mov(R4, 0),
        Call(Helper.ringbuf_output),
        Label("out"), Return(0),
    )
    with RingBuffer.create(1 << 16, "nptest_events") as rb, counter:
        with load(program, ProgType.SOCKET_FILTER, name="nptest_rb2", maps={"events": rb.map, "n": counter}) as prog:
            prog_test_run(prog.fd, bytes(64), repeat=100)
            sixteen = rb.read(np.dtype([("n", "<u8"), ("tag", "<u8")]))
            assert list(sixteen["n"]) == list(range(2, 101, 2)) and set(sixteen["tag"]) == {0x16}
            assert rb.discarded == 50 and rb.mismatched == 100   # the 24-byte records, consumed and counted
            assert rb.pending() == 0
            prog_test_run(prog.fd, bytes(64), repeat=10)
        raw = rb.records()
    expected = []
    for n in range(101, 111):
        expected += ([(n, 0x16)] if n % 2 == 0 else []) + [(n, 0x24)]
    assert [(int.from_bytes(r[:8], "little"), int.from_bytes(r[8:16], "little")) for r in raw] == expected
    assert [len(r) for r in raw] == [16 if tag == 0x16 else 24 for _, tag in expected]


def test_ring_buffer_loses_nothing_while_read_concurrently():
    # A producer on one core and the reader on the other: the reader's consumer_pos updates
    # must be single 8-byte stores, or the producer sees a torn position and drops records.
    import threading

    lost = Map.create(MapType.ARRAY, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=1, name="nptest_l")
    program = Program(
        Call(Helper.ktime_get_ns), Store(FP, -8, R0, U64),
        LoadMapPtr(R1, "events"), Mov(R2, FP), Add(R2, -8), Mov(R3, 8), Mov(R4, 1), Call(Helper.ringbuf_output),
        JEq(R0, 0, "out"), count_into("lost"), Label("out"), Return(0),
    )
    with RingBuffer.create(1 << 22, "nptest_events") as rb, lost:
        with load(program, ProgType.SOCKET_FILTER, name="nptest_rbc", maps={"events": rb.map, "lost": lost}) as prog:
            def produce():
                for _ in range(300):
                    prog_test_run(prog.fd, PACKET_64, repeat=5000)
                    time.sleep(0.002)

            producer = threading.Thread(target=produce)
            producer.start()
            got = 0
            while producer.is_alive():
                got += rb.read(np.dtype("<u8")).size
            producer.join()
            got += rb.read(np.dtype("<u8")).size
        assert (got, lost[0]) == (1_500_000, 0)


PACKET_64 = bytes(64)


def test_ring_buffer_wait_times_out_and_wakes():
    with RingBuffer.create(1 << 16, "nptest_events") as rb:
        start = time.monotonic()
        assert rb.wait(0.05) is False
        assert time.monotonic() - start >= 0.04
        program = Program(Store(FP, -8, 1, U64), LoadMapPtr(R1, "events"), Mov(R2, FP), Add(R2, -8),
                          Mov(R3, 8), Mov(R4, 0), Call(Helper.ringbuf_output), Return(0))
        with load(program, ProgType.SOCKET_FILTER, name="nptest_rbw", maps={"events": rb.map}) as prog:
            prog_test_run(prog.fd, bytes(64))
        assert rb.wait(1.0) is True
        assert list(rb.read(np.dtype("<u8"))) == [1]


# --- feature probing ------------------------------------------------------------------------------

def test_features_are_probed_cached_and_printed(tmp_path):
    import json

    env = dict(os.environ, NETPROF_RUN_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "netprof", "features", "--json"], capture_output=True,
                            text=True, env=env, check=True)
    found = json.loads(result.stdout)
    assert found["kernel"] == os.uname().release
    assert found["attach"]["tracepoint"]["state"] == found["attach"]["uprobe"]["state"] == "supported"
    if attach.kprobe_available() is not None:
        assert found["attach"]["kprobe"]["state"] == "supported"
    else:
        assert found["attach"]["kprobe"] == {"state": "not supported",
                                             "detail": "this kernel has no kprobes (CONFIG_KPROBES unset)"}
    assert found["map_types"]["ringbuf"]["state"] == found["prog_types"]["xdp"]["state"] == "supported"
    assert found["attach"]["perf_event_link"]["state"] == found["attach"]["xdp_link"]["state"] == "supported"
    assert "bpf_ringbuf_output" in found["helpers"]["tracepoint"]
    assert "bpf_xdp_adjust_head" not in found["helpers"]["tracepoint"]
    assert list(tmp_path.glob("features-*.json"))
    table = subprocess.run([sys.executable, "-m", "netprof", "features"], capture_output=True, text=True,
                           env=env, check=True).stdout
    assert "attach mechanisms:" in table and "uprobe" in table


def test_map_create_refusal_names_the_attributes():
    with pytest.raises(BpfError, match="refused key_size=4 value_size=8 max_entries=0"):
        Map.create(MapType.HASH, key_size=4, value_size=8, max_entries=0, name="nptest")


def test_pin_and_open_a_pinned_map(tmp_path):
    bpffs = tmp_path / "bpffs"
    bpffs.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(bpffs)], check=True)
    try:
        with Map.create(MapType.HASH, key=ctypes.c_uint32, value=ctypes.c_uint64, max_entries=4,
                        name="nptest_pin") as m:
            m[1] = 42
            m.pin(bpffs / "counts")
            with Map.pinned(bpffs / "counts", key=ctypes.c_uint32, value=ctypes.c_uint64) as again:
                assert again.id == m.id and again[1] == 42 and again.type == MapType.HASH
    finally:
        subprocess.run(["umount", str(bpffs)], check=True)


def test_a_cookie_never_falls_back_to_the_ioctl(counts, monkeypatch):
    """After some event fell back to the ioctl, a call that carries a cookie still gets a link."""
    monkeypatch.setattr(attach, "_perf_links", False)
    with load(Program(Return(0)), ProgType.TRACEPOINT, name="nptest_tp") as prog:
        with attach.attach_tracepoint(prog, "syscalls:sys_enter_getpid", cookie=9) as link:
            assert link.via == "bpf_link"


def test_two_records_on_one_interface_are_two_files():
    a = xdp.XdpRecord(7, "veth0", 1, 42, "generic", 100, 1, 0.0)
    b = xdp.XdpRecord(7, "veth0", 1, 43, "generic", 200, 1, 0.0)
    assert a.path != b.path and a.path.parent == b.path.parent
