"""scripts/ship_model.py's card lines: what the card says of training matches the checkpoint's meta.json."""
import importlib.util
import json
from pathlib import Path

from pac_ros.learning import LearnerConfig

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("ship_model", REPO / "scripts" / "ship_model.py")
ship_model = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ship_model)


def test_the_card_says_how_gradients_were_clipped():
    assert ship_model.clip_line(LearnerConfig()) == "all gradients clipped to norm 1.0 together"
    per_loss = ship_model.clip_line(LearnerConfig(grad_clip=0.5, grad_clip_by="loss"))
    assert per_loss == "each loss's gradient clipped to norm 0.5 on its own (grad_clip_by: loss)"
    per_side = ship_model.clip_line(LearnerConfig(critic_trains_encoder=False))
    assert per_side == "the policy's and the critic's parameters' gradients each clipped to norm 1.0"


def test_the_shipped_suboptimal_card_matches_its_meta():
    """The card's training lines are those the script writes for the shipped meta.json."""
    model = REPO / "models" / "pac_tiny_suboptimal"
    meta = json.loads((model / "meta.json").read_text())
    learner = meta["train_config"]["learner"]
    card = (model / "MODEL_CARD.md").read_text()
    assert meta["weights"] == "target"
    cfg = LearnerConfig.from_dict(learner)
    assert f"  {ship_model.clip_line(cfg)}\n" in card
    assert f"- {ship_model.alpha_line(cfg, meta['step'])}\n" in card
    assert f"- {ship_model.objective_line(cfg)}\n" in card
    assert f"- {ship_model.weights_line(meta, cfg)}\n" in card
    assert "moving average over about the last 200 steps" in ship_model.weights_line(meta, cfg)


def test_the_card_fills_what_an_older_meta_lacks_with_trainings_defaults():
    """A meta.json written before a learner key existed trained with that key's default: the card says the
    default, never "None"."""
    cfg = LearnerConfig.from_dict({"alpha_final": 0.0, "alpha_decay_steps": 1000})
    defaults = LearnerConfig()
    lines = [ship_model.alpha_line(cfg, 2000), ship_model.objective_line(cfg),
             ship_model.weights_line({"weights": "target"}, cfg), ship_model.clip_line(cfg)]
    assert not any("None" in line for line in lines)
    assert lines[0] == (f"α schedule: {defaults.alpha_start} for 0 steps, then linear to 0.0 over 1000 steps; "
                        "α at the last step 0")
    assert lines[1] == (f"η {defaults.eta}, γ {defaults.gamma}, {defaults.n_action_samples} sampled actions,\n"
                        f"  target network Polyak τ {defaults.tau}, β {defaults.beta}")


def test_the_card_names_a_learned_eta_and_a_hard_target_copy():
    cfg = LearnerConfig(eta=0.2, eta_kl=0.1, target_update="hard", target_period=500, alpha_final=1.0)
    assert ship_model.alpha_line(cfg, 10) == "α fixed at 1.0; α at the last step 1 (pure behaviour cloning)"
    assert ship_model.objective_line(cfg).startswith("η 0.2 at the start, learned by its dual (KL bound 0.1), ")
    assert ship_model.objective_line(cfg).endswith("target network copied every 500 steps, β 1.0")
    assert ship_model.weights_line({"weights": "target"}, cfg) == (
        "shipped weights: the target network's, a copy of the online weights taken every 500 steps "
        "(`pac-ros export --weights target`)")
    assert ship_model.weights_line({}, cfg) == "shipped weights: the online network's at the last step"
