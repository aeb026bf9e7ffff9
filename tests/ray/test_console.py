"""The driver's console of a Ray run: worker lines once, with the rank; controller noise out."""
from __future__ import annotations

import io

from spiketrain.trainer.ray_console import DriverFilter, _RankPrefixed


def test_rank_prefix_on_every_line():
    buf = io.StringIO()
    s = _RankPrefixed(buf, "[rank 1] ")
    s.write("epoch 1/3 loss 1.0\nepoch 2/3")
    s.write(" loss 0.5\n\nwarn\n")
    assert buf.getvalue() == ("[rank 1] epoch 1/3 loss 1.0\n[rank 1] epoch 2/3 loss 0.5\n"
                              "[rank 1] \n[rank 1] warn\n")


def test_duplicates_dropped_ranks_unprefixed_noise_out(capsys):
    passed = []
    f = DriverFilter(passed.append)
    worker = {"ip": "127.0.0.1", "pid": 11, "actor_name": "RayTrainWorker", "is_err": False}
    line = "[rank 0] epoch 1/3  train loss 1.0"
    f({**worker, "lines": [line]})
    f({**worker, "lines": [line]})                 # the second log monitor's copy
    f({**worker, "lines": ["[rank 0] epoch 2/3  train loss 0.9"]})
    ctrl = {"ip": "127.0.0.1", "pid": 7, "actor_name": "TrainController", "is_err": True}
    f({**ctrl, "lines": ["Failed to send resource request for train-1. If this only ...",
                         "Traceback (most recent call last):", '  File "x.py", line 1',
                         "ray.exceptions.GetTimeoutError: Get timed out"]})
    f({**ctrl, "pid": 8, "actor_name": "PlacementGroupCleaner",
       "lines": ["Exception in thread PlacementGroupCleanerMonitor:",
                 "Traceback (most recent call last):", "    self.run()",
                 "ConnectionError: Found multiple active Ray instances"]})
    f({**ctrl, "lines": ["Worker group failed: restarting from the last snapshot (1/2)"]})
    out = capsys.readouterr().out.splitlines()
    assert out == [line, "[rank 0] epoch 2/3  train loss 0.9"]
    assert [b["lines"] for b in passed] == [
        ["Worker group failed: restarting from the last snapshot (1/2)"]]
    assert f.dropped == 1
