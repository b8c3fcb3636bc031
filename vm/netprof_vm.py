#!/usr/bin/env python3
"""Run a command inside a QEMU guest that boots Debian's own kernel (kprobes and fentry, which
the host kernel may lack), with the host's root shared read-only and the project read-write.

No disk image: the guest boots Debian's kernel with a small initramfs (busybox and the virtio/9p
modules) that mounts the host's / over 9p, chroots into it and runs the command with the host's
own Python. The command's exit status comes back through the project folder (QEMU's own exit
status says nothing about it). KVM when it works, TCG otherwise.

    vm/prepare                    # once: QEMU, busybox, the kernel package, the initramfs (cached)
    vm/run python3 -m netprof features
    vm/run --shell                # an interactive shell in the guest
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path

KERNEL_PACKAGE = os.environ.get("NETPROF_VM_KERNEL", "linux-image-6.1.0-50-amd64")
if not re.fullmatch(r"linux-image-[a-z0-9.+-]+", KERNEL_PACKAGE):  # a folder name under the cache, too
    raise SystemExit(f"vm: NETPROF_VM_KERNEL={KERNEL_PACKAGE!r} is not a linux-image-* package name")  # the plain flavour: -cloud has no 9p
# Root boots what lies here: never a folder a user controls ($HOME under sudo -E is the user's).
CACHE = Path(os.environ.get("NETPROF_VM_CACHE", "/var/cache/netprof-vm"))
PROJECT = Path(__file__).resolve().parent.parent
MODULES = ["virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "netfs",
           "fscache", "9pnet", "9pnet_virtio", "9p", "failover", "net_failover", "virtio_net"]
# vm/run --net: a tap interface between host and guest (the prototype's 192.168.179.0/24 link).
TAP, HOST_ADDRESS, GUEST_ADDRESS = "npvm0", "192.168.179.1/24", "192.168.179.2/24"
BUSYBOX_APPLETS = ["sh", "mount", "umount", "insmod", "mkdir", "cat", "chroot", "poweroff", "sync", "echo",
                   "setsid", "cttyhack", "sleep", "ls", "ip"]
MEMORY_MB = int(os.environ.get("NETPROF_VM_MEMORY", "2048"))

INIT = r"""#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko; done
project=$(sed 's/.*netprof.project=\([^ ]*\).*/\1/' /proc/cmdline)
mode=$(sed 's/.*netprof.mode=\([^ ]*\).*/\1/' /proc/cmdline)
case "$(cat /proc/cmdline)" in *netprof.net=*)
    address=$(sed 's/.*netprof.net=\([^ ]*\).*/\1/' /proc/cmdline)
    ip link set lo up; ip addr add "$address" dev eth0; ip link set eth0 up ;;
esac
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /host
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run
mount -t tmpfs tmpfs /host/var/tmp 2>/dev/null
# After the tmpfs mounts, so that a project under /tmp is not hidden by them.
mkdir -p /host$project 2>/dev/null
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 project /host$project
mount -t bpf bpf /host/sys/fs/bpf
mount -t tracefs tracefs /host/sys/kernel/tracing
mount -t debugfs debugfs /host/sys/kernel/debug 2>/dev/null
if [ "$mode" = shell ]; then
    setsid cttyhack chroot /host /usr/bin/env HOME=/tmp /bin/bash -l
else
    chroot /host /usr/bin/env HOME=/tmp PYTHONDONTWRITEBYTECODE=1 /bin/sh -c "cd $project && . $project/vm/.run/command"
    echo $? > /host$project/vm/.run/status
fi
sync
poweroff -f
"""


def say(message: str) -> None:
    print(f"vm: {message}", file=sys.stderr, flush=True)


def apt_install(*packages: str) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def _cpio(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive of (name, mode, data, rdev) entries."""
    out, inode = bytearray(), 1
    for name, mode, data, rdev in entries + [("TRAILER!!!", 0, b"", 0)]:
        encoded = name.encode() + b"\0"
        fields = [inode, mode, 0, 0, 1, 0, len(data), 0, 0, os.major(rdev), os.minor(rdev), len(encoded), 0]
        out += b"070701" + b"".join(f"{f:08x}".encode() for f in fields) + encoded
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
        inode += 1
    return bytes(out)


def trusted_folder(path: Path) -> Path:
    """``path``, made if missing; refused unless it and every folder above it belong to root and
    no one else may write them, sticky folders such as /tmp above it aside (a user who could
    would choose the kernel that root boots)."""
    path = Path(os.path.abspath(path))
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    for folder in (path, *path.parents):
        st = os.lstat(folder)
        shared = st.st_mode & 0o022 and not (folder != path and st.st_mode & stat.S_ISVTX)  # /tmp is fine above
        if stat.S_ISLNK(st.st_mode) or st.st_uid != 0 or shared:
            raise SystemExit(f"vm: will not use {path}: {folder} is not a folder that only root can change "
                             f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); set NETPROF_VM_CACHE "
                             "to one that is, or leave it unset for /var/cache/netprof-vm")
    return path


def prepare() -> Path:
    """Install QEMU and busybox if missing, fetch the kernel package, build the initramfs. Idempotent."""
    missing = [pkg for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static"))
               if not shutil.which(tool)]
    if missing:
        say(f"installing {' '.join(missing)}")
        apt_install(*missing)
    guest = trusted_folder(CACHE) / KERNEL_PACKAGE
    if (guest / "ready").exists():
        return guest
    start = time.monotonic()
    guest.mkdir(parents=True, exist_ok=True)
    say(f"fetching {KERNEL_PACKAGE} into {guest}")
    subprocess.run(["apt-get", "download", KERNEL_PACKAGE], cwd=guest, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    deb = next(guest.glob(f"{KERNEL_PACKAGE}_*.deb"))
    extracted = guest / "extracted"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(extracted)], check=True)
    shutil.copy(next((extracted / "boot").glob("vmlinuz-*")), guest / "vmlinuz")
    modules = {p.name.split(".ko")[0]: p for p in (extracted / "lib/modules").rglob("*.ko*")}
    busybox = Path(shutil.which("busybox")).read_bytes()
    entries = [(d, stat.S_IFDIR | 0o755, b"", 0) for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules")]
    entries.append(("dev/console", stat.S_IFCHR | 0o600, b"", os.makedev(5, 1)))
    entries.append(("bin/busybox", stat.S_IFREG | 0o755, busybox, 0))
    entries += [(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox", 0) for applet in BUSYBOX_APPLETS]
    entries.append(("bin/sed", stat.S_IFLNK | 0o777, b"busybox", 0))
    for name in MODULES:
        path = modules.get(name)
        if path is None:
            continue  # built into this kernel
        data = path.read_bytes()
        if path.name.endswith(".xz") or path.name.endswith(".zst"):
            raise SystemExit(f"vm: compressed module {path.name}: not supported")
        entries.append((f"lib/modules/{name}.ko", stat.S_IFREG | 0o644, data, 0))
    init = INIT.replace("{modules}", " ".join(MODULES)).encode()
    entries.append(("init", stat.S_IFREG | 0o755, init, 0))
    (guest / "initramfs.cpio.gz").write_bytes(gzip.compress(_cpio(entries), 1))
    shutil.rmtree(extracted)
    deb.unlink()
    (guest / "ready").write_text(KERNEL_PACKAGE)
    say(f"guest ready in {time.monotonic() - start:.0f} s ({guest})")
    return guest


# What SeaBIOS sends the serial console on every boot: reset, line wrapping off, clear screen.
# Dropped, so that the terminal is left as it was found and what was on it stays.
TERMINAL_RESETS = (b"\x1bc", b"\x1b[?7l", b"\x1b[2J")
_RESETS = re.compile(b"|".join(re.escape(r) for r in TERMINAL_RESETS))


def _forward(stream, out) -> None:
    """Copy the guest's console to ``out`` without TERMINAL_RESETS, as it comes (interactive too)."""
    pending = b""
    while chunk := os.read(stream.fileno(), 65536):
        data, pending = pending + chunk, b""
        cut = data.rfind(b"\x1b")
        if cut >= 0 and any(r.startswith(data[cut:]) and r != data[cut:] for r in TERMINAL_RESETS):
            data, pending = data[:cut], data[cut:]  # a reset split between two reads
        out.write(_RESETS.sub(b"", data))
        out.flush()
    out.write(pending)
    out.flush()


def _console(command: list[str], **kwargs) -> int:
    """Run QEMU with its console filtered to our stdout; the terminal's settings restored after."""
    saved = termios.tcgetattr(0) if os.isatty(0) else None
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, **kwargs) as qemu:
            _forward(qemu.stdout, sys.stdout.buffer)
            return qemu.wait()
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        if os.isatty(1):
            sys.stdout.buffer.write(b"\x1b[?7h")  # line wrapping on, whatever the guest left
            sys.stdout.flush()


def _qemu(guest: Path, mode: str, accel: str, net: bool = False) -> list[str]:
    append = f"console=ttyS0 quiet loglevel=1 panic=-1 netprof.project={PROJECT} netprof.mode={mode}"
    network = []
    if net:
        append += f" netprof.net={GUEST_ADDRESS}"
        network = ["-netdev", f"tap,id=n0,ifname={TAP},script=no,downscript=no",
                   "-device", "virtio-net-pci,netdev=n0,romfile="]  # no iPXE: the kernel is given
    else:
        network = ["-nic", "none"]
    return ["qemu-system-x86_64", "-accel", accel, "-cpu", "host" if accel == "kvm" else "max",
            "-m", str(MEMORY_MB), "-smp", str(min(os.cpu_count() or 1, 2)), "-nographic", "-no-reboot",
            "-kernel", str(guest / "vmlinuz"), "-initrd", str(guest / "initramfs.cpio.gz"), "-append", append,
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={PROJECT},mount_tag=project,security_model=none,multidevs=remap"] + network


def _accelerator(guest: Path) -> str:
    """KVM if a guest really boots with it here (it may exist and still fail), else TCG; cached."""
    choice = guest / "accel"
    if choice.exists():
        return choice.read_text()
    accel = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        status = _boot(guest, "true", "kvm", timeout=25, quiet=True)
        accel = "kvm" if status == 0 else "tcg"
    choice.write_text(accel)
    say(f"accelerator: {accel}")
    return accel


def _run_folder() -> int:
    """vm/.run, opened without following links: the guest's command and exit status go through it.
    It lies in the user's tree, so root reaches it only by file descriptor (no symlink planted
    there makes root write or chown anything else) and hands what it writes to the tree's owner."""
    vm = os.open(PROJECT / "vm", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(".run", 0o755, dir_fd=vm)
        try:
            folder = os.open(".run", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=vm)
        except OSError as err:
            raise SystemExit(f"vm: {PROJECT / 'vm/.run'} is not a folder ({err.strerror}): remove it") from None
    finally:
        os.close(vm)
    st = os.stat(PROJECT)
    with contextlib.suppress(OSError):
        os.fchown(folder, st.st_uid, st.st_gid)
    return folder


def _write_new(folder: int, name: str, text: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=folder)
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder)
    with os.fdopen(fd, "w") as f:
        st = os.stat(PROJECT)
        with contextlib.suppress(OSError):
            os.fchown(f.fileno(), st.st_uid, st.st_gid)
        f.write(text)


def _read_status(folder: int) -> int | None:
    """The exit status the guest wrote, then the file removed; None if there is none (or it is no
    plain file holding a number)."""
    try:
        fd = os.open("status", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except OSError:
        return None
    with os.fdopen(fd) as f:
        text = f.read(32) if stat.S_ISREG(os.fstat(fd).st_mode) else ""
    with contextlib.suppress(OSError):
        os.unlink("status", dir_fd=folder)
    return int(text) if text.strip().lstrip("-").isdigit() else None


def _boot(guest: Path, command: str, accel: str, timeout: float, quiet: bool = False, net: bool = False) -> int | None:
    folder = _run_folder()
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink("status", dir_fd=folder)
        # The host's PATH (and virtualenv or pyenv settings): "python3" means the host's own Python.
        # SUDO_UID/SUDO_GID: netprof in the guest hands what it writes to the user who ran sudo, as here.
        keep = [k for k in os.environ
                if k in ("PATH", "VIRTUAL_ENV", "PYTHONPATH", "SUDO_UID", "SUDO_GID") or k.startswith("PYENV")]
        exports = "".join(f"export {k}={shlex.quote(os.environ[k])}\n" for k in keep)
        _write_new(folder, "command", exports + command + "\n")
        return _run_guest(guest, accel, timeout, quiet, net, folder)
    finally:
        os.close(folder)


def _run_guest(guest: Path, accel: str, timeout: float, quiet: bool, net: bool, folder: int) -> int | None:
    qemu = ["timeout", "--kill-after=5", str(int(timeout)), *_qemu(guest, "run", accel, net)]
    try:
        if quiet:
            subprocess.run(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            _console(qemu, stdin=subprocess.DEVNULL)
    finally:
        code = _read_status(folder)  # written by root in the guest
    return code


class _Tap:
    """The host end of vm/run --net: tap npvm0 with 192.168.179.1/24, removed afterwards."""

    def __enter__(self):
        subprocess.run(["ip", "link", "del", TAP], capture_output=True)
        for cmd in (["ip", "tuntap", "add", "dev", TAP, "mode", "tap"], ["ip", "addr", "add", HOST_ADDRESS, "dev", TAP],
                    ["ip", "link", "set", TAP, "up"]):
            subprocess.run(cmd, check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "link", "del", TAP], capture_output=True)


def run(command: list[str], timeout: float, net: bool = False) -> int:
    guest = prepare()
    accel = _accelerator(guest)
    start = time.monotonic()
    with _Tap() if net else contextlib.nullcontext():
        code = _boot(guest, shlex.join(command), accel, timeout, net=net)
    if code is None:
        say(f"no exit status came back: the guest did not run the command to its end (see its output above; "
            f"the limit is {timeout:.0f} s)")
        return 124
    say(f"{shlex.join(command)} exited {code} after {time.monotonic() - start:.0f} s ({accel})")
    return code


def shell(net: bool = False) -> int:
    guest = prepare()
    with _Tap() if net else contextlib.nullcontext():
        return _console(_qemu(guest, "shell", _accelerator(guest), net))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("prepare")
    p = sub.add_parser("run")
    p.add_argument("--shell", action="store_true", help="an interactive shell instead of a command")
    p.add_argument("--net", action="store_true",
                   help=f"a network link to the host: tap {TAP} {HOST_ADDRESS} here, eth0 {GUEST_ADDRESS} in the guest")
    p.add_argument("--timeout", type=float, default=float(os.environ.get("NETPROF_VM_TIMEOUT", "900")))
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        say("needs root (QEMU's 9p export of / and the kernel tests inside)")
        return 2
    if args.what == "prepare":
        prepare()
        return 0
    if args.shell:
        return shell(args.net)
    if not args.command:
        parser.error("give a command to run in the guest, or --shell")
    return run(args.command, args.timeout, args.net)


if __name__ == "__main__":
    sys.exit(main())
