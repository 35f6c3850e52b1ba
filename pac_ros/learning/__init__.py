"""ROS-free PAC learning: objective, learner, training checkpoints, training loop.

Deployable checkpoints (loading, metadata, ``save_deployable``) are pac_ros.checkpoint."""
from .checkpoint import ResumeState, load_into_learner, save_checkpoint
from .config import ConfigError, DataConfig, LearnerConfig, RunConfig, TrainConfig
from .learner import Learner, cat_obs
from .losses import categorical_projection, critic_loss, improvement_weights, policy_loss

__all__ = ["ResumeState", "load_into_learner", "save_checkpoint", "ConfigError", "DataConfig", "LearnerConfig",
           "RunConfig", "TrainConfig", "Learner", "cat_obs",
           "categorical_projection", "critic_loss", "improvement_weights", "policy_loss"]
