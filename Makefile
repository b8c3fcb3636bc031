# The commands README.md quotes. PYTHON may be overridden: make test PYTHON=python3.12
PYTHON ?= python3

.PHONY: install test test-unit test-vm bench vectors demo

install:
	$(PYTHON) -m pip install -q -e '.[test,viz]'
	$(PYTHON) -m compileall -q netprof >/dev/null  # an editable install compiles nothing: ~40 ms a start

test:
	$(PYTHON) -m pytest -q

# Kernel-function probes (kprobe, fentry) in a QEMU guest booting Debian's kernel (needs root).
test-vm:
	vm/run $(PYTHON) -m pytest -q -p no:cacheprovider -m "vm or root" tests/test_vm.py \
		tests/test_loader_kernel.py::test_kprobe_attaches_where_the_kernel_has_kprobes_and_says_why_not_here \
		tests/test_loader_kernel.py::test_fentry_attaches_where_the_kernel_allows_and_says_why_not_here
	$(PYTHON) -m pytest -q -p no:cacheprovider -m vm tests/test_vm_network.py

test-unit:
	$(PYTHON) -m pytest -q -m 'not root'

# Two network namespaces, TCP and UDP traffic, a few seconds captured, the report (needs root).
demo: install
	$(PYTHON) demo/demo.py

bench:
	$(PYTHON) bench/bench_asm.py

# Regenerate the assembler's golden vectors (needs Debian's llvm-19).
vectors:
	$(PYTHON) tools/gen_asm_vectors.py
