"""Files in and out: TIFF reading, metadata, TIFF writing, Zarr writing, atomic publishing.

- :mod:`pixelmix.io.read`: :func:`~pixelmix.io.read.open_stack`, a TIFF stack
  read in slabs (memory-mapped or decoded one slab ahead).
- :mod:`pixelmix.io.metadata`: channel names, wavelengths and calibration
  from OME, ImageJ, tifffile JSON and GDAL metadata.
- :mod:`pixelmix.io.write`: :func:`~pixelmix.io.write.create_stack` (memory-mapped)
  and :func:`~pixelmix.io.write.write_stack` (tiled, compressed), with metadata.
- :mod:`pixelmix.io.zarr`: Zarr / OME-Zarr image groups.
- :mod:`pixelmix.io.publish`: temporary names, fsync and move into place
  (never over an output another run published, unless asked), removal of
  the temporaries of dead runs.
- :mod:`pixelmix.io.space`: the blocks of a memory-mapped output reserved
  first, so a full disk is an error for that file, never a SIGBUS.
- :mod:`pixelmix.io.names`: channel names made storable, names made printable.
- Flavours, kept from input to output: :mod:`pixelmix.io.geotiff` (CRS,
  geotransform, nodata, GDAL band metadata), :mod:`pixelmix.io.ome`
  (valid OME-XML), :mod:`pixelmix.io.imagej` (hyperstacks),
  :mod:`pixelmix.io.pyramid` (series and resolution levels, and which
  writer a file's flavour takes), :mod:`pixelmix.io.ome_zarr` (OME-Zarr 0.4
  axes, scales and omero channels).

Of pixelmix this package imports only :mod:`pixelmix.plan` (never jobs,
cli, learn or dispatch); tifffile, zarr and imagecodecs are imported when a
file is opened or written, so importing pixelmix stays fast.
"""
