# The commands README.md quotes. Everything runs in the project's own virtual environment .venv,
# made from the system python3 by tools/venv (PEP 668: nothing is installed into the system's
# Python). Every target calls .venv's interpreter by path, so that `sudo make demo` and
# `sudo make test` run what a normal user installed, and nothing root runs leaves root-owned files
# in a user's tree: root installs as the tree's owner, writes no bytecode there and no pytest cache,
# and netprof hands every file it writes under sudo to the invoking user.
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(PY) -m pytest -p no:cacheprovider
ifeq ($(shell id -u),0)
export PYTHONDONTWRITEBYTECODE := 1
endif

.PHONY: install system-packages test test-unit test-vm bench vectors demo

install:
	tools/venv

$(VENV)/.installed: pyproject.toml
	tools/venv

# As root, the Debian packages the demo and the tests use (gcc, iproute2, bpftool, tshark, Mesa, Xvfb).
system-packages:
	tools/system-packages --install

test: $(VENV)/.installed system-packages
	$(PYTEST) -q

# Kernel-function probes (kprobe, fentry) in a QEMU guest booting Debian's kernel (needs root).
test-vm: $(VENV)/.installed
	vm/run $(PYTEST) -q -m "vm or root" tests/test_vm.py \
		tests/test_loader_kernel.py::test_kprobe_attaches_where_the_kernel_has_kprobes_and_says_why_not_here \
		tests/test_loader_kernel.py::test_fentry_attaches_where_the_kernel_allows_and_says_why_not_here
	$(PYTEST) -q -m vm tests/test_vm_network.py

# The tests that need neither root nor the kernel.
test-unit: $(VENV)/.installed
	$(PYTEST) -q -m 'not root'

# Two network namespaces, TCP and UDP traffic, a few seconds captured, the report and two pictures (root).
demo: $(VENV)/.installed system-packages
	$(PY) demo/demo.py

bench: $(VENV)/.installed
	$(PY) bench/bench_asm.py

# Regenerate the assembler's golden vectors (needs Debian's llvm-19).
vectors: $(VENV)/.installed
	$(PY) tools/gen_asm_vectors.py
