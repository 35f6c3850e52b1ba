"""ROS-free PyTorch core: the Perceiver-Actor-Critic network."""
from .config import OBS_MODES, PRESETS, PACConfig, preset
from .pac import PACModel, count_parameters
from .tokenizer import PAD, VOCAB_SIZE, detokenize, tokenize, tokenize_batch

__all__ = ["OBS_MODES", "PACConfig", "PRESETS", "preset", "PACModel", "count_parameters",
           "PAD", "VOCAB_SIZE", "detokenize", "tokenize", "tokenize_batch"]
