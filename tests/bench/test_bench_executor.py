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
