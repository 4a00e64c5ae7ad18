"""``python -m pinlab``: the ``pinlab`` command."""

from pinlab.cli import main

if __name__ == "__main__":  # not when a tool walks the package's modules
    main()
