"""Former home of the TIFF reader and writer, kept so documented imports still work.

Reading moved to :mod:`pixelmix.io.read`, metadata parsing to
:mod:`pixelmix.io.metadata`, writing to :mod:`pixelmix.io.write`; the slab
planner is :func:`pixelmix.plan.plan_slabs` and the slab size
``pixelmix.config.SLAB_BYTES``. Code inside pixelmix imports those modules,
never this one.

Examples
--------
>>> from pixelmix.tiff import open_stack
>>> from pixelmix.io import read
>>> open_stack is read.open_stack
True
"""

from .io.read import TiffStack, open_stack
from .io.write import create_stack, output_layout, page_tiles, write_stack

__all__ = ["TiffStack", "open_stack", "output_layout", "create_stack", "write_stack", "page_tiles"]
