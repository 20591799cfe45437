"""Model zoo: named pre-trained models and classifiers in assets/."""

from .registry import grid_model_names, load_grid_model, read_manifest, resolve_grid_model_path

__all__ = ["grid_model_names", "load_grid_model", "read_manifest", "resolve_grid_model_path"]
