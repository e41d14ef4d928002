"""MLflow records written by StudyTracker, against a real SQLite store."""

from __future__ import annotations

from study.tracking import StudyTracker


def test_stale_runs_closed_for_own_study_only(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = StudyTracker(uri, "shared", artifact_root=tmp_path / "artifacts")
    first.start_study({"space": "loss_mix"})
    own = first.start_trial("c0000-seed0", {"seed": 0}, {"ray_trial_id": "a"})
    second = StudyTracker(uri, "shared")
    second.start_study({"space": "loss_mix"})
    other = second.start_trial("c0000-seed0", {"seed": 0}, {"ray_trial_id": "b"})

    closed = first.close_stale_runs()

    assert closed == 1
    assert first.client.get_run(own).info.status == "FAILED"
    assert "driver stopped" in first.client.get_run(own).data.tags["failure_reason"]
    assert first.client.get_run(other).info.status == "RUNNING"


def test_trial_run_found_and_reopened(tmp_path):
    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "s", artifact_root=tmp_path / "artifacts")
    tracker.start_study({"space": "loss_mix"})
    run_id = tracker.start_trial("c0000-seed0", {"seed": 0}, {"ray_trial_id": "abc"})
    tracker.end_trial(run_id, failed=True, reason="driver died")

    found = tracker.find_trial_run("abc")
    tracker.reopen_run(found)

    assert found == run_id
    assert tracker.find_trial_run("nope") is None
    assert tracker.client.get_run(run_id).info.status == "RUNNING"
