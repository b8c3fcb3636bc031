"""A capture's settings are declared once (netprof.capture.options): the command line, a TOML
profile and the Python API read the same declaration, and check values the same way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netprof.capture.options import CaptureOptions, OptionError, from_sources
from netprof.session import Session, SessionError


def test_every_setting_with_a_flag_is_an_attach_option():
    help_text = subprocess.run([sys.executable, "-m", "netprof", "attach", "--help"], capture_output=True, text=True,
                               check=True).stdout
    for name, setting in CaptureOptions.settings().items():
        for flag in setting.flags:
            assert flag in help_text, (name, flag)


def test_the_api_and_the_command_line_say_the_same_about_a_bad_value(tmp_path):
    with pytest.raises(SessionError) as api:
        Session(net=True, snaplen=12)
    cli = subprocess.run([sys.executable, "-m", "netprof", "attach", "--net", "--snaplen", "12", "-o",
                          str(tmp_path / "x.trace")], capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stderr.strip() == f"netprof attach: {api.value}"


def test_a_profile_key_is_a_setting_and_is_checked_as_one(tmp_path):
    profile = tmp_path / "p.toml"
    for key in CaptureOptions.settings():
        profile.write_text(f"{key} = {{}}\n")  # a table: no setting takes one
        result = subprocess.run([sys.executable, "-m", "netprof", "attach", "-c", str(profile)], capture_output=True,
                                text=True)
        assert result.returncode == 2 and f"config {profile}: {key} = " in result.stderr, (key, result.stderr)


def test_command_line_over_profile_over_defaults():
    options = from_sources({"kernel": ["tcp_v4_rcv,ip_rcv"], "snaplen": 128, "xdp": None},
                           {"kernel": ["ip_rcv"], "snaplen": 256, "duration": 5, "net": True})
    assert options.kernel == ["ip_rcv", "tcp_v4_rcv"] and options.snaplen == 128
    assert options.duration == 5 and options.net and options.memory_interval == 10
    with pytest.raises(OptionError, match="--buffer 3: expected MiB, a power of two"):
        from_sources({"buffer": 3}, {})


def test_a_session_from_options_or_keywords_is_the_same_capture(tmp_path):
    out = str(tmp_path / "t.trace")
    assert Session(CaptureOptions(net=True, output=out)).options == Session(net=True, output=out).options
    with pytest.raises(SessionError, match="no_such_setting"):
        Session(net=True, no_such_setting=1)


@pytest.mark.parametrize("settings, message", [
    ({"net": True, "buffer": 4096}, "--buffer 4096: expected MiB, a power of two between 1 and 2048"),
    ({"tracepoints": ["../../etc:passwd"]}, "expected CATEGORY:NAME"),
    ({"tracepoints": ["net:a/b"]}, "expected CATEGORY:NAME"),
])
def test_values_that_would_reach_the_kernel_or_tracefs_wrongly_are_refused(settings, message):
    with pytest.raises(SessionError, match=message):
        Session(**settings)


def test_a_throughput_bin_is_a_sane_length():
    for bad in (0, float("nan"), 10**6):
        with pytest.raises(SessionError, match="throughput bin"):
            Session(throughput=True, bin_ms=bad)
