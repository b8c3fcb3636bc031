"""The level-of-detail layer against brute force: what it draws is where spans are, and every span
on screen is drawn, at every zoom. Pure numpy: no GL."""

import numpy as np
import pytest

import needs

needs.module("netprof_viz")

from netprof_viz.lod import LodIndex, gather


def coverage(start, end, row, t0, p, width, rows):
    """Boolean [rows, width]: pixel columns touched by each interval (at least its start column)."""
    out = np.zeros((rows, width), bool)
    a = np.floor((np.asarray(start, float) - t0) / p).astype(np.int64)
    b = np.maximum(np.floor((np.asarray(end, float) - t0) / p).astype(np.int64), a)
    keep = (b >= 0) & (a < width)
    for r, x0, x1 in zip(row[keep], np.clip(a[keep], 0, width - 1), np.clip(b[keep], 0, width - 1), strict=True):
        out[r, x0:x1 + 1] = True
    return out


def grow(mask):
    """Each pixel and its left and right neighbours."""
    out = mask.copy()
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def random_spans(seed, n=4000, rows=6, horizon=10**9):
    rng = np.random.default_rng(seed)
    start = rng.integers(0, horizon, n)
    duration = (rng.pareto(1.2, n) * rng.choice([10, 1000, 10**5], n)).astype(np.int64)
    duration[rng.random(n) < 0.05] = 0
    return start, start + duration, rng.integers(0, rows, n), rng.integers(0, 4096, n)


@pytest.mark.parametrize("seed", range(8))
def test_drawn_pixels_match_the_spans_at_every_zoom(seed):
    start, end, row, color = random_spans(seed)
    index = LodIndex(start, end, row, color)
    rng = np.random.default_rng(100 + seed)
    width, rows = 400, 6
    for span in (2e9, 1e9, 3e7, 1e6, 4e4, 2e3, 300.0, 20.0):
        t0 = float(rng.uniform(-span / 4, 1e9 - span / 2))
        p = span / width
        drawn = index.query(t0, t0 + span, width)
        # one pixel of margin either side: a cell may straddle the view's edge
        edge, columns = t0 - p, width + 2
        truth = coverage(start, end, row, edge, p, columns, rows)
        picture = coverage(index.start[drawn.spans], index.end[drawn.spans], index.row[drawn.spans], edge, p,
                           columns, rows) | coverage(drawn.cell_start, drawn.cell_end - 1, drawn.cell_row, edge, p,
                                                     columns, rows)
        inside = slice(1, -1)
        assert not (picture & ~grow(truth))[:, inside].any(), f"drawn where no span is (view {span} ns)"
        assert not (truth & ~grow(picture))[:, inside].any(), f"a span on screen was not drawn (view {span} ns)"
        # spans a pixel wide or more are drawn whole, each once
        visible = (end >= max(t0, 0)) & (start <= t0 + span) & (end - start >= p)
        assert sorted(drawn.spans.tolist()) == sorted(np.flatnonzero(visible).tolist())
        assert drawn.cell_start.size <= rows * (4 * width + 2)


def test_cells_take_the_group_of_their_longest_span():
    index = LodIndex(np.array([100, 101, 102]), np.array([103, 140, 110]), np.zeros(3, int), np.array([7, 8, 9]))
    drawn = index.query(0, 10**6, 100)  # 10 µs a pixel: all three in one cell
    assert drawn.spans.size == 0 and drawn.cell_group.tolist() == [8]


def test_long_captures_and_many_rows_fit_the_keys():
    start = np.array([0, 3600 * 10**9])  # an hour
    index = LodIndex(start, start + 10, np.array([0, 5000]), np.array([1, 2]))
    drawn = index.query(3600 * 10**9 - 100, 3600 * 10**9 + 100, 100)
    assert index.row[drawn.spans].tolist() == [5000]


def test_empty_index():
    index = LodIndex(np.empty(0, int), np.empty(0, int), np.empty(0, int), np.empty(0, int))
    drawn = index.query(0, 100, 10)
    assert drawn.spans.size == 0 and drawn.cell_start.size == 0


def test_gather():
    assert gather(np.array([2, 10, 5]), np.array([4, 10, 7])).tolist() == [2, 3, 5, 6]
