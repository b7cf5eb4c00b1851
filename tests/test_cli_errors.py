"""Every binary turns an expected failure into one clear line and a non-zero status, never a
traceback: bad flags, bad paths, missing files, an unreachable target.

Each case runs the real binary in a subprocess. (Server faults, interrupts and protocol mix-ups
against live servers are in tests/load/test_server_faults.py and tests/load/test_load_cli.py.)
"""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from conftest import run_env
from tfs_bench.launch.ports import free_port

FLAGS_ERROR = "FATAL Flags parsing error: "


def _cases(tmp):
    afile = tmp / "afile"
    port = free_port()
    return [
        ("export", ["--models=no_such_model"],
         FLAGS_ERROR + "flags models=['no_such_model']: unknown model(s) no_such_model; known models: "),
        ("export", ["--models=tiny_cnn", f"--saved_models_dir={afile}"],
         FLAGS_ERROR + f"flags saved_models_dir={afile}: --saved_models_dir {afile} is a file, not a directory"),
        ("export", ["--models=tiny_cnn", f"--weights={tmp / 'none.h5'}", f"--saved_models_dir={tmp / 'sm'}"],
         f"error: weights file {tmp / 'none.h5'} does not exist"),
        ("known_answer", [f"--output_dir={afile}/x"],
         FLAGS_ERROR + f"flags output_dir={afile}/x: --output_dir {afile}/x: {afile} is a file, not a directory"),
        ("plan", ["--models=nope", f"--saved_models_dir={tmp}", f"--output_dir={tmp / 'p'}"],
         f"error: no export of nope in {tmp} (found: nothing)"),
        ("server", ["--model_base_path=relative/path"],
         "Failed to start server. Error: --model_base_path must be an absolute path, got 'relative/path'"),
        ("server", ["--port=abc"], "Failed to start server. Error: flag --port=abc: invalid literal for int()"),
        ("load", [f"--target=127.0.0.1:{port}", "--models=m", f"--output_dir={afile}"],
         FLAGS_ERROR + f"flags output_dir={afile}, overwrite=False, resume=False: output {afile} exists and is not a directory"),
        ("load", [f"--target=127.0.0.1:{port}", "--models=m", f"--output_dir={tmp / 'run'}", "--connect_timeout_s=2"],
         f"error: cannot reach target 127.0.0.1:{port}"),
        ("load", ["--target=nohost", "--models=m"], FLAGS_ERROR),
        ("run", [f"--flagfile={tmp / 'none.flags'}"], FLAGS_ERROR + "ERROR:: Unable to open flagfile: "),
        ("report", [f"--run_dir={tmp / 'none'}"], f"error: --run_dir {tmp / 'none'} is not a directory"),
        ("report", [f"--run_dir={tmp}"], f"error: {tmp} is not an experiment's run directory: it has no manifest.json"),
    ]


CASE_IDS = ["export_unknown_model", "export_dir_is_a_file", "export_missing_weights", "known_answer_dir_is_a_file",
            "plan_no_export", "server_relative_base_path", "server_port_not_a_number", "load_output_is_a_file",
            "load_unreachable", "load_bad_target", "run_missing_flagfile", "report_missing_dir", "report_not_a_run"]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_a_bad_input_gets_one_clear_line_and_status_1(tmp_path, index):
    (tmp_path / "afile").write_text("not a directory")
    binary, args, expected = _cases(tmp_path)[index]
    proc = subprocess.run([sys.executable, "-m", f"tfs_bench.{binary}", *args], capture_output=True, text=True,
                          env=run_env(), cwd=REPO_ROOT, timeout=120)
    lines = [line for line in proc.stderr.splitlines()
             if line.startswith(("error: ", "FATAL ", "Failed to start server."))]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr[-2000:]
