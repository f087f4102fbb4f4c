"""The original Wukong README example runs unchanged (bar Python 3's print) on the same samples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CAT_DOG

README_EXAMPLE = """
import os
from wukong.computer_vision.TransferLearning import WuKongVisionModel

train_data_dir = r'{train}'
test_data_dir = r'{test}'
work_dir = r'{work}'
task_name = "cat_dog"

# train a model with the default configuration
model = WuKongVisionModel()
model.train_for_new_task(work_dir, task_name, train_data_dir, test_data_dir)

# predict by the trained model
ret = model.predict(os.path.join(test_data_dir, "cat", "cat.983.jpg"))
print(ret)

# You can load the weights to the model
new_model = WuKongVisionModel()
new_model.load_weights(os.path.join(work_dir, "cat_dog.wukong"))
print(new_model.predict(os.path.join(test_data_dir, "cat", "cat.983.jpg")))
"""


@pytest.mark.slow  # the original defaults: up to 50 + 50 epochs at 224px (46 s); the test below covers the API
def test_original_readme_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(README_EXAMPLE.format(train=CAT_DOG / "train", test=CAT_DOG / "test", work=tmp_path / "tmp"))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and lines[0] == lines[1]  # trained and reloaded models agree
    probabilities = [float(v) for v in lines[0].strip("[]").split()]
    assert len(probabilities) == 2 and abs(sum(probabilities) - 1) < 1e-4


def test_improvement_training_continues_from_loaded_weights(tmp_path: Path) -> None:
    from wukong.computer_vision.TransferLearning import WuKongVisionModel

    model = WuKongVisionModel()
    folder = model.train_for_new_task(
        str(tmp_path), "cd", str(CAT_DOG / "train"), str(CAT_DOG / "test"), top_training_epochs=3, fine_tuning_epochs=3
    )
    reloaded = WuKongVisionModel()
    reloaded.load_weights(folder)
    image = str(CAT_DOG / "test" / "dog" / sorted(p.name for p in (CAT_DOG / "test" / "dog").iterdir())[0])
    before = reloaded.predict(image)
    reloaded.train_for_improvement_task(
        str(tmp_path), "cd2", str(CAT_DOG / "train"), str(CAT_DOG / "test"), fine_tuning_epochs=2
    )
    after = reloaded.predict(image)
    assert reloaded.classes == ["cat", "dog"]
    assert abs(after - before).max() > 0  # it trained further...
    assert abs(after - before).max() < 0.5  # ...from where it was, not from scratch
    assert (tmp_path / "cd2.wukong" / "model.safetensors").exists()
