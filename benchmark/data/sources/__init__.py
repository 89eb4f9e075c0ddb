"""File-based data sources. Importing this package registers every one of them with
`benchmark.data.spec` (see FORMATS.md for the layout each expects)."""
from benchmark.data.sources import videos  # noqa: F401
