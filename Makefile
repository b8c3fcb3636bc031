# The commands README.md quotes. PYTHON may be overridden: make test PYTHON=python3.12
PYTHON ?= python3

.PHONY: install test test-unit bench vectors demo

install:
	$(PYTHON) -m pip install -q -e '.[test]'

test:
	$(PYTHON) -m pytest -q

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
