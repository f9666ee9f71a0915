"""Recording with steering disturbances: recovery frames, labelled by the expert's way back."""
from __future__ import annotations

import numpy as np

from agent.recording.recorder import record_sim
from training.sessions import Session
from sim.perturb import SteeringPerturbation


def test_perturbation_overrides_steering_only_and_is_deterministic():
    keys = np.array([0, 0, 1, 0], np.int8)
    runs = []
    for _ in range(2):
        p = SteeringPerturbation(rate_per_s=2.0, dt=1 / 15, seed=7)
        runs.append([p.apply(keys) for _ in range(300)])
    assert [(a.tolist(), f) for a, f in runs[0]] == [(a.tolist(), f) for a, f in runs[1]]
    overridden = [a for a, f in runs[0] if f]
    assert 30 < len(overridden) < 300
    assert all(a[2] == 1 and a[3] == 0 and a[0] + a[1] == 1 for a in overridden)  # throttle kept, one side held
    assert all(a.tolist() == keys.tolist() for a, f in runs[0] if not f)


def test_perturbed_recording_moves_the_truck_off_centre_and_labels_the_way_back(tmp_path):
    calm = record_sim(tmp_path / "calm", seed=3, time_of_day="day", weather="clear", frames=400, progress=False)
    shaken = record_sim(tmp_path / "shaken", seed=3, time_of_day="day", weather="clear", frames=400,
                        progress=False, perturb=1.0)
    assert calm.frames == shaken.frames == 400
    session = Session.open(tmp_path / "shaken")
    records = session.records()
    perturbed = [r for r in records if r.extra.get("perturbed")]
    assert len(perturbed) > 20
    assert session.manifest.source["perturb_per_s"] == 1.0
    # while the disturbance holds one steering key, the expert's label mostly says the other way
    # (or straight, right at its start): that is the recovery data
    opposite = sum(1 for r in perturbed if (r.keys[0] and r.direction == "right") or (r.keys[1] and r.direction == "left"))
    same = sum(1 for r in perturbed if (r.keys[0] and r.direction == "left") or (r.keys[1] and r.direction == "right"))
    assert opposite > same
    assert not any(r.extra.get("perturbed") for r in Session.open(tmp_path / "calm").records())
