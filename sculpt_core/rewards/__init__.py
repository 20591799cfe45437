"""Rewards: grid reward functions (paper) and user-supplied log-reward arrays."""

from .grid import GRID_REWARDS, grid_log_reward, load_log_reward_file, target_log_distribution, validate_log_reward

__all__ = ["GRID_REWARDS", "grid_log_reward", "load_log_reward_file", "target_log_distribution", "validate_log_reward"]
