"""Bad files: an edited dataset index or a torn episode file, specs, training configs and checkpoint metadata
with unknown keys or wrong types (each error names the file, the field and the problem), and pickles that
must never run."""
from __future__ import annotations

import json
import re

import pytest
import torch
from fault_helpers import REPO, SPEC

from pac_ros.data import Dataset, DatasetError
from pac_ros.data.validate import validate


def _index_edit(root, edit):
    path = root / "meta" / "episodes.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    edit(lines[1])
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


INDEX_EDITS = {  # an edited line of meta/episodes.jsonl -> what reading or validating it says
    "length": (lambda e: e.update(length=e["length"] + 1), "rows, index says"),
    "sha256": (lambda e: e.update(sha256="0" * 64), "sha256 does not match"),
    "file_outside": (lambda e: e.update(file="../../etc/passwd"), "line 2: bad file path"),
    "file_other": (lambda e: e.update(file="data/chunk-000/episode_000000.parquet"), "sha256 does not match"),
    "episode_index": (lambda e: e.update(episode_index=7), "line 2: episode_index 7 out of order"),
    "return": (lambda e: e.update({"return": 5.0}), "index return 5.0 but the rewards sum to"),
    "success": (lambda e: e.update(success=not e["success"]), "differs from the line"),
    "source": (lambda e: e.update(source="teleop"), "in ['source']"),
    "instruction": (lambda e: e.update(instruction="put the blue block on the red block",
                                       tasks=["put the blue block on the red block"]), "in ['instruction', 'tasks']"),
    "length_type": (lambda e: e.update(length="12"), "line 2: bad length '12'"),
    "missing_key": (lambda e: e.pop("sha256"), "line 2: missing ['sha256']"),
}


@pytest.mark.parametrize("edit", list(INDEX_EDITS))
def test_edited_index_line_is_named(collected_copy, edit):
    change, message = INDEX_EDITS[edit]
    _index_edit(collected_copy, change)
    report = validate(collected_copy)
    text = "\n".join(report.problems)
    assert not report.ok and message in text, text
    assert "episodes.jsonl" in text or "episode_000001.parquet" in text, text


def test_truncated_parquet_episode_is_named(collected_copy):
    """A torn episode file whose index line was 'fixed' to match: unreadable, and said so
    (a torn file with its line intact: test_data.py::test_corrupted_episode_file)."""
    import hashlib

    ds = Dataset(collected_copy)
    path = ds.episode_path(2)
    path.write_bytes(path.read_bytes()[:5000])
    lines = [json.loads(x) for x in (collected_copy / "meta" / "episodes.jsonl").read_text().splitlines()]
    lines[2]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (collected_copy / "meta" / "episodes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with pytest.raises(DatasetError, match=f"{re.escape(str(path))}: not a readable parquet file"):
        Dataset(collected_copy).load_episode(2)
    assert any(str(path) in p for p in validate(collected_copy).problems)


@pytest.mark.parametrize("text, message", [
    ("spec:\n  name: x\n  colour: red\n", "unknown key(s) ['colour']"),
    ("spec: {}\n", "missing required key(s) ['name', "),
    ("spec: [1, 2]\n", "expected a mapping, got list"),
    ("control_rate_hz: fast\n", "control_rate_hz: expected a number, got str 'fast'"),
    ("arm_joints: [{name: a, lower: -1, upper: 1, max_step: 0.1, speed: 3}]\n", "unknown key(s) ['speed']"),
    ("cameras: [{name: front, width: '64', height: 64}]\n", "width: expected an integer, got str '64'"),
    ("terminate_on_success: 1\n", "terminate_on_success: expected true/false"),
], ids=["unknown_key", "missing_key", "not_a_mapping", "rate_type", "joint_unknown_key", "width_type", "bool_type"])
def test_spec_yaml_with_unknown_keys_or_wrong_types(tmp_path, text, message):
    """Each names the file, the field and the problem."""
    import yaml

    from pac_ros.spec import Spec, SpecError, default_spec_path

    path = tmp_path / "robot.yaml"
    if text.startswith("spec"):
        path.write_text(text)
    else:  # one field of the shipped spec changed
        data = yaml.safe_load(default_spec_path().read_text())
        data["spec"].update(yaml.safe_load(text))
        path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as err:
        Spec.load(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


@pytest.mark.parametrize("text, message", [
    ("preset: tiny\nlearner: {etaa: 1}\n", "learner: unknown key(s) ['etaa']"),
    ("preset: tiny\nrun: {stepz: 5}\n", "run: unknown key(s) ['stepz']"),
    ("preset: huge\n", "unknown preset 'huge'"),
    ("preset: tiny\nlearner: {target_update: soft}\n", "target_update: must be 'polyak' or 'hard', got 'soft'"),
    ("preset: tiny\nlearner: [1, 2]\n", "learner: expected a mapping, got list"),
    ("preset: [tiny\n", "not valid YAML"),
    ("preset: tiny\nrun: {steps: ten}\n", "steps"),
    ("preset: tiny\nlearner: {lr: fast}\n", "lr"),
    ("preset: tiny\nmodel: {width: wide}\n", "width"),
], ids=["learner_key", "run_key", "preset", "learner_value", "learner_type", "bad_yaml", "steps_type", "lr_type",
        "width_type"])
def test_training_config_yaml_with_unknown_keys_or_wrong_types(tmp_path, text, message):
    from pac_ros.learning.config import ConfigError, TrainConfig

    path = tmp_path / "train.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        TrainConfig.load(path)
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["model_config"].update(colour=1), "model_config: unknown key(s) ['colour']"),
    (lambda m: m["spec"].update(control_rate_hz="x"), "control_rate_hz: expected a number, got str 'x'"),
    (lambda m: m.update(format="pac_ros.checkpoint/9"), "format 'pac_ros.checkpoint/9'"),
    (lambda m: m["model_config"].update(width="wide"), "width"),
], ids=["unknown_key", "spec_type", "format", "width_type"])
def test_checkpoint_meta_with_unknown_keys_or_wrong_types(tmp_path, edit, message):
    """A checkpoint's meta.json edited: a CheckpointError naming meta.json and the problem
    (damaged weight files: test_policy.py::test_corrupted_checkpoint_is_a_clear_error)."""
    from test_policy_node import make_checkpoint

    from pac_ros.checkpoint import CheckpointError
    from pac_ros.policy import Policy

    path = make_checkpoint(tmp_path / "ckpt") / "meta.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as err:
        Policy.load(path.parent, device="cpu")
    assert str(path) in str(err.value) and message in str(err.value), str(err.value)


class _Payload:
    """Unpickling this creates the marker file: proof that something unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_no_checkpoint_is_ever_unpickled(tmp_path):
    """Pickled checkpoints (.pt, .pkl, or posing as model.safetensors) are refused with an error
    naming the file, and nothing in them runs."""
    import pickle

    from test_policy_node import make_checkpoint

    from pac_ros.checkpoint import CheckpointError, load_model_state
    from pac_ros.policy import Policy

    marker = tmp_path / "pwned"
    good = make_checkpoint(tmp_path / "good")
    blob = pickle.dumps(_Payload(marker))
    torch_blob = tmp_path / "evil.pt"
    torch.save(_Payload(marker), torch_blob)
    cases = {}
    only_pickles = tmp_path / "only_pickles"
    only_pickles.mkdir()
    (only_pickles / "model.pt").write_bytes(torch_blob.read_bytes())
    (only_pickles / "model.pkl").write_bytes(blob)
    cases[only_pickles] = "meta.json: missing"
    for name, data in (("pickle", blob), ("torch_save", torch_blob.read_bytes())):
        posing = tmp_path / f"posing_{name}"
        posing.mkdir()
        (posing / "meta.json").write_bytes((good / "meta.json").read_bytes())
        (posing / "model.safetensors").write_bytes(data)
        cases[posing] = "model.safetensors: corrupted or truncated"
    cases[only_pickles / "model.pt"] = "no such checkpoint directory"
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=re.escape(message)) as err:
            Policy.load(path, spec=SPEC, device="cpu")
        assert str(path.parent if path.is_file() else path) in str(err.value)
    for name in ("pickle", "torch_save"):  # without the hash check the safetensors parser refuses it
        with pytest.raises(CheckpointError, match="corrupted or truncated safetensors file"):
            load_model_state(tmp_path / f"posing_{name}", verify=False)
    assert not marker.exists(), "a pickle ran"


def test_source_never_unpickles():
    """No pickle loader anywhere in the package, scripts, benchmarks or launch files; torch.load
    (if ever used) only with weights_only=True; YAML only through safe_load."""
    unsafe = re.compile(r"pickle\.loads?\(|dill\.|joblib\.load|marshal\.loads?\(|torch\.jit\.load|read_pickle|"
                        r"allow_pickle\s*=\s*True|yaml\.load\(|yaml\.unsafe_load|yaml\.full_load|yaml\.Loader|"
                        r"shelve\.open|jsonpickle")
    files = [f for d in ("pac_ros", "scripts", "bench", "launch") for f in (REPO / d).rglob("*.py")]
    assert len(files) > 40
    found = []
    for f in files:
        text = f.read_text()
        found += [f"{f}: {m.group(0)}" for m in unsafe.finditer(text)]
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start(): text.find(")", m.start()) + 1]
            if "weights_only=True" not in call:
                found.append(f"{f}: {call}")
    assert not found, found
