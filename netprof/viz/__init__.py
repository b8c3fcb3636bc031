"""The viewer: per-CPU call stacks, user spans per thread, XDP packets, throughput and memory on one
time axis, drawn with vispy through a level-of-detail layer so millions of spans stay smooth.

Imported only by ``netprof view``; the capture side never needs it. The pure parts (view, lod,
scene, timeaxis, colors) need numpy only and are tested without a GL context.
"""
