"""``python -m reconciler``: the same as the ``grove`` command."""

from reconciler.cli import main

if __name__ == "__main__":
    main()
