"""The 72-fragment vocabulary of Bengio et al. (2021), as used by the fragment environment.

Source of truth: ``shared/data/fragments/fragments_72.tsv`` (columns ``index``, ``smiles``,
``attachment_atoms``). Attachment atoms keep their source order: position k in that list is "stem k",
the value a SetEdgeAttr action chooses (fragments 56 and 58 are deliberately unsorted).

The file is looked up in order: the ``path`` argument, ``$SCULPT_FRAGMENTS``, then
``<repo>/../shared/data/fragments/fragments_72.tsv``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


from sculpt_core.errors import SculptError

#: The most stems any fragment may have; the action layout reserves this many columns per edge side.
MAX_STEMS = 6
FRAGMENTS_ENV = "SCULPT_FRAGMENTS"
_REPO = Path(__file__).resolve().parents[3]
#: Default location (module attribute so tests can point it elsewhere).
SHARED_FRAGMENTS = _REPO.parent / "shared" / "data" / "fragments" / "fragments_72.tsv"


def resolve_fragments_path(path: str | os.PathLike | None = None) -> Path:
    """The fragment table to load: ``path``, else ``$SCULPT_FRAGMENTS``, else the shared data copy."""
    if path is not None:
        chosen, origin = Path(path), "the given path"
    elif os.environ.get(FRAGMENTS_ENV):
        chosen, origin = Path(os.environ[FRAGMENTS_ENV]), f"${FRAGMENTS_ENV}"
    else:
        chosen, origin = SHARED_FRAGMENTS, "the shared data folder"
    if not chosen.is_file():
        raise SculptError(
            f"fragment table not found at {chosen} ({origin}); set {FRAGMENTS_ENV} to the path of "
            "fragments_72.tsv (shared/data/fragments/fragments_72.tsv) or pass it explicitly")
    return chosen


@dataclass(frozen=True, eq=False)
class FragmentLibrary:
    """Fragments with their attachment atoms. ``source_index[k]`` is fragment k's row in the source table
    (differs from k only in a :meth:`subset`)."""

    smiles: tuple[str, ...]
    attachments: tuple[tuple[int, ...], ...]
    source_index: tuple[int, ...]
    mols: tuple = field(repr=False)  # tuple[Chem.Mol, ...], parsed with Chem.MolFromSmiles

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "FragmentLibrary":
        """Read the TSV (see module docstring for where it is looked up) and parse every fragment."""
        file = resolve_fragments_path(path)
        try:
            with open(file, newline="") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            raise SculptError(f"cannot read fragment table {file}: {exc}") from exc
        if not rows or not {"index", "smiles", "attachment_atoms"} <= set(rows[0]):
            raise SculptError(f"{file} must be a TSV with columns index, smiles, attachment_atoms")
        smiles, attachments = [], []
        for k, row in enumerate(rows):
            try:
                idx = int(row["index"])
                att = tuple(int(a) for a in row["attachment_atoms"].split(","))
            except (TypeError, ValueError) as exc:
                raise SculptError(f"{file}: bad row {k + 1}: {row}") from exc
            if idx != k:
                raise SculptError(f"{file}: row {k + 1} has index {idx}, expected {k}")
            smiles.append(row["smiles"])
            attachments.append(att)
        return cls.from_lists(smiles, attachments)

    @classmethod
    def from_lists(cls, smiles: Sequence[str], attachments: Sequence[Sequence[int]],
                   source_index: Sequence[int] | None = None) -> "FragmentLibrary":
        """Build from in-memory lists, validating SMILES and attachment atoms."""
        from rdkit import Chem

        if len(smiles) != len(attachments) or not smiles:
            raise SculptError("a fragment library needs the same, non-zero number of SMILES and attachment lists")
        mols = []
        for k, (smi, att) in enumerate(zip(smiles, attachments)):
            mol = Chem.MolFromSmiles(smi)
            if mol is None:
                raise SculptError(f"fragment {k}: SMILES {smi!r} does not parse")
            att = tuple(att)
            if not 1 <= len(att) <= MAX_STEMS:
                raise SculptError(f"fragment {k} ({smi}) has {len(att)} attachment atoms; 1..{MAX_STEMS} supported")
            if len(set(att)) != len(att) or not all(0 <= a < mol.GetNumAtoms() for a in att):
                raise SculptError(f"fragment {k} ({smi}): attachment atoms {att} must be distinct atom indices")
            mols.append(mol)
        src = tuple(range(len(smiles))) if source_index is None else tuple(int(i) for i in source_index)
        return cls(tuple(smiles), tuple(tuple(int(a) for a in att) for att in attachments), src, tuple(mols))

    def __len__(self) -> int:
        return len(self.smiles)

    @property
    def n_frags(self) -> int:
        return len(self.smiles)

    @property
    def n_stems(self) -> tuple[int, ...]:
        """Number of attachment atoms (= maximal degree) of each fragment."""
        return tuple(len(a) for a in self.attachments)

    @property
    def n_atoms(self) -> tuple[int, ...]:
        return tuple(m.GetNumAtoms() for m in self.mols)

    def subset(self, indices: Sequence[int]) -> "FragmentLibrary":
        """A smaller library holding fragments ``indices`` (renumbered 0..k-1, in the given order)."""
        idx = [int(i) for i in indices]
        if not idx or len(set(idx)) != len(idx) or not all(0 <= i < len(self) for i in idx):
            raise SculptError(f"subset indices must be distinct fragment ids in [0, {len(self)}), got {list(indices)}")
        return FragmentLibrary(tuple(self.smiles[i] for i in idx), tuple(self.attachments[i] for i in idx),
                               tuple(self.source_index[i] for i in idx), tuple(self.mols[i] for i in idx))
