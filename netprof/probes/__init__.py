"""The probes netprof ships: span, XDP packet, throughput and memory sources, and their records."""
