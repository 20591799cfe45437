"""sculpt_core: train, compose and evaluate pre-trained GFlowNets (Compositional Sculpting, Routing by Reaching)."""

__version__ = "0.1.0"
