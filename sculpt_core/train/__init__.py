"""Training: GFlowNet losses, the grid base-model trainer (and the classifier trainer)."""
