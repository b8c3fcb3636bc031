"""The loader refuses bad input with an error that says what was wrong, never with an assert
(which ``python -O`` removes)."""

from __future__ import annotations

import pytest

from netprof.loader import xdp


def test_an_xdp_link_with_no_mode_to_try_is_a_value_error():
    with pytest.raises(ValueError, match="attach XDP to veth0: no mode to try"):
        xdp._attach_link(None, None, "veth0", 1, [], fall_back=True)
