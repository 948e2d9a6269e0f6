"""`make test` after ruff and lint-imports: the whole suite on 2 xdist workers
and, beside it, mypy and the tests marked `numerics` again with TensorFlow's
oneDNN setting flipped (.ci/flipped_onednn.py), in one process without workers.

Side by side, the two short jobs fill the cores that the suite leaves idle (its
start, its last tests) instead of adding their own start-up to the wall time.
Their output is printed after the suite's, each under its heading; the exit
status is the first non-zero one of suite, mypy, rerun."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PYTEST = [sys.executable, "-m", "pytest", "-q"]


def main() -> int:
    # The suite, the longest job, starts first; the oneDNN probe (a TensorFlow
    # import, ~5 s) runs beside it, and the rerun starts when it answers.
    suite = subprocess.Popen([*PYTEST, "-n", "2", "--durations=15"], cwd=ROOT)
    probe = subprocess.Popen(
        [sys.executable, str(ROOT / ".ci" / "flipped_onednn.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    with (
        tempfile.TemporaryFile("w+") as mypy_log,
        tempfile.TemporaryFile("w+") as rerun_log,
    ):
        mypy = subprocess.Popen(
            [str(BIN / "mypy")], cwd=ROOT, stdout=mypy_log, stderr=subprocess.STDOUT
        )
        flipped = probe.communicate()[0].strip()
        if probe.returncode or flipped not in ("0", "1"):
            suite.kill()
            mypy.kill()
            raise SystemExit(f"flipped_onednn.py failed: {flipped!r}")
        rerun = subprocess.Popen(
            [*PYTEST, "-n", "0", "-m", "numerics", "--durations=5"],
            cwd=ROOT,
            env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": flipped},
            stdout=rerun_log,
            stderr=subprocess.STDOUT,
        )
        codes = [suite.wait()]
        for title, process, log in (
            ("mypy", mypy, mypy_log),
            (
                "again, the tests marked numerics with "
                f"TF_ENABLE_ONEDNN_OPTS={flipped}",
                rerun,
                rerun_log,
            ),
        ):
            codes.append(process.wait())
            log.seek(0)
            print(f"== {title}", flush=True)
            sys.stdout.write(log.read())
            sys.stdout.flush()
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
