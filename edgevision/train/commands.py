"""Arguments of `edgevision train ...` and `edgevision export ...`.

Kept free of torch so that `edgevision --help` and `edgevision info` stay fast and work without the
train extra; the functions they call import torch.
"""
from __future__ import annotations

import shlex
import sys


def add_train_parser(sub) -> None:
    """Add `train classify|gan|sr` to the `edgevision` command's subparsers."""
    p = sub.add_parser("train", help="train a model (needs the train extra: pip install edgevision[train])")
    tasks = p.add_subparsers(dest="task", required=True)

    def common(q, epochs):
        q.add_argument("--out", required=True, help="run folder: last.pt, best.pt, metrics.csv, metrics.json")
        q.add_argument("--epochs", type=float, default=epochs, help="fractional allowed (last epoch cut short)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
        q.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
        q.add_argument("--no-resume", dest="resume", action="store_false", help="ignore OUT/last.pt")
        q.add_argument("--quiet", action="store_true")
        q.add_argument("--budget-minutes", type=float, default=None,
                       help="bound the training wall time; the schedule anneals by time or steps, whichever is further")

    q = tasks.add_parser("classify", help="image classifier on a CIFAR-10 binary folder or an image folder")
    q.add_argument("--data", required=True, help="CIFAR-10 binary folder, or ROOT with train/<class>/ (and test/)")
    q.add_argument("--model", default="fastnet")
    q.add_argument("--recipe", default=None, choices=["airbench", "adam", "sgd"])
    q.add_argument("--holdout", type=int, default=5000, help="training images held out for validation")
    q.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="image-folder input size")
    for name, typ in (("batch-size", int), ("lr", float), ("momentum", float), ("weight-decay", float),
                      ("label-smoothing", float), ("translate", int)):
        q.add_argument(f"--{name}", type=typ, default=None, help="overrides the recipe")
    q.add_argument("--flip", type=int, choices=[0, 1], default=None, help="overrides the recipe")
    q.add_argument("--lookahead", type=int, choices=[0, 1], default=None, help="overrides the recipe")
    common(q, 10)
    q.set_defaults(fn=_run_classify)


def _command() -> str:
    return "edgevision " + " ".join(shlex.quote(a) for a in sys.argv[1:])



def _run_classify(args) -> int:
    hp = {k: getattr(args, k) for k in ("batch_size", "lr", "momentum", "weight_decay", "label_smoothing",
                                          "translate", "flip", "lookahead")}
    hp = {k: (bool(v) if k in ("flip", "lookahead") and v is not None else v) for k, v in hp.items()}
    from .api import train_classify

    train_classify(args.data, args.out, args.model, args.epochs, recipe=args.recipe, holdout=args.holdout,
                   seed=args.seed, device=args.device, threads=args.threads,
                   size=tuple(args.size) if args.size else None, resume=args.resume, quiet=args.quiet,
                   budget_minutes=args.budget_minutes, command=_command(), **hp)
    return 0


def add_export_parser(sub) -> None:
    pass
