"""ROS-free PAC learning: objective, learner, training checkpoints, training loop.

Deployable checkpoints (loading, metadata, ``save_deployable``) are pac_ros.checkpoint."""
from .checkpoint import (
    ResumeState,
    load_into_learner,
    load_target_state,
    save_checkpoint,
    save_weights_deployable,
)
from .config import ConfigError, DataConfig, LearnerConfig, RunConfig, TrainConfig
from .learner import Learner, cat_obs
from .losses import categorical_projection, critic_loss, improvement_weights, policy_loss

__all__ = ["ResumeState", "load_into_learner", "load_target_state", "save_checkpoint", "save_weights_deployable",
           "ConfigError", "DataConfig", "LearnerConfig",
           "RunConfig", "TrainConfig", "Learner", "cat_obs",
           "categorical_projection", "critic_loss", "improvement_weights", "policy_loss"]
