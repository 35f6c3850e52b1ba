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
    assert f"  {ship_model.clip_line(LearnerConfig.from_dict(learner))}\n" in card
    assert f"- {ship_model.weights_line(meta, learner)}\n" in card
    assert "moving average over about the last 200 steps" in ship_model.weights_line(meta, learner)
