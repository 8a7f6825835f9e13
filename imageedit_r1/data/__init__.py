"""RL data: benchmark loaders, teacher labelling of ground truth, EasyR1 / verl export, eval subsets.

Importing this package is cheap; ``datasets``, ``pyarrow`` and the chat backends are imported
by the functions that need them. The command line is ``python -m imageedit_r1.data --help``.
"""

from imageedit_r1.data.edit_sample import EditSample, RawRecord
from imageedit_r1.data.sources import (
    LOADERS,
    Loader,
    ManifestLoader,
    PSRLoader,
    RealEditLoader,
    UltraEditLoader,
    build_loader,
    parse_source,
    parse_source_spec,
)

__all__ = [
    "LOADERS",
    "EditSample",
    "Loader",
    "ManifestLoader",
    "PSRLoader",
    "RawRecord",
    "RealEditLoader",
    "UltraEditLoader",
    "build_loader",
    "parse_source",
    "parse_source_spec",
]
