"""Push every default checkpoint in checkpoints/ to the Hub under one namespace, then print what a
Space needs to load them from there: the AD_MODELS variable and the README front matter's `models:`.

Usage: python -m scripts.push_defaults NAMESPACE [--prefix hw8-] [--private]
(the token comes from `huggingface-cli login` or HF_TOKEN)
"""

import argparse
import sys

from ad import checkpoint
from ad.errors import InputError
from scripts import ROOT


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("namespace", help="a Hub user or organisation")
    parser.add_argument("--prefix", default="hw8-", help="repo names are PREFIX + architecture (default: hw8-)")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--checkpoints", default=str(ROOT / "checkpoints"))
    args = parser.parse_args(argv)
    repos = []
    try:
        for name, folder in checkpoint.find(args.checkpoints).items():
            repo = f"{args.namespace}/{args.prefix}{name}"
            print(f"{name}: {checkpoint.push(folder, repo, private=args.private)}", flush=True)
            repos.append(repo)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print("\nFor the Space: set the variable (Settings > Variables)\n")
    print("AD_MODELS=" + ",".join(repos))
    print("\nand list them in README.md's front matter:\n")
    print("models:\n" + "\n".join(f"- {repo}" for repo in repos))
    return repos


if __name__ == "__main__":
    main()
