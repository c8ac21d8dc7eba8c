"""Deprecated alias of `minipeft.training`, where the trainer moved; a later release removes it.

    from minipeft.training import TrainConfig, train      # new
    from minipeft.train import TrainConfig, train         # old: still works, with a DeprecationWarning

Only this entry point keeps an alias: it is the one user code imports to train. The other modules
that moved (batching, checkpoint, distributed, loop, memory, optim) are reached as
`minipeft.training.<name>`; their public names are re-exported by minipeft.training.
"""

import warnings

from minipeft.training import *  # noqa: F403  (every public name of the new path)
from minipeft.training.batching import to_device  # noqa: F401  (was importable from here)
from minipeft.training.config import resolve_device  # noqa: F401

warnings.warn(
    "minipeft.train moved to minipeft.training: import train, TrainConfig, evaluate and "
    "seed_everything from minipeft.training (minipeft.train will be removed)",
    DeprecationWarning,
    stacklevel=2,
)
