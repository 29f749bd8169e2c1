"""Former home of the fits' data sources: see :mod:`pixelmix.learn.source`.

Kept so that ``from pixelmix.learn.sources import iter_blocks, describe``
goes on working.
"""

from .source import Block, Part, Source, describe, is_path, iter_blocks, per_part

__all__ = ["Block", "Part", "Source", "describe", "is_path", "iter_blocks", "per_part"]
