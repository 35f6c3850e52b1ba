"""Checkpoints from elsewhere are untrusted: a mutated checkpoint loads cleanly (finite, in-limit
commands) or is refused with a PacRosError naming the file and field; never another exception, a
hang or a large allocation. The mutations are bench/fuzz_checkpoint.py's (its long run: 10,000 inputs)."""
from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import shutil
import struct

import pytest
from fault_helpers import FUZZ, REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from pac_ros.checkpoint import CheckpointError, load_model_state
from pac_ros.policy import Policy

_spec = importlib.util.spec_from_file_location("fuzz_checkpoint", REPO / "bench" / "fuzz_checkpoint.py")
fz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fz)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return fz.make_base(tmp_path_factory.mktemp("fuzz") / "base")


@pytest.fixture()
def copy(base, tmp_path):
    """A fresh copy of the valid checkpoint, for the test to damage."""
    d = tmp_path / "ckpt"
    shutil.copytree(base, d)
    return d


def _edit_meta(d, edit):
    meta = json.loads((d / "meta.json").read_text())
    edit(meta)
    (d / "meta.json").write_text(json.dumps(meta))


def test_the_valid_checkpoint_loads_both_ways(base):
    assert fz.attempt(base) == ("clean", "")


@given(kind=st.sampled_from(sorted(fz.MUTATIONS)), seed=st.integers(0, 2 ** 32 - 1))
@settings(FUZZ, max_examples=66)
def test_a_mutated_checkpoint_loads_cleanly_or_is_refused_clearly(base, tmp_path_factory, kind, seed):
    work = tmp_path_factory.getbasetemp() / "fuzz_work"
    name, path = fz.mutated(random.Random(seed), base, work, kind)
    outcome, detail = fz.attempt(path, timeout=20.0)
    assert outcome in ("clean", "refused"), f"{name} seed {seed}: {outcome}: {detail}"
    if outcome == "refused":
        assert str(work) in detail, detail  # names the file


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["model_config"].update(width=10 ** 9), "model_config.width: must be in [1, 16384], got 1000000000"),
    (lambda m: m["model_config"].update(n_self_blocks=0), "model_config.n_self_blocks: must be in [1, 256]"),
    (lambda m: m["model_config"].update(patch_size=0), "model_config.patch_size: must be in [1, 512]"),
    (lambda m: m["model_config"].update(width=16384, heads=16, n_self_blocks=256), "parameters, at most"),
    (lambda m: m["model_config"].update(patch_size=1, image_size=4096), "image tokens"),
    (lambda m: m["spec"].update(arm_joints=m["spec"]["arm_joints"] * 100), "spec.arm_joints: 200 entries"),
    (lambda m: m.update(step=-1), "step: expected an integer >= 0, got int '-1'"),
    (lambda m: m.update(step="7"), "step: expected an integer >= 0, got str '7'"),
    (lambda m: m.update(preset=["tiny"]), "preset: expected a preset name or null"),
    (lambda m: m.pop("files"), "files: missing"),
    (lambda m: m["files"].update({"../model.safetensors": m["files"]["model.safetensors"]}),
     "files: '../model.safetensors' is not a file name inside the checkpoint directory"),
    (lambda m: m["files"].update({"/etc/passwd": "0" * 64}), "files: '/etc/passwd' is not a file name inside"),
    (lambda m: m["files"].update({"notes.txt": "0" * 64}), "files: 'notes.txt' is not a checkpoint file"),
    (lambda m: m["files"].update({"model.safetensors": "xyz"}), "files.model.safetensors: expected a sha256"),
    (lambda m: m["files"].pop("model.safetensors"), "files: no sha256 for model.safetensors"),
    (lambda m: m["spec"]["cameras"][0].update(encoding="mono8"),
     "model.safetensors: tensor 'patch.cam0.weight': F32 [32, 3, 8, 8], the model config in meta.json needs "
     "F32 [32, 1, 8, 8]"),
    (lambda m: m["model_config"].update(n_latents=5), "tensor 'latents': F32 [4, 32], the model config in meta.json "
     "needs F32 [5, 32]"),
    (lambda m: m["model_config"].update(aux_features=True), "missing ['aux_head.0.bias'"),
], ids=["width_1e9", "zero_blocks", "zero_patch", "too_many_parameters", "too_many_tokens", "too_many_joints",
        "negative_step", "step_str", "preset_list", "no_files", "files_traversal", "files_absolute", "files_unknown",
        "sha_not_hex", "sha_missing", "encoding_changes_shape", "latents_shape", "missing_tensors"])
def test_a_lying_meta_json_is_refused_naming_file_and_field(copy, edit, message):
    _edit_meta(copy, edit)
    with pytest.raises(CheckpointError) as err:
        Policy.load(copy, device="cpu")
    assert message in str(err.value) and str(copy) in str(err.value), str(err.value)


def test_tensors_are_checked_before_any_weights_are_read(copy, monkeypatch):
    """A header whose shapes disagree with the declared model: refused without reading a tensor."""
    import pac_ros.checkpoint as ckpt

    f = copy / "model.safetensors"
    header, body = fz._header(f)
    header["latents"]["shape"] = list(reversed(header["latents"]["shape"]))
    fz._write_header(f, header, body)
    fz.resign(copy)

    def no_read(*a, **k):
        raise AssertionError("weights read before the header was checked")

    monkeypatch.setattr(ckpt, "load_file", no_read)
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor 'latents': F32 \[32, 4\]"):
        load_model_state(copy)


@pytest.mark.parametrize("damage, message", [
    (lambda data: struct.pack("<Q", 2 ** 63) + data[8:], "header length 9223372036854775808"),
    (lambda data: struct.pack("<Q", len(data)) + data[8:], "header length"),
    (lambda data: data[:4], "no header"),
    (lambda data: data[: len(data) // 2], "does not fit the file"),
    (lambda data: data[:8] + b"\xff" * (len(data) - 8), "header is not JSON"),
], ids=["huge_header", "header_past_end", "four_bytes", "half", "garbage"])
def test_a_damaged_safetensors_file_is_refused_even_with_a_matching_sha(copy, damage, message):
    f = copy / "model.safetensors"
    f.write_bytes(damage(f.read_bytes()))
    fz.resign(copy)
    with pytest.raises(CheckpointError, match="corrupted or truncated safetensors file") as err:
        Policy.load(copy, device="cpu")
    assert message in str(err.value) and str(f) in str(err.value), str(err.value)


def test_links_out_of_the_directory_and_a_latest_pointing_out_are_refused(copy, tmp_path):
    f = copy / "model.safetensors"
    outside = tmp_path / "elsewhere.safetensors"
    f.rename(outside)
    f.symlink_to(outside)
    with pytest.raises(CheckpointError, match="outside the checkpoint directory"):
        Policy.load(copy, device="cpu")
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "latest").write_text("../../ckpt")
    with pytest.raises(CheckpointError, match="is not a checkpoint name inside"):
        Policy.load(run, device="cpu")


def test_training_state_that_does_not_fit_the_learner_is_refused(copy):
    from pac_ros.learning import load_into_learner

    sj = json.loads((copy / "train_state.json").read_text())
    sj["step_count"] = 99
    (copy / "train_state.json").write_text(json.dumps(sj))
    fz.resign(copy)
    with pytest.raises(CheckpointError, match="train_state.json: step_count: 99, meta.json has step 1"):
        load_into_learner(copy, fz.new_learner())
    sj["step_count"], sj["param_groups"][0]["lr"] = 1, "fast"
    (copy / "train_state.json").write_text(json.dumps(sj))
    fz.resign(copy)
    with pytest.raises(CheckpointError, match=r"param_groups\[0\].lr: 'fast', expected number"):
        load_into_learner(copy, fz.new_learner())


def test_the_fuzz_script_counts_and_exits_zero(capsys):
    assert fz.main(["--n", "12", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "inputs 12  clean loads" in out and "crashes 0  hangs 0" in out


@pytest.mark.parametrize("make, message", [
    (lambda f: f.write_text("[" * 100_000), "cannot read checkpoint metadata"),
    (lambda f: f.write_bytes(b"{" + b" " * (17 << 20) + b"}"), "more than 16777216 for checkpoint metadata"),
    (lambda f: (f.unlink(), os.mkfifo(f)), "meta.json: not a regular file"),
    (lambda f: (f.unlink(), f.mkdir()), "meta.json: not a regular file"),
    (lambda f: (f.unlink(), f.symlink_to(f)), "meta.json: not a regular file"),
], ids=["deep_nesting", "huge", "fifo", "directory", "link_loop"])
def test_a_meta_json_that_is_no_json_object_is_refused_without_blocking(copy, make, message):
    make(copy / "meta.json")
    with pytest.raises(CheckpointError, match=re.escape(message)):
        Policy.load(copy, device="cpu")
