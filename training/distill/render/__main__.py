"""`python -m training.distill.render`."""

from training.distill.render.cli import main

if __name__ == "__main__":
    main()
