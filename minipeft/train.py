"""Deprecated alias of `minipeft.training`, where the trainer moved; a later release removes it.

    from minipeft.training import TrainConfig, train      # new
    from minipeft.train import TrainConfig, train         # old: still works, with a DeprecationWarning

Only this entry point keeps an alias: it is the one user code imports to train. The other modules
that moved (batching, checkpoint, distributed, loop, memory, optim) are reached as
`minipeft.training.<name>`; their public names are re-exported by minipeft.training.
"""

import warnings

from minipeft.training import LengthBucketSampler, PadCollate
from minipeft.training.train import (
    Evaluator,
    TrainConfig,
    TrainResult,
    evaluate,
    resolve_device,
    seed_everything,
    to_device,
    train,
)

warnings.warn(
    "minipeft.train moved to minipeft.training: import train, TrainConfig, evaluate and "
    "seed_everything from minipeft.training (minipeft.train will be removed)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "train",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "Evaluator",
    "seed_everything",
    "resolve_device",
    "to_device",
    "PadCollate",
    "LengthBucketSampler",
]
