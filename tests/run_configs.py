"""A config file for a test run, shared by the test folders that write one."""
from __future__ import annotations

import textwrap


def staged_config(tmp_path, monkeypatch, text: str):
    """A config file from ``text`` (its ``CACHE`` replaced by a folder under ``tmp_path``),
    with the stage folder of remote runs under ``tmp_path`` too."""
    monkeypatch.setenv("SPIKETRAIN_STAGE_DIR", str(tmp_path / "stage"))
    p = tmp_path / "tiny.yaml"
    p.write_text(textwrap.dedent(text).replace("CACHE", str(tmp_path / "cache")))
    return p
