"""The implementation shared by both APIs: ``_async`` is the source, ``_sync`` is generated."""
