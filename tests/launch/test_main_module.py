"""``python -m spiketrain`` works like the ``spiketrain`` command."""
import subprocess
import sys


def test_python_dash_m_spiketrain_lists_the_commands():
    out = subprocess.run([sys.executable, "-m", "spiketrain", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0
    for cmd in ("train", "evaluate", "adapt", "export"):
        assert cmd in out.stdout
    bad = subprocess.run([sys.executable, "-m", "spiketrain", "evaluate", "/nonexistent"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error:" in bad.stderr
