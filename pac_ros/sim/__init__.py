"""MuJoCo stacking simulation (no ROS): environment and scripted expert."""
from pac_ros.sim.env import StackingEnv
from pac_ros.sim.expert import ExpertConfig, ScriptedExpert

__all__ = ["StackingEnv", "ExpertConfig", "ScriptedExpert"]
