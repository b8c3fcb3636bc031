"""netprof's viewer, a distribution of its own (netprof-viz): per-CPU call stacks, user spans per
thread, XDP packets, throughput and memory on one time axis, drawn with vispy through a
level-of-detail layer so millions of spans stay smooth. It reads traces through netprof's public
analysis API only (netprof.trace, netprof.units).

Imported only by ``netprof view``; netprof itself never imports vispy or Qt. The pure parts (view, lod,
scene, timeaxis, colors) need numpy only and are tested without a GL context.
"""
