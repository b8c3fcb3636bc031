"""Measuring what netprof's own probes cost on the running kernel: the workload it probes (a
small executable written here, so no compiler is needed), the measurement, and the per-boot table
that capture and analysis read."""
