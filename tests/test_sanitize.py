"""The op tests, run once more against an AddressSanitizer + UBSan build of the extension
(tests/sanitize.sh): any out-of-bounds access or undefined behaviour in a kernel fails this test."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_op_tests_clean_under_asan_and_ubsan():
    if os.environ.get("EDGEVISION_SKIP_SANITIZE"):
        pytest.skip("EDGEVISION_SKIP_SANITIZE is set")
    if not Path(subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                               text=True).stdout.strip()).exists():
        pytest.skip("gcc's AddressSanitizer runtime (libasan) is not installed")
    if shutil.which("ninja", path=str(Path(sys.executable).parent)) is None and not shutil.which("ninja"):
        pytest.skip("ninja is not installed")
    # The script uses `python`, `cmake` and `ninja` from PATH: put this environment's first.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", str(ROOT / "tests" / "sanitize.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout[-6000:] + "\n" + r.stderr[-6000:])
    assert " passed" in r.stdout
