"""The engine: loading a model, the hook points of each family (``adapters``), capture and patching
hooks, ``Model`` and ``Run``, and the Parquet row layout. It imports only ``probe.errors``,
``probe._validate`` and itself; everything that interprets what it captures lives above it, in
``probe.analysis`` (the import contract in pyproject.toml keeps it so)."""
