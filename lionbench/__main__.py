"""`python -m lionbench ...` is the same as the `lionbench` console script."""

from lionbench.cli import main

if __name__ == "__main__":
    main()
