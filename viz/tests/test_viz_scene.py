"""The viewer's pure logic: view maths, easing, ticks, lanes, hit-testing and input handling,
without a GL context."""

import numpy as np
import pytest
import needs

needs.module("netprof_viz")

import viz_trace

import netprof
from netprof_viz import colors
from netprof_viz.controller import Controller
from netprof_viz.scene import LEFT, TOP, Options, Scene, ethernet_summary
from netprof_viz.timeaxis import format_duration, format_time, ticks
from netprof_viz.view import MIN_SPAN_NS, Easing, View


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("viz") / "synthetic.trace"
    viz_trace.write(path)
    return netprof.load(path)


# --- view --------------------------------------------------------------------------------------


def test_zoom_keeps_the_time_under_the_pointer():
    view = View(0, 1000, 100)
    zoomed = view.zoomed(25, 4)
    assert zoomed.span == pytest.approx(250)
    assert zoomed.time_at(25) == pytest.approx(view.time_at(25))
    assert view.zoomed(25, 1e12).span == MIN_SPAN_NS


def test_pan_moves_content_with_the_pointer_and_stays_near_the_capture():
    view = View(0, 1000, 100)
    assert view.panned(-10).t0 == pytest.approx(100)
    far = view.panned(-10**6, limits=(0, 1000))
    assert far.t0 <= 1000 - far.span / 2 + 1e-6


def test_easing_converges_in_log_space():
    easing = Easing(View(0, 1e9, 1000))
    easing.set_target(View(5e8, 5e8 + 1e3, 1000))
    spans = []
    while easing.step():
        spans.append(easing.current.span)
        assert len(spans) < 200
    assert easing.current.span == pytest.approx(1e3)
    steps = -np.diff(np.log(spans))
    assert np.all(steps > 0) and np.all(np.diff(steps) < 0)  # zooms in all the way, slowing down (ease-out)
    assert np.log(1e9 / spans[0]) < 0.5 * np.log(1e6)      # no jump: the first frame goes less than half way


def test_easing_keeps_the_time_under_the_pointer_in_place_all_the_way():
    start = View(0, 1e9, 1000)
    easing = Easing(start)
    easing.set_target(start.zoomed(100, 50))
    anchor = start.time_at(100)
    while easing.step():
        assert easing.current.time_at(100) == pytest.approx(anchor, abs=start.ns_per_px * 1e-6)


def test_ticks_and_units():
    step, marks = ticks(0, 1e9, 1000)
    assert step == 2e8 and marks[:3] == [0, 2e8, 4e8]
    assert format_time(2e8, step) == "200 ms"
    assert format_time(1500, 500) == "1500 ns" and format_time(2.5e6, 5e5) == "2500 us"
    assert format_time(1.25e9, 5e7) == "1250 ms" and format_time(3e9, 1e9) == "3 s"
    assert format_duration(1234.0) == "1.23 us" and format_duration(3e9) == "3 s"
    step, marks = ticks(1_000_000_003, 1_000_000_103, 1000)
    assert step == 20 and all(1_000_000_003 <= m <= 1_000_000_103 for m in marks)


def test_colours_are_stable_and_distinct():
    assert colors.key_of("ip_rcv") == colors.key_of("ip_rcv")
    rgb = colors.key_rgb(np.array([colors.key_of(n) for n in ("ip_rcv", "tcp_v4_rcv", "napi_poll")]))
    assert rgb.shape == (3, 3) and np.all((rgb >= 0) & (rgb <= 1))
    assert np.min(np.abs(rgb[0] - rgb[1]).sum()) > 0.1


def test_ethernet_summary():
    assert ethernet_summary(viz_trace.ETHERNET) == "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff IPv4"


# --- scene --------------------------------------------------------------------------------------


def test_lanes_in_order(trace):
    scene = Scene(trace)
    titles = [lane.title for lane in scene.lanes]
    assert titles == ["CPU 0", "CPU 1", "client 300 tid 301", "XDP veth0", "veth0 rx", "memory"]
    ys = [lane.y for lane in scene.lanes]
    assert ys == sorted(ys)
    assert scene.lanes[0].rows == 2  # ip_rcv with tcp_v4_rcv inside


def test_merged_stack_and_options(trace):
    merged = Scene(trace, Options(stack="merged", memory=False, throughput=False, xdp=False))
    assert [lane.title for lane in merged.lanes] == ["all CPUs", "client 300 tid 301"]
    no_cpu1 = Scene(trace, Options(ignored_cpus=(1,)))
    assert "CPU 1" not in [lane.title for lane in no_cpu1.lanes]
    assert set(no_cpu1.spans["cpu"]) == {0}


def test_filter_keeps_only_the_window(trace):
    scene = Scene(trace, Options(filter=(550_000_000, 950_000_000)))
    assert scene.limits == (550_000_000, 950_000_000)
    names = {scene.names[p] for p in scene.spans["probe"]}
    assert names == {"ip_rcv", "client:send_all"}  # the CPU 1 ip_rcv and the user span reach into it
    with pytest.raises(ValueError, match="holds nothing"):
        Scene(trace, Options(filter=(5e9, 6e9)))


def pixel_of(scene, view, probe_name, cpu):
    i = next(i for i, s in enumerate(scene.spans) if scene.names[s["probe"]] == probe_name and s["cpu"] == cpu)
    x = LEFT + ((scene.span_start[i] + scene.span_end[i]) / 2 - view.t0) / view.ns_per_px
    y = TOP + scene.row_y[scene.span_row[i]] + scene.row_h[scene.span_row[i]] / 2
    return i, x, y


def test_hit_testing_finds_the_span_under_a_pixel(trace):
    scene = Scene(trace)
    view = scene.initial_view(1000)
    for name, cpu in (("ip_rcv", 0), ("tcp_v4_rcv", 0), ("ip_rcv", 1), ("client:send_all", 1)):
        i, x, y = pixel_of(scene, view, name, cpu)
        assert scene.span_at(view, x, y) == i, name
    _, x, y = pixel_of(scene, view, "tcp_v4_rcv", 0)
    assert scene.span_at(view, LEFT + (300_000_000 - view.t0) / view.ns_per_px, y) is None  # after it
    assert scene.span_at(view, 5, y) is None            # the title column
    assert scene.span_at(view, x, TOP + scene.height + 50) is None


def test_describe(trace):
    scene = Scene(trace)
    i, _, _ = pixel_of(scene, scene.initial_view(1000), "tcp_v4_rcv", 0)
    text = "\n".join(scene.describe(i))
    assert "tcp_v4_rcv" in text and "duration 100 ms" in text and "cpu 0" in text and "depth 1" in text


def in_spans(scene, frame) -> set[str]:
    """The labels written inside the lanes' timeline (not titles, ticks or the legend)."""
    return {label.text for label in frame.labels if label.x >= LEFT and TOP < label.y < TOP + scene.height}


def test_frame_draws_every_span_and_labels_the_wide_ones(trace):
    scene = Scene(trace)
    frame = scene.frame(scene.initial_view(1000), 600)
    assert {"ip_rcv", "tcp_v4_rcv", "client:send_all"} <= in_spans(scene, frame)
    assert {"CPU 0", "XDP veth0"} <= {label.text for label in frame.labels}
    assert any(label.text.startswith("lost 5") for label in frame.labels)
    no_labels = Scene(trace, Options(labels=False))
    assert "tcp_v4_rcv" not in in_spans(no_labels, no_labels.frame(scene.initial_view(1000), 600))
    few = Scene(trace, Options(visible_threshold=40))
    shown = in_spans(few, few.frame(scene.initial_view(1000), 600))
    assert "tcp_v4_rcv" not in shown and "client:send_all" in shown  # 10% and 50% of the view; 40% needed


def test_legend_names_every_function_with_its_colour(trace):
    scene = Scene(trace)
    frame = scene.frame(scene.initial_view(1000), 600)
    legend = [label for label in frame.labels if label.y > 600 - 30]
    assert [label.text for label in legend] == ["ip_rcv", "tcp_v4_rcv", "client:send_all"]
    swatches = frame.rects[(frame.rects["y0"] > 600 - 30) & (frame.rects["x1"] - frame.rects["x0"] < 20)]
    assert sorted(swatches["color"].tolist()) == sorted(scene.color_keys.tolist())


def test_xdp_labels(trace):
    scene = Scene(trace, Options(xdp_labels=True))
    frame = scene.frame(View(PACKET - 1e6, PACKET + 1e6, 900), 600)
    assert "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff IPv4" in {label.text for label in frame.labels}


PACKET = viz_trace.PACKET_AT


# --- input ----------------------------------------------------------------------------------------


def settle(controller):
    for _ in range(500):
        if not controller.step():
            return
    raise AssertionError("the view never settled")


def test_wheel_zooms_around_the_pointer(trace):
    controller = Controller(Scene(trace), (1000, 600))
    before = controller.view
    x = LEFT + 300
    anchor = before.time_at(300)
    controller.wheel(x, 3)
    settle(controller)
    assert controller.view.span == pytest.approx(before.span / 1.25**3)
    assert controller.view.time_at(300) == pytest.approx(anchor, abs=before.ns_per_px)
    controller.wheel(x, -3)
    settle(controller)
    assert controller.view.span == pytest.approx(before.span, rel=1e-6)


def test_drag_and_keys(trace):
    controller = Controller(Scene(trace), (1000, 600))
    controller.wheel(LEFT + 400, 5)
    settle(controller)
    t0 = controller.view.t0
    controller.drag(-100)
    assert controller.view.t0 == pytest.approx(t0 + 100 * controller.view.ns_per_px)
    span = controller.view.span
    assert controller.key("w")
    settle(controller)
    assert controller.view.span == pytest.approx(span / 1.6)
    t0 = controller.view.t0
    controller.key("d")
    settle(controller)
    assert controller.view.t0 > t0
    assert not controller.key("x")


def test_double_click_zooms_to_the_span_and_click_selects(trace):
    scene = Scene(trace)
    controller = Controller(scene, (1000, 600))
    i, x, y = pixel_of(scene, controller.view, "tcp_v4_rcv", 0)
    assert controller.double_click(x, y)
    settle(controller)
    assert controller.view.t0 == pytest.approx(140_000_000) and controller.view.t1 == pytest.approx(260_000_000)
    details = controller.click(*pixel_of(scene, controller.view, "tcp_v4_rcv", 0)[1:])
    assert details[0] == "tcp_v4_rcv" and controller.selected == i
    controller.move(x, y)
    frame = controller.frame()
    assert any(label.text == "tcp_v4_rcv" for label in frame.labels)  # the tooltip's first line


def test_hovering_a_packet_shows_its_ethernet_header(trace):
    scene = Scene(trace)
    controller = Controller(scene, (1000, 600))
    view = controller.view
    lane = next(lane for lane in scene.lanes if lane.kind == "xdp")
    x = LEFT + (viz_trace.PACKET_AT - view.t0) / view.ns_per_px
    controller.move(x + 1, TOP + lane.y + lane.row_height / 2)
    assert controller.hover is None and controller.hover_packet == 0
    texts = [label.text for label in controller.frame().labels]
    assert "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff IPv4" in texts
    assert any(text.startswith("packet on veth0") for text in texts)
    controller.move(x + 200, TOP + lane.y + lane.row_height / 2)
    assert controller.hover_packet is None


def test_vertical_labels_for_short_spans(trace):
    scene = Scene(trace, Options(vertical_label=150_000_000))  # tcp_v4_rcv (100 ms) is short enough
    assert scene.lanes[0].row_height > 30                      # rows tall enough to write down
    view = View(140e6, 260e6, 900)
    frame = scene.frame(view, 600)
    vertical = {label.text for label in frame.labels if label.vertical}
    assert vertical and all("tcp_v4_rcv".startswith(text.rstrip("~")) for text in vertical)
    assert "ip_rcv" not in vertical  # 300 ms: written across


# --- the viewer's numbers are the analysis layer's ---------------------------------------------------

CALLS = [{"id": 0, "name": "tcp_sendmsg", "kind": "kernel", "mechanism": "fentry"},
         {"id": 1, "name": "client:send_all", "kind": "user", "mechanism": "uprobe"},
         {"id": 2, "name": "client:encode", "kind": "user", "mechanism": "uprobe"}]


@pytest.fixture(scope="module")
def user_calls_kernel(tmp_path_factory):
    """send_all (20 us) calls encode (1.5 us), then the kernel's tcp_sendmsg (1.5 us), on thread 301
    of process 300; meanwhile another thread runs tcp_sendmsg on CPU 0. Memory and throughput too."""
    from netprof.format import layout
    from netprof.format.tracefile import Kind, TraceWriter, new_header

    t0 = viz_trace.T0
    calls = [(1, 1, 100_000, 120_000), (2, 1, 101_000, 102_500), (0, 1, 110_000, 111_500)]
    rows = []
    for probe, cpu, start, end in calls:
        rows += [(t0 + start, 0, 300, 301, probe, cpu, 0), (t0 + end, 0, 300, 301, probe, cpu, 1)]
    rows += [(t0 + 90_000, 0, 400, 400, 0, 0, 0), (t0 + 95_000, 0, 400, 400, 0, 0, 1)]
    events = np.array(sorted(rows), dtype=layout.SPAN.dtype())
    path = tmp_path_factory.mktemp("calls") / "calls.trace"
    writer = TraceWriter(path, new_header(CALLS, 64, bin_ns=10_000, interfaces={"7": "veth0"}))
    writer.write(Kind.SPANS, events)
    memory = np.zeros(3, layout.MEMORY.dtype())
    memory["ts"], memory["bytes"] = t0 + np.array([0, 100_000, 200_000]), np.array([1000, 1500, 1200]) * 2**20
    writer.write(Kind.MEMORY, memory)
    throughput = np.zeros(20, layout.THROUGHPUT.dtype())
    throughput["ts"], throughput["ifindex"], throughput["packets"] = t0 + np.arange(20) * 10_000, 7, 1
    throughput["bytes"] = np.arange(20) * 1000
    writer.write(Kind.THROUGHPUT, throughput)
    writer.close()
    return netprof.load(path)


def hover(controller, name, pid=300):
    """Move the pointer to the middle of the span of ``name`` in process ``pid``: (its index in the
    scene, the tooltip's lines as drawn)."""
    scene, view = controller.scene, controller.view
    i = next(i for i, s in enumerate(scene.spans) if scene.names[s["probe"]] == name and s["pid"] == pid)
    controller.move(LEFT + ((scene.span_start[i] + scene.span_end[i]) / 2 - view.t0) / view.ns_per_px,
                    TOP + scene.row_y[scene.span_row[i]] + scene.row_h[scene.span_row[i]] / 2)
    assert controller.hover == i
    labels = controller.frame().labels
    first = max(k for k, label in enumerate(labels) if label.text == name)   # the tooltip comes last
    return i, [label.text for label in labels[first:first + len(scene.describe(i))]]


def test_tooltips_show_the_numbers_of_trace_spans(user_calls_kernel):
    trace = user_calls_kernel
    every = trace.spans()
    controller = Controller(Scene(trace), (1600, 600))
    controller.easing.jump(View(95_000, 125_000, 1600 - LEFT))
    for name in ("client:send_all", "client:encode", "tcp_sendmsg"):
        i, lines = hover(controller, name)
        span_id = int(controller.scene.span_ids[i])
        truth = every.array[span_id]
        assert controller.scene.spans[i] == truth                         # the data behind the tooltip
        parent = int(truth["parent"])
        assert lines[1].endswith(f"duration {format_duration(int(truth['duration']))}")
        assert lines[2] == f"self {format_duration(int(truth['self']))}  depth {int(truth['depth'])}"
        assert lines[3] == f"id {span_id}  parent {parent if parent >= 0 else 'none'}"
    send_all = every.array[every.array["probe"] == 1][0]
    assert send_all["self"] == 17_000 and send_all["depth"] == 0           # 20 us less both calls in it
    sendmsg = every.array[(every.array["probe"] == 0) & (every.array["pid"] == 300)][0]
    assert sendmsg["depth"] == 1 and every.array[sendmsg["parent"]]["probe"] == 1
    _, lines = hover(controller, "client:send_all")
    assert lines[2] == "self 17 us  depth 0"


def test_a_kernel_function_called_from_user_code_heads_its_cpus_stack(user_calls_kernel):
    scene = Scene(user_calls_kernel)
    lanes = {lane.title: lane for lane in scene.lanes}
    assert lanes["CPU 1"].rows == 1 and lanes["pid 300 tid 301"].rows == 2         # no empty row above tcp_sendmsg
    sendmsg = next(i for i, s in enumerate(scene.spans) if s["probe"] == 0 and s["pid"] == 300)
    assert scene.span_row[sendmsg] == lanes["CPU 1"].first_row


def test_the_viewer_and_the_report_write_memory_and_throughput_alike(user_calls_kernel):
    from netprof.report import format_report
    from netprof.units import mbit_per_s, mib

    report = format_report(user_calls_kernel)
    scene = Scene(user_calls_kernel)
    labels = {label.text for label in scene.frame(scene.initial_view(1000), 800).labels}
    assert mib(1500 * 2**20) == "1,500.0 MiB" and f"max {mib(1500 * 2**20)}" in labels
    assert mib(1000 * 2**20) in report and mib(1500 * 2**20) in report
    assert f"min {mib(950 * 2**20)}" in labels                              # the lane's floor: 10% under the least
    peak = mbit_per_s(19_000 / 10e-6)                                       # 19 kB in a 10 us bin
    assert peak == "15,200.0 Mbit/s" and f"max {peak}" in labels and peak in report


def test_describe_labels_corrected_durations_and_gives_the_raw_one(tmp_path):
    """A user probe whose cost the capture measured: the tooltip says the duration is corrected
    and shows the raw one beside it; loaded with raw_durations, the plain recorded duration."""
    path = tmp_path / "calibrated.trace"
    probes = [dict(p) for p in viz_trace.PROBES]
    probes[2].update(cost_ns=1_000_000.0, in_span_ns=20_000_000.0)  # client:send_all, 500 ms long
    viz_trace.write(path, probes)
    for raw, expected in ((False, "duration 480 ms corrected  (raw 500 ms)"), (True, "duration 500 ms")):
        scene = Scene(netprof.load(path, raw_durations=raw))
        i, _, _ = pixel_of(scene, scene.initial_view(1000), "client:send_all", 1)
        line = scene.describe(i)[1]
        assert line.endswith(expected), line
