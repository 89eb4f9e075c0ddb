"""sslbench's engine."""
import os

# pyarrow (imported by pandas) starts jemalloc's background thread at import; a decoding worker forked while
# that thread holds an allocator lock waits on it for ever (seen: `make test`, a video test after a Parquet
# one in the same worker, the child in futex_wait). Without the thread jemalloc purges on the allocating
# threads instead. Set before any import of pyarrow; a value the user set is kept.
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")
