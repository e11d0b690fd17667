"""``python -m rlreg``: the same as the ``rlreg`` console script."""

from rlreg.entry import main

if __name__ == "__main__":
    main()
