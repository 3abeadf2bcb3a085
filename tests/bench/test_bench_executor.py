"""The benchmark's executor is ``--executor`` / ``executor:``; the old spelling ``backend`` is refused clearly."""

from __future__ import annotations

import json

from medisam.cli import main


def test_old_backend_key_in_a_config_names_executor(tmp_path, capsys):
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({"datasets": ["d"], "backend": "ray"}))
    assert main(["bench", "-o", str(tmp_path / "out"), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'backend' is now 'executor'" in err
    assert not (tmp_path / "out").exists()


def test_old_backend_flag_is_a_one_line_usage_error(tmp_path, capsys):
    assert main(["bench", "-o", str(tmp_path / "out"), "--backend", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such option: --backend" in err and "--help" in err


def test_max_cases_below_one_is_refused_before_any_work(tmp_path, capsys, data_dir):
    """``--max-cases -1`` ran every case but the last (a slice), and 0 wrote an empty report."""
    for limit in ("-1", "0"):
        assert main(["bench", str(data_dir / "kvasir_seg"), "-o", str(tmp_path / "out"), "--max-cases", limit]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--max-cases (max_cases) must be a whole number >= 1" in err
        assert not (tmp_path / "out").exists()
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({"datasets": [{"path": str(data_dir / "kvasir_seg"), "max_cases": "3"}]}))
    assert main(["bench", "-o", str(tmp_path / "out"), "--config", str(config)]) == 2
    assert "got '3'" in capsys.readouterr().err


def test_a_worker_exits_when_its_parent_is_killed(tmp_path):
    """A killed ``medisam bench`` leaves no worker running (they re-parent and exit)."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    pid_file = tmp_path / "child.pid"
    script = tmp_path / "parent.py"  # a file, so that the spawned child can import its target
    script.write_text(textwrap.dedent(f"""
        import multiprocessing as mp, pathlib, time

        def child():
            from medisam.bench.runner import exit_with_parent
            exit_with_parent(poll_s=0.2)
            pathlib.Path({str(pid_file)!r}).write_text(str(mp.current_process().pid))
            time.sleep(120)

        if __name__ == "__main__":
            mp.get_context("spawn").Process(target=child).start()
            time.sleep(120)
        """))
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        deadline = time.time() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the worker outlived its killed parent by 30 s")
    finally:
        if parent.poll() is None:
            parent.kill()
