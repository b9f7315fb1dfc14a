"""Train one detector on normal images and write a checkpoint folder: `python train.py --help`."""

import argparse

from ad.cli import add_train_arguments, main


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    add_train_arguments(parser)
    return parser


if __name__ == "__main__":
    main(parser=build_parser())
