"""File-based data sources. Importing this package registers every one of them with
`benchmark.data.spec` (see FORMATS.md for the layout each expects)."""
from benchmark.data.sources import (  # noqa: F401
    african_fetal_planes,
    csv_manifest,
    dicom,
    echonet,
    fetal_planes_db,
    hdf5,
    hf,
    imagefolder,
    videos,
)
