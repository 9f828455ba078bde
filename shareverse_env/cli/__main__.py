"""``python -m shareverse_env.cli``: the ``shareverse-env`` command."""

from shareverse_env.cli.env import main

if __name__ == "__main__":
    raise SystemExit(main())
