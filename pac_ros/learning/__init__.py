"""ROS-free PAC learning: objective, learner, checkpoints, training loop."""
from .checkpoint import (CheckpointError, checkpoint_meta, load_into_learner, load_model_state,
                         read_meta, save_checkpoint, save_deployable)
from .config import ConfigError, DataConfig, LearnerConfig, RunConfig, TrainConfig
from .learner import Learner, cat_obs
from .losses import categorical_projection, critic_loss, improvement_weights, policy_loss

__all__ = ["CheckpointError", "checkpoint_meta", "load_into_learner", "load_model_state", "read_meta",
           "save_checkpoint", "save_deployable", "ConfigError", "DataConfig", "LearnerConfig", "RunConfig",
           "TrainConfig", "Learner", "cat_obs",
           "categorical_projection", "critic_loss", "improvement_weights", "policy_loss"]
