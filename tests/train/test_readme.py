"""The README's training examples run: each python block marked `<!-- runs in
tests/train/test_readme.py -->` is executed as written, in a fresh process from a scratch
folder (its files, e.g. best.jnet, land there)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MARK = "<!-- runs in tests/train/test_readme.py -->"


def marked_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(re.escape(MARK) + r"\n```python\n(.*?)\n```", text, re.S)


def test_the_readme_marks_its_training_and_saving_examples():
    blocks = marked_blocks()
    assert len(blocks) == 2
    assert "data=batches(x, y, 64)" in blocks[0] and "jnet.load(" in blocks[1]


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1])
def test_a_readme_example_runs(index, data_dir, tmp_path):
    env = os.environ | {"PYTHONPATH": str(ROOT), "JNET_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, "-c", marked_blocks()[index]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
