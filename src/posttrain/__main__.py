"""`python -m posttrain` runs the CLI (what `accelerate launch -m posttrain` needs)."""

from posttrain.cli.app import main

if __name__ == "__main__":
    main()
