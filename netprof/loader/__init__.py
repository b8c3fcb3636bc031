"""netprof.loader: everything that talks to the kernel (bpf(2), perf_event_open(2), netlink)."""
