"""The experiment pipeline end to end at CI size: tiny data, a few steps, every report file."""
import json
from pathlib import Path

import pytest

from pac_ros.experiment import ExperimentConfig, pool, run_experiment
from pac_ros.learning import ConfigError


def _configs(tmp_path, rounds=0):
    train = tmp_path / "train.yaml"
    train.write_text("""
preset: tiny
model: {width: 32, heads: 2, n_latents: 4, n_self_blocks: 1, mlp_ratio: 2.0, obs_mode: features, control: task,
        n_action_bins: 11, n_value_bins: 21}
learner: {lr: 1.0e-3, lr_warmup_steps: 2, n_action_samples: 4, alpha_warmup_steps: 1, alpha_decay_steps: 2,
          n_step: 3, amp: none}
data: {batch_size: 8}
run: {log_every: 1, checkpoint_every: 100, threads: 1}
""")
    exp = {
        "train_config": str(train), "out_dir": str(tmp_path / "out"), "steps": 4, "seeds": [0, 1],
        "arms": {"bc": {"alpha_final": 1.0}, "pac": {"alpha_final": 0.1, "critic_target": "data"}},
        "data": {"root": str(tmp_path / "data"), "episodes": 3, "quality": "mixed", "seed": 0},
        "eval": {"episodes": 2, "curve_every": 2, "curve_episodes": 1},
        "peers": {"algos": ["bc", "iql"], "steps": 5, "batch_size": 16},
        "improve": {"rounds": rounds, "episodes": 2, "steps": 2, "through_ros": False, "decoding": "sample",
                    "eval_episodes": 3, "eval_seed": 700_000,
                    "learner": {"alpha_start": 0.1, "alpha_warmup_steps": 0, "alpha_decay_steps": 0}},
    }
    return exp


@pytest.mark.slow
def test_experiment_runs_end_to_end_and_writes_the_report(tmp_path, capfd):
    d = _configs(tmp_path, rounds=1)
    d["eval"].update(decodings=["greedy"], decoding_arms=["pac"], target_arms=["pac"],
                     select={"arms": ["pac"], "episodes": 2, "seed": 800_000})
    cfg = ExperimentConfig.from_dict(d)
    logs = []
    report = tmp_path / "docs" / "results.md"
    res = run_experiment(cfg, log=logs.append, report=report)
    out = tmp_path / "out"
    for f in ("results.json", "results.md", "success_bar.png", "learning_curves.png", "self_improvement.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["arms"]) == {"bc", "pac"} and saved["data"]["episodes"] == 3
    assert set(saved["peers"]) == {"d3rlpy bc", "d3rlpy iql"} and saved["peers"]["d3rlpy iql"]["episodes"] == 2
    for arm in ("bc", "pac"):
        runs = saved["runs"][arm]
        assert [r["seed"] for r in runs] == [0, 1]
        assert all(r["final"]["episodes"] == 2 and [p["step"] for p in r["curve"]] == [2, 4] for r in runs)
        assert saved["arms"][arm]["episodes"] == 4
    assert saved["runs"]["bc"][0]["alpha_final"] == 1.0 and saved["runs"]["pac"][0]["alpha_final"] == 0.1
    assert [r["round"] for r in saved["improve"]] == [0, 1]
    r1 = saved["improve"][1]
    assert r1["own"]["episodes"] == 2 and r1["data"]["episodes"] == 5  # 3 collected + 2 of its own
    # every round, round 0 too, on the rounds' own evaluation; own episodes recorded with sampling
    assert [r["final"]["episodes"] for r in saved["improve"]] == [3, 3]
    from pac_ros.data import Dataset

    own = Dataset(out / "improve" / "round_1" / "own")
    assert [e["metadata"]["decoding"] for e in own.episodes] == ["sample", "sample"]
    md = report.read_text()
    assert "| bc |" in md and "| pac |" in md and "| d3rlpy iql |" in md and "Self-improvement" in md
    assert saved["decodings"]["pac"]["greedy"]["episodes"] == 4 and "| pac | greedy |" in md
    assert saved["target_weights"]["pac"]["episodes"] == 4 and "| pac | target |" in md
    for r in saved["runs"]["pac"]:  # each seed's target weights, exported where the report says
        exported = out / "runs" / f"pac_s{r['seed']}" / "target" / "meta.json"
        assert json.loads(exported.read_text())["weights"] == "target"
    # pac's budget chosen between its kept checkpoints (steps 2 and 4), target weights exported from each
    chosen = saved["selection"]["pac"]
    assert set(chosen["steps"]) == {"2", "4"} and chosen["step"] in (2, 4) and chosen["report"]["episodes"] == 4
    for step in (2, 4):
        exported = out / "runs" / "pac_s1" / "select" / f"step_{step:08d}_target" / "meta.json"
        assert json.loads(exported.read_text())["weights"] == "target"
    assert "## Training budget chosen on held-out episodes" in md and f"| pac | {chosen['step']} (chosen) |" in md
    assert res["data"]["fingerprint"] in md
    assert "](results_figures/success_bar.png)" in md  # figures copied next to the report
    assert (tmp_path / "docs" / "results_figures" / "success_bar.png").is_file()
    # a second call reuses every finished run; with --jobs the arm/seed runs answer from worker processes
    logs.clear()
    capfd.readouterr()
    again = run_experiment(cfg, log=logs.append, jobs=2)
    err = capfd.readouterr().err
    assert err.count(": cached") == 4 and "training" not in err
    # the peers, the greedy and the target-weight evaluations of pac's two seeds, its budget's three
    # (steps 2 and 4 held out, the chosen one reported) for each seed, rounds 0-1
    assert sum("cached" in m for m in logs) == 14 and not any("training" in m for m in logs)
    assert again["arms"] == saved["arms"]
    # with --jobs the report's own evaluations run in worker processes too, with the same figures
    for seed in (0, 1):
        for name in ("weights_target.json", "decoding_greedy.json"):
            (out / "runs" / f"pac_s{seed}" / name).unlink()
    logs.clear()
    redone = run_experiment(cfg, log=logs.append, jobs=2)
    assert logs.count("2 evaluations, 2 at a time") == 2 and sum(": evaluated (" in m for m in logs) == 4
    assert redone["target_weights"] == saved["target_weights"] and redone["decodings"] == saved["decodings"]
    # one more round runs only that round
    logs.clear()
    cfg.improve.rounds = 2
    more = run_experiment(cfg, log=logs.append)
    assert any("improve round 1: cached" in m for m in logs) and any("improve round 2: recorded" in m for m in logs)
    assert [r["round"] for r in more["improve"]] == [0, 1, 2] and more["improve"][1] == saved["improve"][1]
    # a changed improvement recipe is not served from the cache
    logs.clear()
    cfg.improve.steps = 3
    run_experiment(cfg, log=logs.append)
    assert any("improve round 1: recorded" in m for m in logs) and not any("improve round 1: cached" in m for m in logs)
    # a budget in proportion to the data: 3 steps × 5/3 episodes, then × 7/3
    logs.clear()
    cfg.improve.steps_scale = "data"
    grown = run_experiment(cfg, log=logs.append, report=report)
    assert not any("improve round 1: cached" in m for m in logs)
    assert [r["steps"] for r in grown["improve"][1:]] == [5, 7]
    assert "| 2 |" in report.read_text() and "× (the round's episodes / the original data's)" in report.read_text()


def test_experiment_config_errors(tmp_path):
    from pac_ros.seeds import SELECT_SEED

    d = _configs(tmp_path)
    with pytest.raises(ConfigError, match="unknown key"):
        ExperimentConfig.from_dict({**d, "stepz": 3})
    with pytest.raises(ConfigError, match="alpha_finl"):
        ExperimentConfig.from_dict({**d, "arms": {"bc": {"alpha_finl": 1.0}}})
    with pytest.raises(ConfigError, match="improve.arm"):
        ExperimentConfig.from_dict({**d, "improve": {"rounds": 1, "arm": "nope"}})
    with pytest.raises(ConfigError, match="peers: unknown algorithm"):
        ExperimentConfig.from_dict({**d, "peers": {"algos": ["sac"]}})
    with pytest.raises(ConfigError, match="eval: unknown"):
        ExperimentConfig.from_dict({**d, "eval": {"episodez": 3}})
    with pytest.raises(ConfigError, match="set by the experiment"):
        ExperimentConfig.from_dict({**d, "run": {"seed": 3}})
    with_run = ExperimentConfig.from_dict({**d, "run": {"log_every": 7}})
    assert with_run.train_config_for("bc", 1).run.log_every == 7
    assert with_run.train_config_for("bc", 1).run.seed == 1
    longer = ExperimentConfig.from_dict({**d, "arms": {"bc": {"alpha_final": 1.0, "steps": 9}}})
    assert longer.train_config_for("bc", 0).run.steps == 9 and with_run.train_config_for("bc", 0).run.steps == 4
    assert longer.train_config_for("bc", 0, steps=2).run.steps == 2  # an improvement round's own budget
    own = ExperimentConfig.from_dict({**d, "arms": {"pac": {"model": {"critic_encoder": "own"}}, "bc": {}}})
    assert own.train_config_for("pac", 0).model_config().critic_encoder == "own"
    assert own.train_config_for("bc", 0).model_config().critic_encoder == "shared"
    with pytest.raises(ConfigError, match="critic_encoder"):
        ExperimentConfig.from_dict({**d, "arms": {"pac": {"model": {"critic_encoder": "two"}}}})
    with pytest.raises(ConfigError, match="model must map"):
        ExperimentConfig.from_dict({**d, "arms": {"pac": {"model": "own"}}})
    with pytest.raises(ConfigError, match="target_arms"):
        ExperimentConfig.from_dict({**d, "eval": {**d["eval"], "target_arms": ["nope"]}})
    with pytest.raises(ConfigError, match="decoding_arms"):
        ExperimentConfig.from_dict({**d, "eval": {**d["eval"], "decodings": ["greedy"], "decoding_arms": ["nope"]}})
    with pytest.raises(ConfigError, match="improve.decoding must be one of"):
        ExperimentConfig.from_dict({**d, "improve": {**d["improve"], "decoding": "explore"}})
    with pytest.raises(ConfigError, match="data must be one of"):
        ExperimentConfig.from_dict({**d, "arms": {"bc": {"alpha_final": 1.0, "data": "best"}}})
    with pytest.raises(ConfigError, match=r"eval.select.arms \['nope'\] are not arms"):
        ExperimentConfig.from_dict({**d, "eval": {**d["eval"], "select": {"arms": ["nope"]}}})
    with pytest.raises(ConfigError, match="weights: must be 'online' or 'target'"):
        ExperimentConfig.from_dict({**d, "eval": {**d["eval"], "select": {"arms": ["pac"], "weights": "best"}}})
    with pytest.raises(ConfigError, match=r"eval.select's episodes \(seeds 100001..100002\) overlap the eval "
                                          r"section's \(seeds 100000..100001\)"):
        ExperimentConfig.from_dict({**d, "eval": {**d["eval"], "select": {"arms": ["pac"], "episodes": 2,
                                                                          "seed": 100_001}}})
    with pytest.raises(ConfigError, match="overlap the improve section's"):  # the rounds' evaluation, 700000..700002
        ExperimentConfig.from_dict({**d, "improve": {**d["improve"], "rounds": 1},
                                    "eval": {**d["eval"], "select": {"arms": ["pac"], "seed": 699_999}}})
    held_out = ExperimentConfig.from_dict({**d, "eval": {**d["eval"], "select": {"arms": ["pac"]}}})
    assert held_out.eval.select.seed == SELECT_SEED and held_out.eval.select.weights == "target"


def test_improve_budget_fixed_or_in_proportion_to_the_data(tmp_path):
    from pac_ros.experiment.config import ImproveSection
    from pac_ros.experiment.improve import round_steps

    fixed = ImproveSection(rounds=3, steps=1000, episodes=100)
    assert [round_steps(fixed, 300, n) for n in (300, 400, 500)] == [1000, 1000, 1000]
    grows = ImproveSection(rounds=3, steps=1000, episodes=100, steps_scale="data")
    # round r trains on 300 + 100·r episodes: 4/3, 5/3, 6/3 of the budget
    assert [round_steps(grows, 300, n) for n in (300, 400, 500)] == [1333, 1667, 2000]
    d = _configs(tmp_path)
    with pytest.raises(ConfigError, match="steps_scale must be fixed or data"):
        ExperimentConfig.from_dict({**d, "improve": {**d["improve"], "steps_scale": "double"}})


def test_an_arm_can_train_on_the_successful_or_the_perfect_episodes_only(tmp_path):
    from pac_ros.collect import collect
    from pac_ros.data import Dataset
    from pac_ros.experiment.runs import ensure_arm_data

    d = _configs(tmp_path)
    d["arms"] = {"bc": {"alpha_final": 1.0}, "bc_success": {"alpha_final": 1.0, "data": "success"},
                 "bc_perfect": {"alpha_final": 1.0, "data": "perfect"}}
    cfg = ExperimentConfig.from_dict(d)
    collect(cfg.data.root, 6, "suboptimal", seed=0, end_after_attempt=10)
    assert cfg.train_config_for("bc", 0).data.root == cfg.data.root
    assert cfg.train_config_for("bc_success", 0).data.root == cfg.data.root + "_success"
    assert cfg.train_config_for("bc_success", 0).learner.alpha_start == 1.0  # "data" is not a learner key
    ensure_arm_data(cfg, log=lambda *a: None)
    source, subset = Dataset(cfg.data.root), Dataset(cfg.data.root + "_success")
    wanted = [e for e in source.episodes if e["success"]]
    assert len(subset) == len(wanted) >= 1 and all(e["success"] for e in subset.episodes)
    assert [e["length"] for e in subset.episodes] == [e["length"] for e in wanted]
    perfect = Dataset(cfg.data.root + "_perfect")
    qualities = [e["metadata"]["quality"] for e in source.episodes]
    assert len(perfect) == qualities.count("perfect") >= 1 and len(set(qualities)) > 1
    assert all(e["metadata"]["quality"] == "perfect" for e in perfect.episodes)


def test_pool_gives_wilson_interval_over_seeds():
    runs = [{"final": {"successes": s, "episodes": 10, "success_rate": s / 10, "mean_return": 0.1, "mean_length": 5},
             "train_s": 1.0} for s in (2, 4)]
    p = pool(runs)
    assert p["successes"] == 6 and p["episodes"] == 20 and p["success_rate"] == 0.3
    assert 0.1 < p["ci_low"] < 0.3 < p["ci_high"] < 0.55 and p["per_seed"] == [0.2, 0.4]
    # over seeds: mean 0.3, sd 0.1414, t(1) = 12.706: half-width 12.706 * 0.1414 / sqrt(2) = 1.27
    assert p["seed_mean"] == pytest.approx(0.3) and p["seed_t_high"] - 0.3 == pytest.approx(1.2706, abs=1e-3)
    assert p["seed_t_low"] == pytest.approx(0.3 - 1.2706, abs=1e-3)


def test_cache_keys_are_those_of_results_written_before(tmp_path):
    import dataclasses
    import hashlib

    from pac_ros.experiment.runs import cache_key, run_key

    def sha16(text):
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    cfg = ExperimentConfig.from_dict(_configs(tmp_path))
    tcfg = cfg.train_config_for("pac", 0)
    from pac_ros.experiment.runs import NEUTRAL_OPTIONS

    d = tcfg.to_dict()
    d["run"].pop("progress")
    for section, options in NEUTRAL_OPTIONS.items():  # the config as it was before these options existed
        for name in options:
            del d[section][name]
    d["eval"] = dataclasses.asdict(cfg.eval)
    for name in ("decodings", "decoding_arms", "target_arms", "select"):  # the report's, not the run's
        del d["eval"][name]
    assert run_key(cfg, tcfg) == sha16(json.dumps(d, sort_keys=True))
    recipe = {"episodes": 2, "steps": 2}
    key = run_key(cfg, tcfg)
    assert cache_key(recipe, within=key) == sha16(key + json.dumps(recipe, sort_keys=True))
    tcfg.learner.truncation = "terminal"  # an added option away from its neutral value does change the key
    assert run_key(cfg, tcfg) != key


def test_cached_serves_a_result_of_the_same_key_and_redoes_another(tmp_path):
    from pac_ros.experiment.runs import cached

    work, file, logs, calls = tmp_path / "run", tmp_path / "run" / "result.json", [], []

    def compute():
        calls.append(1)
        work.mkdir(exist_ok=True)
        (work / "made").write_text(str(len(calls)))
        return {"final": {"success_rate": 0.25}, "n": len(calls)}

    first = cached(file, "k1", "arm seed 0", logs.append, compute, workdir=work)
    assert first == {"key": "k1", "final": {"success_rate": 0.25}, "n": 1} and json.loads(file.read_text()) == first
    assert cached(file, "k1", "arm seed 0", logs.append, compute, workdir=work) == first and len(calls) == 1
    assert logs == ["arm seed 0: cached (25.0%)"]
    (work / "stale").write_text("from the older run")
    again = cached(file, "k2", "arm seed 0", logs.append, compute, workdir=work)
    assert again["n"] == 2 and again["key"] == "k2" and not (work / "stale").exists()


CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SHIPPED_EXPERIMENTS = sorted(p.name for p in CONFIG_DIR.glob("experiment*.yaml"))


@pytest.mark.parametrize("name", SHIPPED_EXPERIMENTS)
def test_the_shipped_experiment_configs_load(name):
    """Every arm's training config builds; a locator taken from another checkpoint is one we ship."""
    root = CONFIG_DIR.parent
    cfg = ExperimentConfig.load(CONFIG_DIR / name)
    for arm in cfg.arms:
        tcfg = cfg.train_config_for(arm, cfg.seeds_of(arm)[0])
        if tcfg.run.locator_from:
            assert (root / tcfg.run.locator_from / "model.safetensors").is_file()
    if cfg.improve.rounds:
        assert cfg.improve.arm in cfg.arms


def test_shipped_configs_sharing_a_run_directory_agree_on_its_run():
    """Configs that share an out_dir spell shared arms out again; a run directory two of them name must
    be the same run in both (same key), or each would empty and retrain the other's."""
    from pac_ros.experiment.runs import run_key

    keys: dict[str, dict[str, str]] = {}
    for name in SHIPPED_EXPERIMENTS:
        cfg = ExperimentConfig.load(CONFIG_DIR / name)
        for arm in cfg.arms:
            for seed in cfg.seeds_of(arm):
                tcfg = cfg.train_config_for(arm, seed)
                keys.setdefault(tcfg.run.out_dir, {})[name] = run_key(cfg, tcfg)
    differing = {d: by for d, by in keys.items() if len(set(by.values())) > 1}
    assert differing == {}
    assert any(len(by) > 1 for by in keys.values())  # the configs do share runs


def test_a_run_another_process_is_making_is_neither_emptied_nor_redone(tmp_path):
    """Two experiments sharing an out_dir: the second stops with a clear error instead of emptying
    the first one's run directory (it once deleted a self-improvement round's data mid-round)."""
    from pac_ros.cli import REPORTED
    from pac_ros.experiment.runs import RunBusy, cached, held

    run = tmp_path / "runs" / "pac_s0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_1").write_text("half-made")
    with held(run.parent / ".pac_s0.lock", "pac seed 0"):
        with pytest.raises(RunBusy, match=r"pac seed 0 is being made by another process \(pid \d+"):
            cached(run / "result.json", "k", "pac seed 0", print, lambda: {"final": {}}, workdir=run)
    assert (run / "checkpoints" / "step_1").read_text() == "half-made" and isinstance(RunBusy("x"), REPORTED)
    done = cached(run / "result.json", "k", "pac seed 0", print, lambda: {"final": {"success_rate": 1.0}}, workdir=run)
    assert done["key"] == "k" and not (run / "checkpoints").exists()  # released: the run is remade
    from pac_ros.experiment.improve import improve

    cfg = ExperimentConfig.from_dict(_configs(tmp_path, rounds=1))
    with held(tmp_path / "out" / ".improve.lock", "rounds"):  # the rounds build on each other: held as one
        with pytest.raises(RunBusy, match="the self-improvement rounds of .*out is being made"):
            improve(cfg, {"checkpoint": "unused", "final": {}}, print)


def test_welch_interval_of_two_arms_over_seeds():
    from pac_ros.evaluate import welch_interval

    # a: mean 0.3, var/n 0.02/2; b: mean 0.8, var/n 0.04/3; Welch df 2.88 -> 2, t 4.303, se sqrt(0.02333)
    diff, lo, hi = welch_interval([0.2, 0.4], [0.6, 0.8, 1.0])
    assert diff == pytest.approx(-0.5) and hi - diff == pytest.approx(4.303 * 0.023333 ** 0.5, abs=1e-3)
    assert lo == pytest.approx(2 * diff - hi)
    assert welch_interval([0.5, 0.5], [0.7, 0.7]) == pytest.approx((-0.2, -0.2, -0.2))
    with pytest.raises(ValueError, match="two runs"):
        welch_interval([0.5], [0.4, 0.6])


def test_report_sets_each_arm_against_the_success_filter(tmp_path):
    from pac_ros.experiment.report import render_markdown

    def arm(*per_seed):
        return pool([{"final": {"successes": round(100 * r), "episodes": 100, "success_rate": r, "mean_return": r,
                                "mean_length": 50}, "train_s": 1.0} for r in per_seed])

    arms = {"bc_success": arm(0.95, 0.88, 0.69), "pac": arm(0.93, 0.76, 0.79), "worse": arm(0.1, 0.12, 0.11)}
    results = {"data": {"root": "d", "episodes": 3, "steps": 9, "success_rate": 0.3, "fingerprint": "f",
                        "by_quality": {}},
               "config": {"data": {"quality": "suboptimal", "episodes": 3, "seed": 0}, "steps": 4,
                          "train_config": "t.yaml", "model": {}, "learner": {}, "seeds": [0, 1, 2],
                          "eval": {"episodes": 100, "seed": 100000, "decoding": "mean"}, "arms": {a: {} for a in arms}},
               "arms": arms, "runs": {}, "diagnostics": {}, "improve": [], "commands": [], "wall_s": 0.0}
    md = render_markdown(results, {"bar": tmp_path / "b.png", "curves": tmp_path / "c.png"}, tmp_path)
    assert "Against success-filtered BC" in md
    pac = next(line for line in md.splitlines() if line.startswith("- pac:"))
    assert "-1.3 points over seeds" in pac and "not distinguishable" in pac and "pooled -1.3 points" in pac
    assert "below" in next(line for line in md.splitlines() if line.startswith("- worse:"))


def test_each_arms_budget_is_chosen_on_held_out_episodes_then_reported_on_the_reports(tmp_path, monkeypatch):
    from pac_ros.experiment import runs as runs_module
    from pac_ros.experiment.report import _selection_lines
    from pac_ros.experiment.runs import NoKeptCheckpoint, select_budget

    d = _configs(tmp_path)
    d["eval"]["select"] = {"arms": ["pac", "bc"], "weights": "online", "episodes": 10, "seed": 800_000}
    cfg = ExperimentConfig.from_dict(d)
    held_out = {"pac": {(0, 2): 7, (0, 4): 9, (0, 6): 9, (1, 2): 8, (1, 4): 8, (1, 6): 8},  # pooled 15, 17, 17
                "bc": {(s, step): 5 for s in (0, 1) for step in (2, 4, 6)}}
    reported = {("pac", 0): 2, ("pac", 1): 1, ("bc", 0): 1, ("bc", 1): 0}
    calls = []

    def fake_evaluate(ckpt, ev, episodes):
        arm, seed = ckpt.parent.parent.name.rsplit("_s", 1)
        step = int(ckpt.name.split("_")[1])
        calls.append((arm, int(seed), step, ev.seed, episodes))
        k = held_out[arm][int(seed), step] if ev.seed == 800_000 else reported[arm, int(seed)]
        return {"success_rate": k / episodes, "successes": k, "episodes": episodes, "mean_return": 0.0,
                "mean_length": 1.0, "eval_s": 0.0}

    monkeypatch.setattr(runs_module, "evaluate_checkpoint", fake_evaluate)
    runs = {}
    for arm in ("pac", "bc"):
        for seed in (0, 1):
            ckpts = tmp_path / "out" / "runs" / f"{arm}_s{seed}" / "checkpoints"
            for step in (2, 4, 6):
                (ckpts / f"step_{step:08d}").mkdir(parents=True)
            runs.setdefault(arm, []).append({"seed": seed, "key": f"{arm}{seed}",
                                             "checkpoint": str(ckpts / "step_00000006")})
    logs = []
    chosen = select_budget(cfg, runs, logs.append)
    assert chosen["pac"]["step"] == 4 and chosen["bc"]["step"] == 2  # the most successes; the earliest on a tie
    assert [chosen["pac"]["steps"][s]["successes"] for s in ("2", "4", "6")] == [15, 17, 17]
    assert sorted(c for c in calls if c[3] == 800_000) == sorted(
        (arm, seed, step, 800_000, 10) for arm in ("pac", "bc") for seed in (0, 1) for step in (2, 4, 6))
    # only the chosen step meets the report's episodes
    assert sorted(c for c in calls if c[3] != 800_000) == [("bc", 0, 2, 100_000, 2), ("bc", 1, 2, 100_000, 2),
                                                          ("pac", 0, 4, 100_000, 2), ("pac", 1, 4, 100_000, 2)]
    assert chosen["pac"]["report"]["per_seed"] == [1.0, 0.5] and chosen["pac"]["report"]["successes"] == 3
    assert (tmp_path / "out" / "runs" / "pac_s1" / "selected_online_step4.json").is_file()
    calls.clear()
    assert select_budget(cfg, runs, logs.append) == chosen and calls == []  # each evaluation cached by its run
    md = "\n".join(_selection_lines(chosen, cfg.to_dict()))
    assert "| pac | 4 (chosen) | 85.0% (17/20) |" in md and "| pac | 6 | 85.0% (17/20) |" in md
    assert "(seeds 800000..800009, which no reported figure uses)" in md and "| bc | 2 | 25.0% (1/4) |" in md
    assert "- pac (4 steps) against bc (2 steps): +50.0 points (" in md and "not distinguishable" in md
    # a step must be kept by every seed's run to be a candidate
    for step in (2, 4, 6):
        (tmp_path / "out" / "runs" / "bc_s1" / "checkpoints" / f"step_{step:08d}").rename(
            tmp_path / "out" / "runs" / "bc_s1" / "checkpoints" / f"step_{step + 1:08d}")
    with pytest.raises(NoKeptCheckpoint, match=r"bc: no checkpoint step is kept by every seed's run \(\[\[2, 4, 6\], "
                                                r"\[3, 5, 7\]\]\); nothing to choose a budget from"):
        select_budget(cfg, runs, logs.append)
