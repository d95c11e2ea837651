"""`python -m training <command>`: see `training.cli`."""

from training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
