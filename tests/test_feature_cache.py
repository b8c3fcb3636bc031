"""The per-boot feature cache: written by root alone, in a folder that is root's alone, never
through a planted link or temporary file, and never holding an answer that could not tell."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from netprof.loader import features
from netprof.loader.features import Features
from test_privileges import sample

NOBODY = 65534


@pytest.fixture
def probe_gives(monkeypatch):
    """features.probe() answers what the test says (no kernel involved)."""
    answers = []
    monkeypatch.setattr(features, "probe", lambda: answers[-1])
    return answers.append


def cache_of(folder: Path) -> Path:
    return folder / f"features-{features.boot_id()}.json"


@pytest.mark.root
def test_root_caches_settled_results_only(run_dir, monkeypatch, probe_gives):
    monkeypatch.setenv("NETPROF_RUN_DIR", str(run_dir / "netprof"))
    probe_gives(sample("kprobe"))
    assert not features.features(refresh=True).settled
    assert not (run_dir / "netprof").exists() or not list((run_dir / "netprof").iterdir())
    probe_gives(sample())
    assert features.features(refresh=True) == sample()
    cache = cache_of(run_dir / "netprof")
    assert stat.S_IMODE((run_dir / "netprof").stat().st_mode) == 0o755 and (run_dir / "netprof").stat().st_uid == 0
    assert stat.S_IMODE(cache.stat().st_mode) == 0o644 and cache.stat().st_uid == 0
    assert [p.name for p in (run_dir / "netprof").iterdir()] == [cache.name]  # no temporary left
    probe_gives(sample("kprobe"))
    assert features.features() == sample()  # from the cache


@pytest.mark.root
def test_a_cache_that_could_not_tell_is_not_trusted(run_dir, monkeypatch, probe_gives):
    monkeypatch.setenv("NETPROF_RUN_DIR", str(run_dir))
    cache_of(run_dir).write_text(json.dumps(sample("kprobe").to_json()))
    assert features.cached() is None
    probe_gives(sample())
    assert features.features() == sample()


@pytest.mark.root
@pytest.mark.parametrize("plant", ["owned by a user", "writable by all", "under a user's folder", "a symlink"])
def test_root_refuses_a_cache_folder_a_user_controls(run_dir, monkeypatch, probe_gives, caplog, plant):
    target = run_dir / "cache"
    if plant == "owned by a user":
        target.mkdir()
        os.chown(target, NOBODY, NOBODY)
    elif plant == "writable by all":
        target.mkdir()
        target.chmod(0o777)
    elif plant == "under a user's folder":
        os.chown(run_dir, NOBODY, NOBODY)
        target = run_dir / "sub" / "cache"
    else:
        (run_dir / "real").mkdir(mode=0o755)
        target.symlink_to(run_dir / "real")
    monkeypatch.setenv("NETPROF_RUN_DIR", str(target))
    probe_gives(sample())
    with caplog.at_level(logging.WARNING, logger="netprof.loader.features"):
        assert features.features(refresh=True) == sample()
    assert "not cached" in caplog.text
    assert not [p for p in run_dir.rglob("*") if p.name.startswith("features-")]


@pytest.mark.root
def test_root_never_writes_through_a_planted_link_or_temporary(run_dir, monkeypatch, probe_gives):
    monkeypatch.setenv("NETPROF_RUN_DIR", str(run_dir))
    victim = run_dir / "victim"
    victim.write_text("precious")
    cache = cache_of(run_dir)
    for planted in (cache.with_suffix(".tmp"), cache.with_name(f".{cache.name}.tmp")):
        planted.symlink_to(victim)
    cache.symlink_to(victim)
    assert features.cached() is None  # a link is not read
    probe_gives(sample())
    features.features(refresh=True)
    assert victim.read_text() == "precious"
    assert not cache.is_symlink() and Features.from_json(json.loads(cache.read_text())) == sample()
