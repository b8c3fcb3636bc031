"""A capture, in the order it happens: options (what to record) -> plan (every probe checked
before anything is attached) -> attachers (programs and bpf_links) -> runner (ring buffers,
samplers and the clock, into the trace file). netprof.session.Session puts them together."""
