"""The split every role reads: indices of D, R, the public set, E's data and the test set."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SplitError


@dataclass(frozen=True)
class Split:
    """Indices into the original train/test splits for every role of the protocol."""
    kind: str
    seed: int
    private_classes: tuple[int, ...]
    per_class: int
    private: np.ndarray      # D: T's training data (train split)
    reference: np.ndarray    # R: non-members, same classes and size as D (train split)
    public: np.ndarray       # the attacker's data (train split)
    evaluator: np.ndarray    # E's training data: train split minus D and R
    test: np.ndarray         # test-split images of the private classes
    eval_classes: tuple[int, ...] | None = None    # E's classes (None: all 10)
    public_classes: tuple[int, ...] | None = None  # P's classes (None: by split kind)

    def check_disjoint(self) -> None:
        """Raise ``SplitError`` if D, R and public overlap (a broken invariant, never a claim).
        The face split's evaluator is trained on D itself (as in the paper), so that pair is
        allowed."""
        pairs = [("private", "reference"), ("private", "public"), ("reference", "public"),
                 ("reference", "evaluator")]
        if self.kind != "faces":
            pairs.append(("private", "evaluator"))
        for a, b in pairs:
            common = np.intersect1d(getattr(self, a), getattr(self, b))
            if common.size:
                raise SplitError(f"split invariant broken: {a} and {b} share {common.size} "
                                 f"indices (e.g. {common[:5].tolist()}); restore the split file "
                                 "with git checkout data/splits or write it again")
