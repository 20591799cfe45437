"""The domain registry: one line per domain.

A domain is one folder ``sculpt_core/domains/<name>/`` with the same file names as the others (env, rewards,
model, classifier, train, train_classifier, compose, exact, sampling, viz, cli, zoo where the job exists).
Its ``cli.register(commands, zoo)`` adds its sub-commands under ``python -m sculpt_core <key>`` (and any
``zoo`` builders). Domains import the core, never each other.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Domain:
    """A registered domain: its command-line word, package and one-line description."""

    key: str
    package: str
    help: str

    def module(self, name: str) -> ModuleType:
        """Import one of the domain's modules by file name, e.g. ``module("cli")``."""
        return importlib.import_module(f"{self.package}.{name}")


DOMAINS: dict[str, Domain] = {
    "grid": Domain("grid", "sculpt_core.domains.grid", "2-D grid: train, exact distributions, composition"),
    "mol": Domain("mol", "sculpt_core.domains.molecules", "molecules: sEH/SA/QED rewards, base models, composition"),
    "diffusion": Domain("diffusion", "sculpt_core.domains.diffusion", "2-D diffusion models: exact Gaussian-mixture bases, composition"),
}
