"""The command lines: ``shareverse-env`` (:mod:`shareverse_env.cli.env`), ``shareverse-data``
(:mod:`shareverse_env.cli.data`) and ``shareverse-train`` (:mod:`shareverse_env.cli.train`).
The top layer: each may import any subsystem."""
