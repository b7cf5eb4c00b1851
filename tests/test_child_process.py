import subprocess

from tfs_bench import child_process


def test_children_import_this_checkout_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTHONPATH", raising=False)
    env = child_process.child_env()
    argv = child_process.module_argv("tfs_bench.export.footprint")  # usage error: proves the import worked
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: python -m tfs_bench.export.footprint" in proc.stderr


def test_existing_pythonpath_is_kept_and_overrides_win(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = child_process.child_env(TF_CPP_MIN_LOG_LEVEL="0")
    assert env["PYTHONPATH"].split(":")[1:] == ["/somewhere"]
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "0"
